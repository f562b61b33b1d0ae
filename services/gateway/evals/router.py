"""Routes of /v1/evals, as the openai SDK's ``client.evals`` (``runs``, ``runs.output_items``) calls them.

A run is cancelled by ``POST .../runs/{run_id}/cancel``, where the SDK sends it, and by
``POST .../runs/{run_id}``, where OpenAI's published reference puts it (docs/evals.md).
Listings are oldest first unless ``order=desc``, as OpenAI's.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from services.gateway.auth import CallerDep
from services.gateway.errors import unsupported_parameter
from services.gateway.evals.answers import (
    DeletedEval,
    DeletedEvalRun,
    Eval,
    EvalList,
    EvalRun,
    EvalRunList,
    EvalRunOutputItem,
    EvalRunOutputItemList,
    RunStatusName,
)
from services.gateway.evals.protocol import CreateEvalRequest, UpdateEvalRequest
from services.gateway.evals.run_protocol import CreateEvalRunRequest
from services.gateway.evals.serving import OpenAIServingEvals, serving_of

router = APIRouter(prefix="/v1/evals", tags=["evals"])
Serving = Annotated[OpenAIServingEvals, Depends(serving_of)]
Limit = Annotated[int | None, Query(ge=1, le=100, description="Page size; 20 when absent.")]
Order = Annotated[Literal["asc", "desc"], Query(description="By creation time; oldest first by default.")]
After = Annotated[str | None, Query(max_length=256, description="The id the page starts after (exclusive).")]


@router.post("", response_model=Eval)
async def create_eval(body: CreateEvalRequest, caller: CallerDep, serving: Serving) -> Eval:
    """Creates an eval: the schema of its items and the criteria each sample is graded by."""
    return await serving.create(caller, body)


@router.get("", response_model=EvalList)
async def list_evals(
    caller: CallerDep,
    serving: Serving,
    after: After = None,
    limit: Limit = None,
    order: Order = "asc",
    order_by: Literal["created_at", "updated_at"] = "created_at",
) -> EvalList:
    """Lists the organization's evals by creation time."""
    if order_by != "created_at":
        raise unsupported_parameter("order_by", "Tailor lists evals by creation time ('created_at') only.")
    return await serving.list(caller, after=after, limit=limit, order=order)


@router.get("/{eval_id}", response_model=Eval)
async def retrieve_eval(eval_id: str, caller: CallerDep, serving: Serving) -> Eval:
    """Returns one eval."""
    return await serving.retrieve(caller, eval_id)


@router.post("/{eval_id}", response_model=Eval)
async def update_eval(eval_id: str, body: UpdateEvalRequest, caller: CallerDep, serving: Serving) -> Eval:
    """Renames an eval or replaces its metadata."""
    return await serving.update(caller, eval_id, body)


@router.delete("/{eval_id}", response_model=DeletedEval)
async def delete_eval(eval_id: str, caller: CallerDep, serving: Serving) -> DeletedEval:
    """Deletes an eval with its runs and their output items."""
    return await serving.delete(caller, eval_id)


@router.post("/{eval_id}/runs", response_model=EvalRun)
async def create_eval_run(
    eval_id: str, body: CreateEvalRunRequest, caller: CallerDep, serving: Serving
) -> EvalRun:
    """Starts a run of the eval against a model; its items are sampled and graded in the background."""
    return await serving.create_run(caller, eval_id, body)


@router.get("/{eval_id}/runs", response_model=EvalRunList)
async def list_eval_runs(
    eval_id: str,
    caller: CallerDep,
    serving: Serving,
    after: After = None,
    limit: Limit = None,
    order: Order = "asc",
    status: RunStatusName | None = None,
) -> EvalRunList:
    """Lists an eval's runs, optionally only those in one status."""
    return await serving.list_runs(caller, eval_id, after=after, limit=limit, order=order, status=status)


@router.get("/{eval_id}/runs/{run_id}", response_model=EvalRun)
async def retrieve_eval_run(eval_id: str, run_id: str, caller: CallerDep, serving: Serving) -> EvalRun:
    """Returns one run with its counts so far."""
    return await serving.retrieve_run(caller, eval_id, run_id)


@router.post("/{eval_id}/runs/{run_id}/cancel", response_model=EvalRun)
async def cancel_eval_run(eval_id: str, run_id: str, caller: CallerDep, serving: Serving) -> EvalRun:
    """Cancels a queued or running run (where the SDK sends it); the items graded so far stay."""
    return await serving.cancel_run(caller, eval_id, run_id)


@router.post("/{eval_id}/runs/{run_id}", response_model=EvalRun)
async def cancel_eval_run_as_published(
    eval_id: str, run_id: str, caller: CallerDep, serving: Serving
) -> EvalRun:
    """Cancels a queued or running run (where OpenAI's reference puts it)."""
    return await serving.cancel_run(caller, eval_id, run_id)


@router.delete("/{eval_id}/runs/{run_id}", response_model=DeletedEvalRun)
async def delete_eval_run(eval_id: str, run_id: str, caller: CallerDep, serving: Serving) -> DeletedEvalRun:
    """Deletes a run and its output items."""
    return await serving.delete_run(caller, eval_id, run_id)


@router.get("/{eval_id}/runs/{run_id}/output_items", response_model=EvalRunOutputItemList)
async def list_eval_run_output_items(
    eval_id: str,
    run_id: str,
    caller: CallerDep,
    serving: Serving,
    after: After = None,
    limit: Limit = None,
    order: Order = "asc",
    status: Literal["pass", "fail", "error"] | None = None,
) -> EvalRunOutputItemList:
    """Lists a run's graded items with their samples and grades, optionally only one outcome."""
    return await serving.list_output_items(
        caller, eval_id, run_id, after=after, limit=limit, order=order, status=status
    )


@router.get("/{eval_id}/runs/{run_id}/output_items/{output_item_id}", response_model=EvalRunOutputItem)
async def retrieve_eval_run_output_item(
    eval_id: str, run_id: str, output_item_id: str, caller: CallerDep, serving: Serving
) -> EvalRunOutputItem:
    """Returns one graded item."""
    return await serving.retrieve_output_item(caller, eval_id, run_id, output_item_id)
