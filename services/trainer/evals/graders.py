"""OpenAI's deterministic graders, `string_check` and `text_similarity`: checked, then scored per sample.

Each grader renders its `input` and `reference` templates (:mod:`.templates`) from the item
and the sample, then scores the pair in [0, 1]. A string check scores 1 or 0 and passes on 1;
a text similarity passes when its score is at least `pass_threshold`.

The metrics run on libraries the trainer ships and never fetch data at run time (there is no
network where the trainer runs): rapidfuzz, nltk's BLEU / GLEU (which need no corpora) and
Google's rouge-score. `meteor` needs WordNet and `cosine` an embedding model, neither of which
the platform ships, so :func:`check_criterion` refuses them when the eval is created rather
than failing every item later. How each metric tokenizes is in docs/evals.md.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
from nltk.translate.gleu_score import sentence_gleu
from rapidfuzz import fuzz, utils
from rouge_score import rouge_scorer

from services.common.errors import InvalidArgument, shown
from services.trainer.evals import templates
from tailor.trainer.v1 import eval_service_pb2 as eval_pb2

STRING_CHECK = "string_check"
TEXT_SIMILARITY = "text_similarity"
STRING_CHECK_OPERATIONS: tuple[str, ...] = ("eq", "ne", "like", "ilike")
_ROUGE_TYPES = {f"rouge_{n}": f"rouge{n}" for n in range(1, 6)} | {"rouge_l": "rougeL"}
TEXT_SIMILARITY_METRICS: tuple[str, ...] = ("fuzzy_match", "bleu", "gleu", *_ROUGE_TYPES)
# OpenAI's metrics that need data or a model this platform does not ship.
_UNSHIPPED_METRICS = {"meteor": "WordNet data", "cosine": "an embedding model"}

# BLEU / GLEU words: runs of word characters, and each other non-space character on its own
# (so "Paris." is "Paris" "."), case kept, as BLEU is case-sensitive by convention.
_BLEU_TOKEN = re.compile(r"\w+|[^\w\s]")
_BLEU_MAX_ORDER = 4
_BLEU_SMOOTHING = SmoothingFunction().method1


@dataclass(frozen=True)
class Grade:
    """One criterion's grade of one sample, as an output item's `results` shows it."""

    name: str
    type: str
    score: float
    passed: bool


def check_criterion(criterion: eval_pb2.TestingCriterion, index: int, include_sample: bool) -> None:
    """Refuses a criterion that could not grade, naming `testing_criteria[index].<field>`.

    `include_sample` says whether the eval's items come with a sample (its
    `include_sample_schema`); a completions run always samples one, so callers checking a
    run's criteria pass True.
    """
    field = f"testing_criteria[{index}]"
    if not criterion.name.strip():
        raise InvalidArgument(f"{field}.name must not be empty", param=f"{field}.name")
    kind = criterion.WhichOneof("grader")
    if kind == STRING_CHECK:
        grader = criterion.string_check
        if grader.operation not in STRING_CHECK_OPERATIONS:
            raise InvalidArgument(
                f"{field}.operation must be one of {', '.join(STRING_CHECK_OPERATIONS)}, "
                f"not {shown(grader.operation)!r}",
                param=f"{field}.operation",
            )
    elif kind == TEXT_SIMILARITY:
        grader = criterion.text_similarity
        _check_metric(grader.evaluation_metric, f"{field}.evaluation_metric")
        threshold = grader.pass_threshold
        if not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
            raise InvalidArgument(
                f"{field}.pass_threshold must be between 0 and 1 (scores are in [0, 1]), not {threshold}",
                param=f"{field}.pass_threshold",
            )
    else:
        raise InvalidArgument(
            f"{field}.type must be {STRING_CHECK} or {TEXT_SIMILARITY}", param=f"{field}.type"
        )
    _check_template(grader.input, f"{field}.input", include_sample)
    _check_template(grader.reference, f"{field}.reference", include_sample)


def grade(criterion: eval_pb2.TestingCriterion, item: Mapping[str, Any], sample: Mapping[str, Any]) -> Grade:
    """Scores one sample (see :func:`templates.sample_namespace`) of one item against a checked criterion.

    A template the item cannot fill raises :class:`templates.TemplateError`: the item is
    an error, not a failure.
    """
    kind = criterion.WhichOneof("grader")
    if kind == STRING_CHECK:
        grader = criterion.string_check
        given = templates.render(grader.input, item, sample)
        reference = templates.render(grader.reference, item, sample)
        score = 1.0 if _string_check(grader.operation, given, reference) else 0.0
        return Grade(criterion.name, kind, score, score == 1.0)
    if kind == TEXT_SIMILARITY:
        grader = criterion.text_similarity
        given = templates.render(grader.input, item, sample)
        reference = templates.render(grader.reference, item, sample)
        score = similarity(grader.evaluation_metric, given, reference)
        return Grade(criterion.name, kind, score, score >= grader.pass_threshold)
    raise ValueError(f"criterion {criterion.name!r} has no grader")


def similarity(metric: str, given: str, reference: str) -> float:
    """`given`'s similarity to `reference` in [0, 1] by one of :data:`TEXT_SIMILARITY_METRICS`."""
    if metric == "fuzzy_match":
        # The scorer of OpenAI's graders guide: weighted ratio after lower-casing and
        # stripping punctuation, so a right answer inside a longer one still scores high.
        return fuzz.WRatio(given, reference, processor=utils.default_process) / 100.0
    if metric == "bleu":
        return _bleu(given, reference)
    if metric == "gleu":
        hypothesis, expected = _BLEU_TOKEN.findall(given), _BLEU_TOKEN.findall(reference)
        if not hypothesis or not expected:
            return 0.0  # an empty side scores 0, as by the other metrics
        return float(sentence_gleu([expected], hypothesis))
    if metric in _ROUGE_TYPES:
        rouge_type = _ROUGE_TYPES[metric]
        return float(_rouge_scorer(rouge_type).score(reference, given)[rouge_type].fmeasure)
    raise ValueError(f"unsupported evaluation_metric {metric!r}")


def _string_check(operation: str, given: str, reference: str) -> bool:
    if operation == "eq":
        return given == reference
    if operation == "ne":
        return given != reference
    if operation == "like":
        return reference in given
    if operation == "ilike":
        return reference.casefold() in given.casefold()
    raise ValueError(f"unsupported string_check operation {operation!r}")


def _bleu(given: str, reference: str) -> float:
    """Sentence BLEU, its n-gram order capped at the shorter text's length.

    Answers are often a word or two; with the usual order 4, an exact one-word answer
    would score 0.18 (its missing 2-, 3- and 4-grams smoothed), so the order drops to what
    both texts can hold and an exact answer scores 1. Smoothing is Chen & Cherry's method 1.
    """
    hypothesis, expected = _BLEU_TOKEN.findall(given), _BLEU_TOKEN.findall(reference)
    if not hypothesis or not expected:
        return 0.0  # an empty side scores 0, as by the other metrics
    order = min(_BLEU_MAX_ORDER, len(hypothesis), len(expected))
    weights = (1.0 / order,) * order
    return float(sentence_bleu([expected], hypothesis, weights=weights, smoothing_function=_BLEU_SMOOTHING))


class _UnicodeWords:
    """rouge-score's tokenization (lower-case, words of letters and digits) for every script.

    Its default tokenizer keeps only [a-z0-9], which would turn an answer in Greek or
    Japanese into no words at all and score it 0.
    """

    def tokenize(self, text: str) -> list[str]:
        return re.findall(r"[^\W_]+", text.lower())


_ROUGE_SCORERS: dict[str, rouge_scorer.RougeScorer] = {}


def _rouge_scorer(rouge_type: str) -> rouge_scorer.RougeScorer:
    if rouge_type not in _ROUGE_SCORERS:
        _ROUGE_SCORERS[rouge_type] = rouge_scorer.RougeScorer([rouge_type], tokenizer=_UnicodeWords())
    return _ROUGE_SCORERS[rouge_type]


def _check_metric(metric: str, param: str) -> None:
    supported = ", ".join(TEXT_SIMILARITY_METRICS)
    if metric in _UNSHIPPED_METRICS:
        raise InvalidArgument(
            f"{param} {metric!r} is not supported here: it needs {_UNSHIPPED_METRICS[metric]}, "
            f"which this platform does not ship; use one of {supported}",
            param=param,
        )
    if metric not in TEXT_SIMILARITY_METRICS:
        raise InvalidArgument(f"{param} must be one of {supported}, not {shown(metric)!r}", param=param)


def _check_template(template: str, param: str, include_sample: bool) -> None:
    try:
        paths = templates.references(template)
    except templates.TemplateError as error:
        raise InvalidArgument(f"{param}: {shown(str(error))}", param=param) from None
    for path in paths:
        namespace, key = path.split(".")[:2]
        if namespace != "sample":
            continue
        if not include_sample:
            raise InvalidArgument(
                f"{param} refers to {shown(path)}, but the eval's items have no sample "
                "(set include_sample_schema, or refer to item. fields only)",
                param=param,
            )
        if key not in templates.SAMPLE_KEYS:
            raise InvalidArgument(
                f"{param} refers to {shown(path)}; a sample has {', '.join(templates.SAMPLE_KEYS)}",
                param=param,
            )
