"""string_check and text_similarity score as their libraries do; a bad criterion is refused by field."""

from __future__ import annotations

import math
from typing import Any

import pytest
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
from nltk.translate.gleu_score import sentence_gleu
from rapidfuzz import fuzz, utils
from rouge_score import rouge_scorer

from services.common.errors import InvalidArgument
from services.trainer.evals.graders import (
    STRING_CHECK_OPERATIONS,
    TEXT_SIMILARITY_METRICS,
    Grade,
    check_criterion,
    grade,
)
from services.trainer.evals.templates import TemplateError, sample_namespace
from tailor.trainer.v1 import eval_service_pb2 as eval_pb2

ANSWER = "{{ sample.output_text }}"
EXPECTED = "{{ item.expected }}"
ROUGE_METRICS = ["rouge_1", "rouge_2", "rouge_3", "rouge_4", "rouge_5", "rouge_l"]


def string_check(operation: str, name: str = "check", **fields: Any) -> eval_pb2.TestingCriterion:
    grader = eval_pb2.StringCheckGrader(
        input=fields.get("input", ANSWER), reference=fields.get("reference", EXPECTED), operation=operation
    )
    return eval_pb2.TestingCriterion(name=name, string_check=grader)


def similarity(
    metric: str, threshold: float = 0.5, name: str = "similar", **fields: Any
) -> eval_pb2.TestingCriterion:
    grader = eval_pb2.TextSimilarityGrader(
        input=fields.get("input", ANSWER),
        reference=fields.get("reference", EXPECTED),
        evaluation_metric=metric,
        pass_threshold=threshold,
    )
    return eval_pb2.TestingCriterion(name=name, text_similarity=grader)


def graded(criterion: eval_pb2.TestingCriterion, answer: str, expected: str) -> Grade:
    check_criterion(criterion, 0, include_sample=True)
    return grade(criterion, {"expected": expected}, sample_namespace(answer))


# --- string_check ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "answer", "expected", "passes"),
    [
        ("eq", "Paris", "Paris", True),
        ("eq", "paris", "Paris", False),
        ("ne", "Lyon", "Paris", True),
        ("ne", "Paris", "Paris", False),
        ("like", "The capital is Paris.", "Paris", True),
        ("like", "The capital is paris.", "Paris", False),
        ("ilike", "THE CAPITAL IS PARIS.", "paris", True),
        ("ilike", "The capital is Lyon.", "paris", False),
    ],
)
def test_string_check_operations(operation: str, answer: str, expected: str, passes: bool) -> None:
    result = graded(string_check(operation), answer, expected)

    assert result == Grade("check", "string_check", 1.0 if passes else 0.0, passes)


def test_string_check_operations_are_openais() -> None:
    assert STRING_CHECK_OPERATIONS == ("eq", "ne", "like", "ilike")


def test_string_check_compares_rendered_json_of_non_strings() -> None:
    criterion = string_check("eq", input="{{ sample.output_json.n }}", reference="{{ item.n }}")

    assert grade(criterion, {"n": 42}, sample_namespace('{"n": 42}')).passed
    assert not grade(criterion, {"n": 42}, sample_namespace('{"n": "42!"}')).passed


# --- text_similarity: hand-checkable ---------------------------------------------------------


@pytest.mark.parametrize("metric", TEXT_SIMILARITY_METRICS)
def test_identical_long_texts_score_one_and_pass_any_threshold(metric: str) -> None:
    text = "the quick brown fox jumps over the lazy dog"

    result = graded(similarity(metric, threshold=1.0), text, text)

    assert result == Grade("similar", "text_similarity", 1.0, True)


@pytest.mark.parametrize("metric", TEXT_SIMILARITY_METRICS)
def test_texts_without_a_shared_character_score_zero(metric: str) -> None:
    result = graded(similarity(metric, threshold=0.0), "abc", "xyz")

    assert result.score == 0.0
    assert result.passed  # a threshold of 0 passes everything


@pytest.mark.parametrize("metric", ["fuzzy_match", "bleu", "gleu", "rouge_1", "rouge_l"])
def test_a_one_word_exact_answer_scores_one(metric: str) -> None:
    assert graded(similarity(metric), "Paris", "Paris").score == 1.0


def test_passing_is_score_at_least_threshold() -> None:
    score = graded(similarity("rouge_1"), "the cat sat", "the cat slept").score
    assert 0 < score < 1

    just_above = math.nextafter(score, 1)
    assert graded(similarity("rouge_1", threshold=score), "the cat sat", "the cat slept").passed
    assert not graded(similarity("rouge_1", threshold=just_above), "the cat sat", "the cat slept").passed


# --- text_similarity: as the libraries score ------------------------------------------------

ANSWER_TEXT = "The cat sat on the mat near the door."
REFERENCE_TEXT = "A cat was sitting on the mat by the door."


@pytest.mark.parametrize("metric", ROUGE_METRICS)
def test_rouge_is_rouge_scores_f_measure(metric: str) -> None:
    rouge_type = "rougeL" if metric == "rouge_l" else "rouge" + metric[-1]
    scores = rouge_scorer.RougeScorer([rouge_type]).score(REFERENCE_TEXT, ANSWER_TEXT)
    expected = scores[rouge_type].fmeasure

    assert graded(similarity(metric), ANSWER_TEXT, REFERENCE_TEXT).score == pytest.approx(expected)


def test_rouge_counts_words_of_every_script() -> None:
    # rouge-score's own tokenizer keeps only [a-z0-9]: these would be no words and score 0.
    assert graded(similarity("rouge_1"), "Καλημέρα κόσμε", "καλημέρα κόσμε").score == 1.0
    assert graded(similarity("rouge_1"), "東京 大阪", "東京 京都").score == pytest.approx(0.5)


def test_fuzzy_match_is_rapidfuzz_weighted_ratio_over_100() -> None:
    expected = fuzz.WRatio(ANSWER_TEXT, REFERENCE_TEXT, processor=utils.default_process) / 100

    assert graded(similarity("fuzzy_match"), ANSWER_TEXT, REFERENCE_TEXT).score == pytest.approx(expected)
    assert graded(similarity("fuzzy_match"), "PARIS!", "paris").score == 1.0


def test_bleu_is_nltk_sentence_bleu_over_words_and_punctuation() -> None:
    answer = ["The", "cat", "sat", "on", "the", "mat", "near", "the", "door", "."]
    reference = ["A", "cat", "was", "sitting", "on", "the", "mat", "by", "the", "door", "."]
    expected = sentence_bleu([reference], answer, smoothing_function=SmoothingFunction().method1)

    assert graded(similarity("bleu"), ANSWER_TEXT, REFERENCE_TEXT).score == pytest.approx(expected)


def test_bleu_of_a_short_answer_uses_the_orders_it_has() -> None:
    expected = sentence_bleu(
        [["Paris", "France"]],
        ["Paris", "Texas"],
        weights=(0.5, 0.5),
        smoothing_function=SmoothingFunction().method1,
    )

    assert graded(similarity("bleu"), "Paris Texas", "Paris France").score == pytest.approx(expected)


def test_gleu_is_nltk_sentence_gleu() -> None:
    answer = ["The", "cat", "sat", "on", "the", "mat", "near", "the", "door", "."]
    reference = ["A", "cat", "was", "sitting", "on", "the", "mat", "by", "the", "door", "."]

    assert graded(similarity("gleu"), ANSWER_TEXT, REFERENCE_TEXT).score == pytest.approx(
        sentence_gleu([reference], answer)
    )


@pytest.mark.parametrize("metric", TEXT_SIMILARITY_METRICS)
@pytest.mark.parametrize(("answer", "expected"), [("", "Paris"), ("Paris", ""), ("", ""), ("?!", "Paris")])
def test_an_empty_side_scores_zero(metric: str, answer: str, expected: str) -> None:
    result = graded(similarity(metric, threshold=0.1), answer, expected)

    assert result == Grade("similar", "text_similarity", 0.0, False)


def test_a_template_the_item_cannot_fill_is_an_error_of_that_item() -> None:
    with pytest.raises(TemplateError, match=r"item\.expected"):
        grade(similarity("bleu"), {"other": 1}, sample_namespace("Paris"))


# --- check_criterion ------------------------------------------------------------------------


def refused(criterion: eval_pb2.TestingCriterion, include_sample: bool = True) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as caught:
        check_criterion(criterion, 2, include_sample)
    assert caught.value.param and caught.value.param in caught.value.message
    return caught.value


def test_a_valid_criterion_is_accepted() -> None:
    check_criterion(string_check("eq", input="{{ item.a }}", reference="Paris"), 0, include_sample=False)
    check_criterion(similarity("rouge_l", threshold=0.0), 0, include_sample=True)
    check_criterion(similarity("bleu", threshold=1.0), 0, include_sample=True)


@pytest.mark.parametrize("name", ["", "   "])
def test_a_criterion_needs_a_name(name: str) -> None:
    assert refused(string_check("eq", name=name)).param == "testing_criteria[2].name"


def test_a_criterion_needs_a_grader() -> None:
    assert refused(eval_pb2.TestingCriterion(name="x")).param == "testing_criteria[2].type"


@pytest.mark.parametrize("operation", ["", "contains", "EQ", "neq"])
def test_an_unknown_operation_is_refused(operation: str) -> None:
    error = refused(string_check(operation))

    assert error.param == "testing_criteria[2].operation"
    assert "eq, ne, like, ilike" in error.message


@pytest.mark.parametrize("metric", ["", "rouge_6", "ROUGE_L", "exact"])
def test_an_unknown_metric_is_refused(metric: str) -> None:
    error = refused(similarity(metric))

    assert error.param == "testing_criteria[2].evaluation_metric"
    assert ", ".join(TEXT_SIMILARITY_METRICS) in error.message


@pytest.mark.parametrize("metric", ["meteor", "cosine"])
def test_metrics_needing_unshipped_data_are_refused_with_the_supported_list(metric: str) -> None:
    error = refused(similarity(metric))

    assert error.param == "testing_criteria[2].evaluation_metric"
    assert metric in error.message and "not supported" in error.message
    assert ", ".join(TEXT_SIMILARITY_METRICS) in error.message


@pytest.mark.parametrize("threshold", [-0.01, 1.01, math.nan, math.inf])
def test_a_threshold_outside_zero_to_one_is_refused(threshold: float) -> None:
    assert refused(similarity("bleu", threshold=threshold)).param == "testing_criteria[2].pass_threshold"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"input": "{{ answer }}"}, "testing_criteria[2].input"),
        ({"reference": "{{ items.expected }}"}, "testing_criteria[2].reference"),
        ({"reference": "{{ item }}"}, "testing_criteria[2].reference"),
        ({"input": "{{ sample.output }}"}, "testing_criteria[2].input"),
    ],
)
def test_templates_must_refer_to_item_or_sample_fields(fields: dict[str, str], param: str) -> None:
    assert refused(string_check("eq", **fields)).param == param
    assert refused(similarity("bleu", **fields)).param == param


def test_sample_references_need_a_sample() -> None:
    error = refused(string_check("eq"), include_sample=False)

    assert error.param == "testing_criteria[2].input"
    assert "sample.output_text" in error.message


def test_sample_json_paths_are_allowed() -> None:
    check_criterion(string_check("eq", input="{{ sample.output_json.label.0 }}"), 0, include_sample=True)
