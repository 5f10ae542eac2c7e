"""Duplicate keys in a JSON text, which every parser at hand (pydantic's, orjson, ``json``) drops silently.

A body is checked once it has parsed and validated, so the text is known to be valid JSON.
Two exact checks, the cheaper one for the body's shape:

- a scan for the keys between the quotes, in Python: its cost is per string, so it suits
  bodies of few strings and many numbers (``/add``: 3 strings among 4.4 MB; ``/predict``:
  7 strings per agent around 4,096 numbers);
- ``json.loads`` keeping each object's pairs through a hook in C: its cost is per byte, so it
  suits bodies made of strings (a ``/notifications/v1/multiple`` list).

Where the duplicate is, is worked out only for a body that has one.
"""

import json
import re
from collections.abc import Iterable, Iterator

# The scan costs about as much per string as json.loads per this many bytes of numbers
# (measured: 2.8 us a string, against 11 ns a byte of a /add payload).
STRING_BYTES = 256
# The share of quotes in the first bytes tells which check suits a body.
SAMPLE_BYTES = 65_536
KEY_END = re.compile(rb"[ \t\r\n]*:")
# The rest of a string after its opening quote: anything but a quote or a backslash, or an escape.
STRING_REST = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)

Path = tuple[str | int, ...]


def has_duplicate_keys(text: bytes | str) -> bool:
    """Whether an object of a valid JSON text has a key twice.

    Args:
        text: The JSON text.
    """
    data = text if isinstance(text, bytes) else text.encode()
    sample = min(len(data), SAMPLE_BYTES)
    if data.count(b'"', 0, sample) // 2 * STRING_BYTES > sample:
        return pairs_repeat(data)
    # A body that only began with numbers falls back to json.loads past its share of strings,
    # so a body of strings padded in front costs at most both checks.
    found = scan_repeats(data, len(data) // STRING_BYTES)
    return pairs_repeat(data) if found is None else found


def pairs_repeat(text: bytes) -> bool:
    """Whether an object repeats a key, by ``json.loads`` with a hook in C that keeps every object's pairs.

    Args:
        text: Valid JSON.
    """
    objects: list[list[tuple[str, object]]] = []
    # Numbers are never converted (len instead): cheaper, and no digit limit applies.
    json.loads(text, object_pairs_hook=objects.append, parse_int=len, parse_float=len, parse_constant=len)
    return sum(map(len, objects)) != sum(map(len, map(dict, objects)))


def scan_repeats(text: bytes, budget: int) -> bool | None:
    """Whether an object repeats a key, by a scan from string to string, or None past ``budget`` strings.

    Args:
        text: Valid JSON.
        budget: Strings the scan may visit.
    """
    objects: list[set[str]] = []
    end = -1
    start = text.find(b'"')
    for _ in range(budget):
        if start < 0:
            return False
        track_objects(objects, text, end + 1, start)
        end = string_end(text, start)
        if KEY_END.match(text, end + 1) and not add_key(objects[-1], text[start : end + 1]):
            return True
        start = text.find(b'"', end + 1)
    return False if start < 0 else None


def track_objects(objects: list[set[str]], text: bytes, start: int, stop: int) -> None:
    """Close and open the objects whose braces lie between two strings, each open one with its keys so far.

    Args:
        objects: The keys of each open object, innermost last.
        text: Valid JSON.
        start: Where the text between the strings begins.
        stop: Where it ends (the next string's opening quote).
    """
    last_open = text.rfind(b"{", start, stop)
    if last_open < 0 and text.find(b"}", start, stop) < 0:
        return
    # Between two strings an object can only open and close empty, and one left open ends the
    # stretch: the string that follows is its first key.
    opened = last_open >= 0 and not text[last_open + 1 : stop].strip()
    closed = text.count(b"}", start, stop) - text.count(b"{", start, stop) + opened
    del objects[len(objects) - closed :]
    if opened:
        objects.append(set())


def string_end(text: bytes, start: int) -> int:
    """Where a string ends: its closing quote, past every escaped one.

    Args:
        text: Valid JSON.
        start: The string's opening quote.
    """
    rest = STRING_REST.match(text, start + 1)
    assert rest is not None  # every string of valid JSON ends
    return rest.end() - 1


def add_key(keys: set[str], quoted: bytes) -> bool:
    """Add a key to its object's keys; False when the object already has it.

    Args:
        keys: The object's keys so far.
        quoted: The key as written, quotes included.
    """
    key = json.loads(quoted) if b"\\" in quoted else quoted[1:-1].decode()
    if key in keys:
        return False
    keys.add(key)
    return True


def locate_duplicate_key(text: bytes | str) -> tuple[Path, str] | None:
    """The first object, in document order, that repeats a key: its path and the key.

    Args:
        text: Valid JSON.
    """
    # Objects are read as tuples of pairs, so that a repeated key stays visible; arrays stay lists.
    tree = json.loads(text, object_pairs_hook=tuple, parse_int=len, parse_float=len, parse_constant=len)
    return first_repeat(tree, ())


def first_repeat(node: object, path: Path) -> tuple[Path, str] | None:
    """The first object at or under ``node`` that repeats a key.

    Args:
        node: A value read by :func:`locate_duplicate_key`.
        path: Where it is.
    """
    if isinstance(node, tuple):
        key = repeated(name for name, _ in node)
        if key is not None:
            return path, key
    for step, child in children(node):
        found = first_repeat(child, (*path, step))
        if found is not None:
            return found
    return None


def children(node: object) -> Iterator[tuple[str | int, object]]:
    """The objects and arrays inside an object or an array, with their key or index.

    Args:
        node: A value read by :func:`locate_duplicate_key`.
    """
    steps: Iterable[tuple[str | int, object]]
    if isinstance(node, tuple):
        steps = node
    elif isinstance(node, list):
        steps = enumerate(node)
    else:
        steps = ()
    return ((step, child) for step, child in steps if isinstance(child, (tuple, list)))


def repeated(names: Iterable[str]) -> str | None:
    """The first name seen twice.

    Args:
        names: Keys in order.
    """
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return None
