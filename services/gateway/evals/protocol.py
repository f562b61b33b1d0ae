"""The openai SDK's eval request shapes (``client.evals.create/update``, ``client.evals.runs.create``).

The parts OpenAI makes a union (a data source config, a testing criterion, a run's data
source, its source and input messages) are taken as JSON objects and read here by their
``type``, so that a type Tailor does not serve is a 400 naming exactly that ``type``
(``testing_criteria[1].type``) with the ones it does, and a bad field of a served type is a
400 naming its full path (``data_source.sampling_params.temperature``), through the same
mapping as every other validation failure (:func:`services.gateway.errors.from_validation_error`).

Served: ``custom`` data source configs; ``string_check`` and ``text_similarity`` criteria;
``completions`` run data sources from ``file_content`` or ``file_id``, with a ``template`` of
text messages (content a string, an ``input_text``/``output_text`` part or a list of them)
or an ``item_reference``. The answers' shapes are in :mod:`.answers`.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from services.common.errors import shown
from services.gateway.errors import from_validation_error, invalid_request, unsupported_parameter
from services.gateway.protocol import Int32, Int64
from tailor.trainer.v1 import eval_service_pb2 as pb

# OpenAI's metadata: at most 16 pairs, keys up to 64 characters, values up to 512.
Metadata = Annotated[
    dict[Annotated[str, StringConstraints(max_length=64)], Annotated[str, StringConstraints(max_length=512)]],
    Field(max_length=16, description="Up to 16 pairs; keys up to 64 characters, values up to 512."),
]
NAME = Field(None, max_length=256, description="A name for people.")
ROLES = ("system", "developer", "user", "assistant")
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
# Text content parts of a template message; anything else (images, audio) is refused.
TEXT_PARTS = ("input_text", "output_text", "text")

M = TypeVar("M", bound=BaseModel)


def parsed(model: type[M], raw: Any, *where: str | int) -> M:
    """``raw`` read as ``model``; a 400 naming the field by its whole path (``where`` then the field's)."""
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        problems = [{**problem, "loc": ("body", *where, *problem["loc"])} for problem in error.errors()]
        raise from_validation_error(RequestValidationError(problems)) from None


def param_of(*where: str | int) -> str:
    """``("testing_criteria", 1, "type")`` -> ``testing_criteria[1].type``."""
    param = ""
    for part in where:
        param += f"[{part}]" if isinstance(part, int) else (f".{part}" if param else part)
    return param


def type_of(raw: Any, served: tuple[str, ...], what: str, *where: str | int) -> str:
    """The ``type`` of the object ``raw`` at ``where``: 400 naming ``<where>.type`` unless it is served."""
    if not isinstance(raw, dict):
        raise invalid_request(
            f"Invalid value for '{param_of(*where)}': expected an object.",
            param=param_of(*where),
            code="invalid_type",
        )
    kind = raw.get("type")
    param = param_of(*where, "type")
    if kind is None:
        raise invalid_request(
            f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
        )
    if kind not in served:
        raise invalid_request(
            f"Tailor does not support {what} of type '{shown(str(kind))}'; supported: {', '.join(served)}.",
            param=param,
            code="unsupported_value",
        )
    return str(kind)


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- evals --


class CustomDataSourceConfig(_Closed):
    type: Literal["custom"]
    item_schema: dict[str, Any] = Field(description="The JSON schema of each item (an object schema).")
    include_sample_schema: bool = Field(
        False, description="Whether graders may read `sample.` (the model's answer)."
    )


class StringCheckCriterion(_Closed):
    type: Literal["string_check"]
    name: str = Field(min_length=1, max_length=256)
    input: str = Field(description="A template, e.g. `{{sample.output_text}}`.")
    reference: str = Field(description="A template, e.g. `{{item.expected}}`.")
    operation: Literal["eq", "ne", "like", "ilike"]

    def to_proto(self) -> pb.TestingCriterion:
        grader = pb.StringCheckGrader(input=self.input, reference=self.reference, operation=self.operation)
        return pb.TestingCriterion(name=self.name, string_check=grader)


class TextSimilarityCriterion(_Closed):
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


class CreateEvalRequest(_Closed):
    """The body of ``POST /v1/evals``."""

    name: str | None = NAME
    metadata: Metadata | None = None
    data_source_config: dict[str, Any] = Field(
        description=(
            "`{type: custom, item_schema, include_sample_schema}`; `logs` and `stored_completions` "
            "are not served."
        )
    )
    testing_criteria: list[dict[str, Any]] = Field(
        min_length=1, max_length=64, description="Graders: `string_check` or `text_similarity`."
    )

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


class UpdateEvalRequest(_Closed):
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


# -- runs --


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class TemplateMessage(BaseModel):
    """One message of a run's template; OpenAI's ``EasyInputMessage`` or ``EvalItem``."""

    model_config = ConfigDict(extra="allow")

    role: Literal[ROLES]  # type: ignore[valid-type]
    content: str | ContentPart | list[ContentPart]
    type: Literal["message"] | None = None

    def to_proto(self, *where: str | int) -> pb.MessageTemplate:
        """The message with its content as one text; 400 for a part that is not text."""
        content = self.content
        if isinstance(content, str):
            return pb.MessageTemplate(role=self.role, content=content)
        parts = [content] if isinstance(content, ContentPart) else content
        texts = []
        for index, part in enumerate(parts):
            if part.type not in TEXT_PARTS or part.text is None:
                at = (*where, "content") if isinstance(content, ContentPart) else (*where, "content", index)
                raise invalid_request(
                    f"Tailor's models read text only; content part type '{shown(part.type)}' "
                    "is not supported.",
                    param=param_of(*at),
                    code="unsupported_content_type",
                )
            texts.append(part.text)
        return pb.MessageTemplate(role=self.role, content="".join(texts))


class TemplateInput(_Closed):
    type: Literal["template"]
    template: list[TemplateMessage] = Field(min_length=1, max_length=256)


class ItemReferenceInput(_Closed):
    type: Literal["item_reference"]
    item_reference: str = Field(
        min_length=1, max_length=256, description="e.g. `item.input`: the item's messages."
    )


class ContentRow(_Closed):
    item: dict[str, Any]
    sample: dict[str, Any] | None = None


class FileContentSource(_Closed):
    type: Literal["file_content"]
    content: list[ContentRow] = Field(min_length=1)


class FileIdSource(_Closed):
    type: Literal["file_id"]
    id: str = Field(min_length=1, max_length=256)


class SamplingParams(_Closed):
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    max_completion_tokens: Int32 | None = Field(None, ge=1)
    seed: Int64 | None = None
    # read only to refuse what cannot be honoured, or accepted and ignored (reasoning_effort)
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    reasoning_effort: str | None = None

    def to_proto(self) -> pb.EvalSamplingParams:
        if self.response_format and self.response_format.get("type", "text") != "text":
            raise unsupported_parameter(
                "data_source.sampling_params.response_format",
                "Tailor cannot constrain output to JSON; only {'type': 'text'} is served.",
            )
        if self.tools:
            raise unsupported_parameter(
                "data_source.sampling_params.tools", "Tailor's eval runs sample text answers, without tools."
            )
        params = pb.EvalSamplingParams()
        for name in ("temperature", "top_p", "max_completion_tokens", "seed"):
            value = getattr(self, name)
            if value is not None:
                setattr(params, name, value)
        return params


class CompletionsDataSource(_Closed):
    type: Literal["completions"]
    source: dict[str, Any] = Field(
        description="`file_content` (items inline) or `file_id` (a JSONL file, purpose `evals`)."
    )
    input_messages: dict[str, Any] = Field(
        description="`template` (messages with `{{item.<path>}}`) or `item_reference`."
    )
    model: str = Field(min_length=1, max_length=256)
    sampling_params: SamplingParams | None = None


class CreateEvalRunRequest(_Closed):
    """The body of ``POST /v1/evals/{eval_id}/runs``."""

    name: str | None = NAME
    metadata: Metadata | None = None
    data_source: dict[str, Any] = Field(
        description=(
            "`{type: completions, source, input_messages, model, sampling_params}`; `jsonl` and "
            "`responses` are not served."
        )
    )

    def to_proto(self, eval_id: str) -> pb.CreateEvalRunRequest:
        """The trainer's request; 400 naming the field for anything Tailor does not serve."""
        type_of(self.data_source, ("completions",), "run data sources", "data_source")
        data = parsed(CompletionsDataSource, self.data_source, "data_source")
        request = pb.CreateEvalRunRequest(
            eval_id=eval_id, name=self.name or "", metadata=self.metadata or {}, model=data.model
        )
        kind = type_of(data.source, ("file_content", "file_id"), "sources", "data_source", "source")
        if kind == "file_id":
            request.file_id = parsed(FileIdSource, data.source, "data_source", "source").id
        else:
            rows = parsed(FileContentSource, data.source, "data_source", "source").content
            request.content.rows_json.extend(json.dumps(row.model_dump(exclude_none=True)) for row in rows)
        where = ("data_source", "input_messages")
        kind = type_of(data.input_messages, ("template", "item_reference"), "input messages", *where)
        if kind == "template":
            template = parsed(TemplateInput, data.input_messages, *where).template
            request.input_messages.extend(
                message.to_proto(*where, "template", index) for index, message in enumerate(template)
            )
        else:
            request.item_reference = parsed(ItemReferenceInput, data.input_messages, *where).item_reference
        if data.sampling_params is not None:
            request.sampling_params.CopyFrom(data.sampling_params.to_proto())
        return request
