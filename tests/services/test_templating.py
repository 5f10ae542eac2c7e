"""Placeholder parsing and rendering."""

from hypothesis import given
from hypothesis import strategies as st

from fastapi1.services import templating


class TestPlaceholders:
    def test_names_are_stripped_deduplicated_and_kept_in_order(self) -> None:
        assert templating.placeholders("((b)) (( a )) ((b))", "((c)) ((a))") == ["b", "a", "c"]

    def test_empty_and_unbalanced_markers_are_not_placeholders(self) -> None:
        assert templating.placeholders("(( )) ((open (single) ))close", None) == []

    def test_missing_names_are_sorted(self) -> None:
        assert templating.missing("((name)) ((band)) ((city))", {"city": "Leeds"}) == ["band", "name"]


class TestRender:
    def test_every_placeholder_is_replaced(self) -> None:
        assert templating.render("Hi ((name)), ((band)) at (( name ))", {"name": "Ada", "band": "Korn"}) == (
            "Hi Ada, Korn at Ada"
        )

    @given(st.text(), st.text())
    def test_values_are_inserted_verbatim_and_never_rescanned(self, prefix: str, value: str) -> None:
        rendered = templating.render(prefix.replace("(", "").replace(")", "") + "((x))", {"x": value + "((x))"})
        assert rendered.endswith(value + "((x))")
