"""The openai SDK's eval answer shapes, built from the trainer's records.

Every field OpenAI's schemas require is present. Where OpenAI sends null although its schema
says otherwise (a run's or a sample's ``error`` when nothing failed), Tailor sends null too,
as the SDK reads it. A run's ``data_source`` says where its items came from; items given
inline are not repeated there (``content`` is empty): each output item carries its own as
``datasource_item``. Sampling parameters a run left out are reported as what the sampler
used (:data:`~services.gateway.evals.protocol.DEFAULT_TEMPERATURE` and the others; an
absent ``max_completion_tokens`` is 0: the answer was bounded by the model's context only).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.gateway.evals.protocol import DEFAULT_SEED, DEFAULT_TEMPERATURE, DEFAULT_TOP_P
from services.gateway.protocol import CursorPage
from tailor.trainer.v1 import eval_service_pb2 as pb

RUN_STATUSES = {
    pb.EVAL_RUN_STATUS_QUEUED: "queued",
    pb.EVAL_RUN_STATUS_IN_PROGRESS: "in_progress",
    pb.EVAL_RUN_STATUS_COMPLETED: "completed",
    pb.EVAL_RUN_STATUS_FAILED: "failed",
    pb.EVAL_RUN_STATUS_CANCELED: "canceled",
}
STATUS_OF_NAME = {name: status for status, name in RUN_STATUSES.items()}
RunStatusName = Literal["queued", "in_progress", "completed", "canceled", "failed"]


def sample_schema() -> dict[str, Any]:
    """What ``sample.`` holds for graders: the answer's text, and the text parsed when it is JSON."""
    return {
        "type": "object",
        "properties": {"output_text": {"type": "string"}, "output_json": {}},
        "required": ["output_text"],
    }


def data_source_config(item_schema: dict[str, Any], include_sample_schema: bool) -> dict[str, Any]:
    """OpenAI's ``custom`` config as answered: one JSON schema with ``item`` (and ``sample``)."""
    properties = {"item": item_schema}
    if include_sample_schema:
        properties["sample"] = sample_schema()
    schema = {"type": "object", "properties": properties, "required": list(properties)}
    return {"type": "custom", "schema": schema}


def criterion(criterion: pb.TestingCriterion) -> dict[str, Any]:
    if criterion.HasField("string_check"):
        check = criterion.string_check
        return {
            "type": "string_check",
            "name": criterion.name,
            "input": check.input,
            "reference": check.reference,
            "operation": check.operation,
        }
    similarity = criterion.text_similarity
    return {
        "type": "text_similarity",
        "name": criterion.name,
        "input": similarity.input,
        "reference": similarity.reference,
        "evaluation_metric": similarity.evaluation_metric,
        "pass_threshold": similarity.pass_threshold,
    }


class Eval(BaseModel):
    object: Literal["eval"] = "eval"
    id: str
    name: str
    created_at: int
    metadata: dict[str, str] | None
    data_source_config: dict[str, Any]
    testing_criteria: list[dict[str, Any]]

    @classmethod
    def from_proto(cls, record: pb.Eval) -> Eval:
        return cls(
            id=record.id,
            name=record.name,
            created_at=record.created_at,
            metadata=dict(record.metadata),
            data_source_config=data_source_config(
                json.loads(record.item_schema_json or "{}"), record.include_sample_schema
            ),
            testing_criteria=[criterion(c) for c in record.testing_criteria],
        )


class EvalList(CursorPage[Eval]):
    pass


class DeletedEval(BaseModel):
    object: Literal["eval.deleted"] = "eval.deleted"
    deleted: bool = True
    eval_id: str


class ApiError(BaseModel):
    code: str
    message: str

    @classmethod
    def of(cls, code: str, message: str) -> ApiError | None:
        return cls(code=code or "error", message=message) if code or message else None


class ResultCounts(BaseModel):
    total: int
    errored: int
    failed: int
    passed: int


class ModelUsage(BaseModel):
    model_name: str
    invocation_count: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cached_tokens: int


class CriterionResult(BaseModel):
    testing_criteria: str
    passed: int
    failed: int


def sampling_params(params: pb.EvalSamplingParams) -> dict[str, Any]:
    """The parameters the run was created with (those it gave)."""
    names = ("temperature", "top_p", "max_completion_tokens", "seed")
    return {name: getattr(params, name) for name in names if params.HasField(name)}


def data_source(run: pb.EvalRun) -> dict[str, Any]:
    """The run's ``completions`` data source (see the module docstring for inline items).

    Template messages are echoed as OpenAI does, their content an ``input_text`` part.
    """
    if run.source_file_id:
        source: dict[str, Any] = {"type": "file_id", "id": run.source_file_id}
    else:
        source = {"type": "file_content", "content": []}
    if run.item_reference:
        messages: dict[str, Any] = {"type": "item_reference", "item_reference": run.item_reference}
    else:
        template = [
            {"type": "message", "role": m.role, "content": {"type": "input_text", "text": m.content}}
            for m in run.input_messages
        ]
        messages = {"type": "template", "template": template}
    return {
        "type": "completions",
        "source": source,
        "input_messages": messages,
        "model": run.model,
        "sampling_params": sampling_params(run.sampling_params),
    }


class EvalRun(BaseModel):
    object: Literal["eval.run"] = "eval.run"
    id: str
    eval_id: str
    name: str
    model: str
    status: RunStatusName
    created_at: int
    report_url: str = Field(description="The run on Tailor's dashboard.")
    data_source: dict[str, Any]
    result_counts: ResultCounts
    per_testing_criteria_results: list[CriterionResult]
    per_model_usage: list[ModelUsage]
    error: ApiError | None
    metadata: dict[str, str] | None

    @classmethod
    def from_proto(cls, run: pb.EvalRun, dashboard: str) -> EvalRun:
        counts = run.result_counts
        return cls(
            id=run.id,
            eval_id=run.eval_id,
            name=run.name,
            model=run.model,
            status=RUN_STATUSES.get(run.status, "queued"),
            created_at=run.created_at,
            report_url=f"{dashboard}/ui/#/evals/{run.eval_id}/runs/{run.id}",
            data_source=data_source(run),
            result_counts=ResultCounts(
                total=counts.total, errored=counts.errored, failed=counts.failed, passed=counts.passed
            ),
            per_testing_criteria_results=[
                CriterionResult(testing_criteria=r.testing_criteria, passed=r.passed, failed=r.failed)
                for r in run.per_testing_criteria_results
            ],
            per_model_usage=[
                ModelUsage(
                    model_name=u.model_name,
                    invocation_count=u.invocation_count,
                    prompt_tokens=u.prompt_tokens,
                    completion_tokens=u.completion_tokens,
                    total_tokens=u.total_tokens,
                    cached_tokens=u.cached_tokens,
                )
                for u in run.per_model_usage
            ],
            error=ApiError.of(run.error_code, run.error_message),
            metadata=dict(run.metadata),
        )


class EvalRunList(CursorPage[EvalRun]):
    pass


class DeletedEvalRun(BaseModel):
    object: Literal["eval.run.deleted"] = "eval.run.deleted"
    deleted: bool = True
    run_id: str


class Message(BaseModel):
    role: str
    content: str


class SampleUsage(BaseModel):
    total_tokens: int
    completion_tokens: int
    prompt_tokens: int
    cached_tokens: int = 0


class Sample(BaseModel):
    input: list[Message]
    output: list[Message]
    finish_reason: str
    model: str
    usage: SampleUsage
    error: ApiError | None
    temperature: float
    max_completion_tokens: int
    top_p: float
    seed: int


class Grade(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    type: str
    score: float
    passed: bool
    sample: dict[str, Any] | None = None


class EvalRunOutputItem(BaseModel):
    object: Literal["eval.run.output_item"] = "eval.run.output_item"
    id: str
    run_id: str
    eval_id: str
    created_at: int
    status: Literal["pass", "fail", "error"]
    datasource_item_id: int
    datasource_item: dict[str, Any]
    results: list[Grade]
    sample: Sample

    @classmethod
    def from_proto(cls, item: pb.EvalRunOutputItem, params: pb.EvalSamplingParams) -> EvalRunOutputItem:
        """``params``: the run's, which every item was sampled with."""
        sample = item.sample
        row = json.loads(item.datasource_item_json or "{}")
        return cls(
            id=item.id,
            run_id=item.run_id,
            eval_id=item.eval_id,
            created_at=item.created_at,
            status=item.status if item.status in ("pass", "fail") else "error",  # type: ignore[arg-type]
            datasource_item_id=item.datasource_item_id,
            datasource_item=row if isinstance(row, dict) else {"value": row},
            results=[Grade(name=g.name, type=g.type, score=g.score, passed=g.passed) for g in item.results],
            sample=Sample(
                input=[Message(role=m.role, content=m.content) for m in sample.input],
                output=[Message(role=m.role, content=m.content) for m in sample.output],
                finish_reason=sample.finish_reason,
                model=sample.model,
                usage=SampleUsage(
                    total_tokens=sample.prompt_tokens + sample.completion_tokens,
                    completion_tokens=sample.completion_tokens,
                    prompt_tokens=sample.prompt_tokens,
                ),
                error=ApiError.of(sample.error_code, sample.error_message),
                temperature=params.temperature if params.HasField("temperature") else DEFAULT_TEMPERATURE,
                max_completion_tokens=params.max_completion_tokens,
                top_p=params.top_p if params.HasField("top_p") else DEFAULT_TOP_P,
                seed=params.seed if params.HasField("seed") else DEFAULT_SEED,
            ),
        )


class EvalRunOutputItemList(CursorPage[EvalRunOutputItem]):
    pass
