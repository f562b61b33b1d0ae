"""The openai SDK's eval request shapes (``client.evals.create/update``) and what eval requests share.

Served: ``custom`` data source configs; ``string_check`` and ``text_similarity`` criteria.
Run requests are in :mod:`.run_protocol`, the answers' shapes in :mod:`.answers`, and how
OpenAI's unions are read (a 400 naming the field) in :mod:`.reading`.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from services.gateway.evals.reading import Closed, documented_as, parsed, type_of
from tailor.trainer.v1 import eval_service_pb2 as pb

# OpenAI's metadata: at most 16 pairs, keys up to 64 characters, values up to 512.
Metadata = Annotated[
    dict[Annotated[str, StringConstraints(max_length=64)], Annotated[str, StringConstraints(max_length=512)]],
    Field(max_length=16, description="Up to 16 pairs; keys up to 64 characters, values up to 512."),
]
NAME = Field(None, max_length=256, description="A name for people.")
SUPPORTED_CRITERIA = ("string_check", "text_similarity")
SIMILARITY_METRICS = (
    "cosine", "fuzzy_match", "bleu", "gleu", "meteor",
    "rouge_1", "rouge_2", "rouge_3", "rouge_4", "rouge_5", "rouge_l",
)  # fmt: skip
# What a run samples with when it says nothing, as OpenAI documents for evals (seed 42): the
# sampler sends these, and output items report them.
DEFAULT_TEMPERATURE = 1.0
DEFAULT_TOP_P = 1.0
DEFAULT_SEED = 42


# -- evals --


class CustomDataSourceConfig(Closed):
    type: Literal["custom"]
    item_schema: dict[str, Any] = Field(description="The JSON schema of each item (an object schema).")
    include_sample_schema: bool = Field(
        False, description="Whether graders may read `sample.` (the model's answer)."
    )


class StringCheckCriterion(Closed):
    type: Literal["string_check"]
    name: str = Field(min_length=1, max_length=256)
    input: str = Field(description="A template, e.g. `{{sample.output_text}}`.")
    reference: str = Field(description="A template, e.g. `{{item.expected}}`.")
    operation: Literal["eq", "ne", "like", "ilike"]

    def to_proto(self) -> pb.TestingCriterion:
        grader = pb.StringCheckGrader(input=self.input, reference=self.reference, operation=self.operation)
        return pb.TestingCriterion(name=self.name, string_check=grader)


class TextSimilarityCriterion(Closed):
    type: Literal["text_similarity"]
    name: str = Field(min_length=1, max_length=256)
    input: str
    reference: str
    evaluation_metric: Literal[SIMILARITY_METRICS]  # type: ignore[valid-type]
    pass_threshold: float = Field(ge=0, le=1)

    def to_proto(self) -> pb.TestingCriterion:
        grader = pb.TextSimilarityGrader(
            input=self.input,
            reference=self.reference,
            evaluation_metric=self.evaluation_metric,
            pass_threshold=self.pass_threshold,
        )
        return pb.TestingCriterion(name=self.name, text_similarity=grader)


CRITERIA: dict[str, type[StringCheckCriterion] | type[TextSimilarityCriterion]] = {
    "string_check": StringCheckCriterion,
    "text_similarity": TextSimilarityCriterion,
}


class CreateEvalRequest(Closed):
    """The body of ``POST /v1/evals``."""

    name: str | None = NAME
    metadata: Metadata | None = None
    data_source_config: dict[str, Any] = Field(
        description="The items' schema; `logs` and `stored_completions` configs are not served.",
        json_schema_extra=documented_as(CustomDataSourceConfig),
    )
    testing_criteria: list[
        Annotated[dict[str, Any], Field(json_schema_extra=documented_as(*CRITERIA.values()))]
    ] = Field(min_length=1, max_length=64, description="Graders: `string_check` or `text_similarity`.")

    def to_proto(self) -> pb.CreateEvalRequest:
        """The trainer's request; 400 naming the field for anything Tailor does not serve."""
        type_of(self.data_source_config, ("custom",), "data source configs", "data_source_config")
        config = parsed(CustomDataSourceConfig, self.data_source_config, "data_source_config")
        criteria = []
        for index, raw in enumerate(self.testing_criteria):
            kind = type_of(raw, SUPPORTED_CRITERIA, "testing criteria", "testing_criteria", index)
            criteria.append(parsed(CRITERIA[kind], raw, "testing_criteria", index).to_proto())
        return pb.CreateEvalRequest(
            name=self.name or "",
            metadata=self.metadata or {},
            item_schema_json=json.dumps(config.item_schema),
            include_sample_schema=config.include_sample_schema,
            testing_criteria=criteria,
        )


class UpdateEvalRequest(Closed):
    """The body of ``POST /v1/evals/{eval_id}``: fields given replace the current ones."""

    name: str | None = NAME
    metadata: Metadata | None = Field(None, description="The complete new metadata; null clears it.")

    def to_proto(self, eval_id: str) -> pb.UpdateEvalRequest:
        request = pb.UpdateEvalRequest(eval_id=eval_id)
        if self.name is not None:
            request.name = self.name
        if "metadata" in self.model_fields_set:
            request.metadata.update(self.metadata or {})
            request.set_metadata = True
        return request
