"""Template placeholders: ``((name))`` in subject and content."""

import re
from collections.abc import Mapping

PLACEHOLDER = re.compile(r"\(\(([^()]+)\)\)")


def placeholders(*texts: str | None) -> list[str]:
    """List the placeholder names of ``texts`` in order of first appearance, each once.

    Args:
        texts: Subject and content (None is skipped).

    Returns:
        The names, surrounding whitespace stripped; ``(( ))`` is not a placeholder.
    """
    names: dict[str, None] = {}
    for text in texts:
        for match in PLACEHOLDER.finditer(text or ""):
            if name := match.group(1).strip():
                names.setdefault(name, None)
    return list(names)


def missing(text: str | None, values: Mapping[str, str]) -> list[str]:
    """Name the placeholders of ``text`` that ``values`` does not supply, sorted.

    Args:
        text: The template text.
        values: The personalization.

    Returns:
        The missing names in alphabetical order.
    """
    return sorted(name for name in placeholders(text) if name not in values)


def render(text: str, values: Mapping[str, str]) -> str:
    """Replace every placeholder of ``text`` with its value.

    Args:
        text: The template text.
        values: The personalization; it must supply every placeholder.

    Returns:
        The rendered text; values are inserted verbatim, never re-scanned for placeholders.
    """

    def value_of(match: re.Match[str]) -> str:
        name = match.group(1).strip()
        return values[name] if name else match.group(0)

    return PLACEHOLDER.sub(value_of, text)
