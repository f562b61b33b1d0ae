"""Eval templates fill `{{ item.* }}` and `{{ sample.* }}` as OpenAI's guide says; errors name the path."""

from __future__ import annotations

import pytest

from services.trainer.evals.templates import TemplateError, references, render, sample_namespace

ITEM = {
    "question": "What is the capital of France?",
    "answer": {"city": "Paris", "aliases": ["Paname", "City of Light"]},
    "count": 3,
    "ratio": 0.5,
    "flag": True,
    "missing": None,
    "greeting": "Καλημέρα, 世界",
}


def test_references_and_text_around_them_are_kept() -> None:
    assert render("Q: {{item.question}}\nA:", ITEM) == "Q: What is the capital of France?\nA:"


def test_whitespace_inside_braces_is_allowed() -> None:
    assert render("{{   item.answer.city\t}}!", ITEM) == "Paris!"


def test_nested_keys_and_list_indexes() -> None:
    rendered = render("{{ item.answer.aliases.1 }} / {{ item.answer.aliases.0 }}", ITEM)

    assert rendered == "City of Light / Paname"


def test_non_strings_render_as_compact_json() -> None:
    rendered = render("{{item.count}} {{item.ratio}} {{item.flag}} {{item.missing}} {{item.answer}}", ITEM)

    assert rendered == '3 0.5 true null {"city":"Paris","aliases":["Paname","City of Light"]}'


def test_unicode_is_kept_as_is_in_text_and_in_json() -> None:
    assert render("{{ item.greeting }}", ITEM) == "Καλημέρα, 世界"
    assert render("{{ item.nested }}", {"nested": {"w": "ü"}}) == '{"w":"ü"}'


def test_empty_braces_stay_verbatim() -> None:
    assert render("{{}} and {{ }} stay", ITEM) == "{{}} and {{ }} stay"
    assert references("{{}} and {{ }}") == []


def test_sample_values_fill_sample_references() -> None:
    sample = sample_namespace('{"label": "positive"}')

    assert render("{{sample.output_json.label}} vs {{ item.count }}", ITEM, sample) == "positive vs 3"
    assert render("{{ sample.output_text }}", ITEM, sample) == '{"label": "positive"}'


def test_output_json_only_when_the_answer_is_json() -> None:
    assert sample_namespace("Paris") == {"output_text": "Paris"}
    assert sample_namespace("[1, 2]") == {"output_text": "[1, 2]", "output_json": [1, 2]}


@pytest.mark.parametrize(
    ("template", "named"),
    [
        ("{{ item.answer.country }}", "item.answer.country"),
        ("{{ item.answer.aliases.2 }}", "item.answer.aliases.2"),
        ("{{ item.question.0 }}", "item.question.0"),
        ("{{ item.nope.deeper }}", "item.nope"),
    ],
)
def test_a_missing_value_names_its_path(template: str, named: str) -> None:
    with pytest.raises(TemplateError, match=named.replace(".", r"\.")) as caught:
        render(template, ITEM)
    assert caught.value.path == template.strip("{} ")


def test_a_sample_reference_without_a_sample_is_an_error() -> None:
    with pytest.raises(TemplateError, match=r"sample\.output_text"):
        render("{{ sample.output_text }}", ITEM)


@pytest.mark.parametrize("template", ["{{ answer }}", "{{ items.answer }}", "{{ sample_text }}"])
def test_an_unknown_namespace_is_an_error(template: str) -> None:
    with pytest.raises(TemplateError, match="unknown namespace"):
        render(template, ITEM, sample_namespace("x"))


@pytest.mark.parametrize("template", ["{{ item }}", "{{ item..answer }}", "{{ item.a b }}", "{{ item. }}"])
def test_a_malformed_reference_is_an_error_not_literal_text(template: str) -> None:
    with pytest.raises(TemplateError):
        references(template)
    with pytest.raises(TemplateError):
        render(template, ITEM)


def test_references_lists_every_path_in_order() -> None:
    template = "{{ item.question }} {{sample.output_text}} {{item.question}}"

    assert references(template) == ["item.question", "sample.output_text", "item.question"]
    assert references("no references at all") == []
