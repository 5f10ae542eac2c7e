"""Duplicate keys in valid JSON: both exact checks, the choice between them, and where the duplicate is."""

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastapi1.duplicate_keys import (
    SAMPLE_BYTES,
    STRING_BYTES,
    has_duplicate_keys,
    locate_duplicate_key,
    pairs_repeat,
    scan_repeats,
)

# Keys that the scan could take for structure, or that are equal only once unescaped.
KEYS = ["a", "to", "{", "}", ":", '"', "\\", "é", "\U0001f600", "a b", ""]
SCALARS = ["1", "-1.5e-308", "true", "null", "NaN", '"v"', '"}{:\\""', '"\\\\"', '"\\u007b"', "[]", "{}", "{ }"]
SPACE = st.sampled_from(["", " ", "\n  ", "\t"])


@st.composite
def written_key(draw: st.DrawFn) -> tuple[str, str]:
    """A key, and one of the ways JSON can write it (escaped or not)."""
    key = draw(st.sampled_from(KEYS))
    written = draw(st.sampled_from([json.dumps(key), json.dumps(key, ensure_ascii=False), escaped(key)]))
    return key, written


def escaped(key: str) -> str:
    """A key with every character written as a \\u escape (a surrogate pair outside the BMP)."""
    units = key.encode("utf-16-be")
    return '"' + "".join(f"\\u{units[index]:02x}{units[index + 1]:02x}" for index in range(0, len(units), 2)) + '"'


def json_text() -> st.SearchStrategy[str]:
    """Valid JSON whose objects may repeat keys, with whitespace anywhere it may go."""

    def extend(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        member = st.tuples(SPACE, written_key(), SPACE, SPACE, children).map(
            lambda part: f"{part[0]}{part[1][1]}{part[2]}:{part[3]}{part[4]}"
        )
        return st.lists(children, max_size=4).map(lambda items: "[" + ", ".join(items) + "]") | st.lists(
            member, max_size=5
        ).map(lambda members: "{" + ",".join(members) + "}")

    return st.recursive(st.sampled_from(SCALARS), extend, max_leaves=20)


def repeats(text: str) -> bool:
    """The reference: json.loads with a hook that sees every object's pairs."""
    found = False

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal found
        found = found or len({key for key, _ in pairs}) < len(pairs)
        return dict(pairs)

    json.loads(text, object_pairs_hook=hook)
    return found


class TestBothChecksAreExact:
    @given(text=json_text())
    def test_each_check_finds_a_duplicate_exactly_when_an_object_repeats_a_key(self, text: str) -> None:
        expected = repeats(text)
        data = text.encode()
        assert pairs_repeat(data) is expected
        assert scan_repeats(data, len(data)) is expected
        assert has_duplicate_keys(text) is expected
        assert (locate_duplicate_key(text) is not None) is expected

    @pytest.mark.parametrize("check", [pairs_repeat, lambda text: scan_repeats(text, 100)])
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            (b'{"to": 1, "t\\u006f": 2}', True),
            (b'{"\\ud83d\\ude00": 1, "\xf0\x9f\x98\x80": 2}', True),
            (b'{"to": 1, "To": 2}', False),
            (b'[{"to": 1}, {"to": 2}]', False),
            (b'{"a": {"to": 1}, "b": {"to": 2}}', False),
            (b'{"a": {"b": 1}, "b": 2}', False),
            (b'{"a": {"b": {}}, "a": 2}', True),
            (b'{"a": "{", "b": "}\\"", "a": 1}', True),
            (b'{"a": [{}, {"a": 1}, []], "b": {}}', False),
            (b'{"a" : 1 ,"a"\n:2}', True),
        ],
    )
    def test_escapes_nesting_and_structure_inside_strings(self, check: Any, text: bytes, expected: bool) -> None:
        assert check(text) is expected


class TestTheCheapCheckForTheShape:
    def test_a_scan_past_its_budget_of_strings_gives_up(self) -> None:
        assert scan_repeats(b'[{"a": 1}, {"a": 1}, {"a": 1}]', 2) is None
        assert scan_repeats(b'[{"a": 1}, {"a": 1}, {"a": 1}]', 3) is False

    @pytest.mark.parametrize(("last", "expected"), [(b'{"k": 1, "k": 2}', True), (b'{"k": 1, "l": 2}', False)])
    def test_a_body_of_strings_behind_numbers_is_checked_past_the_scans_budget(
        self, last: bytes, expected: bool
    ) -> None:
        # The sample sees only numbers, so the scan starts, and gives up before the last object.
        text = b"[[" + b"1, " * SAMPLE_BYTES + b"1], " + b'{"k": "v", "l": "v"}, ' * 2_000 + last + b"]"
        assert scan_repeats(text, len(text) // STRING_BYTES) is None
        assert has_duplicate_keys(text) is expected

    @pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
    def test_a_decoded_text_is_checked_as_its_bytes_are(self, encoding: str) -> None:
        text = '{"é": 1, "\\u00e9": 2}'
        assert has_duplicate_keys(text.encode(encoding).decode(encoding))


class TestWhereTheDuplicateIs:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            (b'{"to": "a", "to": "b"}', ((), "to")),
            (b'[{"to": "x"}, {"to": "a", "to": "b"}]', ((1,), "to")),
            (b'{"observations": {"a": {}, "a": {}}}', (("observations",), "a")),
            (b'{"observations": {"a": {"x": 1, "x": 2}}}', (("observations", "a"), "x")),
            (b'[[1, 2], {"p": [3, {"k": 1, "k": 2}]}]', ((1, "p", 1), "k")),
            (b'{"t\\u006f": 1, "to": 2}', ((), "to")),
            (b'[{"a": 1}, 2, "s"]', None),
        ],
    )
    def test_the_path_of_the_first_object_that_repeats_a_key(
        self, text: bytes, expected: tuple[tuple[str | int, ...], str] | None
    ) -> None:
        assert locate_duplicate_key(text) == expected
