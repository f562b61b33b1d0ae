"""The openai SDK's eval run request shape (``client.evals.runs.create``).

Served: ``completions`` data sources from ``file_content`` or ``file_id``, with a
``template`` of text messages (content a string, an ``input_text``/``output_text`` part or a
list of them) or an ``item_reference``, and the sampling parameters Tailor honours.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.common.errors import shown
from services.gateway.errors import invalid_request, unsupported_parameter
from services.gateway.evals.protocol import NAME, Metadata
from services.gateway.evals.reading import Closed, documented_as, param_of, parsed, type_of
from services.gateway.protocol import Int32, Int64
from tailor.trainer.v1 import eval_service_pb2 as pb

ROLES = ("system", "developer", "user", "assistant")
# Text content parts of a template message; anything else (images, audio) is refused.
TEXT_PARTS = ("input_text", "output_text", "text")


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


class TemplateInput(Closed):
    type: Literal["template"]
    template: list[TemplateMessage] = Field(min_length=1, max_length=256)


class ItemReferenceInput(Closed):
    type: Literal["item_reference"]
    item_reference: str = Field(
        min_length=1, max_length=256, description="e.g. `item.input`: the item's messages."
    )


class ContentRow(Closed):
    item: dict[str, Any]
    sample: dict[str, Any] | None = None


class FileContentSource(Closed):
    type: Literal["file_content"]
    content: list[ContentRow] = Field(min_length=1)


class FileIdSource(Closed):
    type: Literal["file_id"]
    id: str = Field(min_length=1, max_length=256)


class SamplingParams(Closed):
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


class CompletionsDataSource(Closed):
    type: Literal["completions"]
    source: dict[str, Any] = Field(
        description="`file_content` (items inline) or `file_id` (a JSONL file, purpose `evals`).",
        json_schema_extra=documented_as(FileContentSource, FileIdSource),
    )
    input_messages: dict[str, Any] = Field(
        description="`template` (messages with `{{item.<path>}}`) or `item_reference`.",
        json_schema_extra=documented_as(TemplateInput, ItemReferenceInput),
    )
    model: str = Field(min_length=1, max_length=256)
    sampling_params: SamplingParams | None = None


class CreateEvalRunRequest(Closed):
    """The body of ``POST /v1/evals/{eval_id}/runs``."""

    name: str | None = NAME
    metadata: Metadata | None = None
    data_source: dict[str, Any] = Field(
        description="What to sample; `jsonl` and `responses` data sources are not served.",
        json_schema_extra=documented_as(CompletionsDataSource),
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
