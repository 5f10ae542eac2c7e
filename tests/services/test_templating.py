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


names = st.sampled_from(["a", "b", "name", "x y"])
markers = st.builds(
    lambda pad, name, end: f"(({pad}{name}{end}))", st.sampled_from(["", " ", "\t"]), names, st.sampled_from(["", " "])
)
texts = st.lists(
    st.one_of(markers, st.text(max_size=8), st.sampled_from(["((", "))", "(( ))", "(", ")", "((()))"])), max_size=12
).map("".join)


class TestParsedText:
    @given(st.data(), texts)
    def test_the_counted_length_and_the_rendering_match_the_regular_expression(
        self, data: st.DataObject, text: str
    ) -> None:
        values = {name: data.draw(st.text(max_size=30), label=name) for name in templating.placeholders(text)}
        parsed = templating.parse(text)
        assert parsed.render(values) == templating.render(text, values)
        assert parsed.rendered_length(values) == len(templating.render(text, values))

    @given(st.text(alphabet="()ab \n", max_size=40), st.dictionaries(names, st.text(max_size=5)))
    def test_an_unsupplied_placeholder_stays_as_written_and_is_counted_so(
        self, text: str, values: dict[str, str]
    ) -> None:
        parsed = templating.parse(text)
        assert parsed.rendered_length(values) == len(parsed.render(values))
        assert parsed.render({}) == text

    def test_the_length_of_a_huge_rendering_is_counted_without_rendering_it(self) -> None:
        parsed = templating.parse("((a))" * 20_000 + "!")
        assert parsed.rendered_length({"a": "v" * 10_000}) == 200_000_001
        assert parsed.occurrences["a"].count == 20_000

    def test_a_template_names_the_placeholders_of_subject_then_content_once(self) -> None:
        template = templating.parse_template("((topic)) ((b))", "((a)) ((topic))")
        assert template.names == ("topic", "b", "a")
        assert template.render({"topic": "T", "a": "A", "b": "B"}) == ("T B", "A T")
        assert templating.parse_template(None, "x").render({}) == (None, "x")
