"""Evals: the trainer's EvalService, called as the caller's organization.

Requests are read and checked first (:mod:`.protocol`: a 400 never waits on the trainer),
then the trainer stores, lists or grades; its answers are shaped as OpenAI's
(:mod:`.answers`). A run's ``report_url`` points at the gateway's own dashboard.
"""

from __future__ import annotations

from fastapi import Request

from services.gateway.auth import Caller
from services.gateway.evals.answers import (
    STATUS_OF_NAME,
    DeletedEval,
    DeletedEvalRun,
    Eval,
    EvalList,
    EvalRun,
    EvalRunList,
    EvalRunOutputItem,
    EvalRunOutputItemList,
)
from services.gateway.evals.protocol import CreateEvalRequest, UpdateEvalRequest
from services.gateway.evals.run_protocol import CreateEvalRunRequest
from tailor.trainer.v1 import eval_service_pb2 as pb
from tailor.trainer.v1 import eval_service_pb2_grpc as eval_grpc


# async: FastAPI would run a plain `def` dependency in its thread pool, a costly hop per request
async def serving_of(request: Request) -> OpenAIServingEvals:
    """The route dependency: a thin object over the trainer's EvalService stub."""
    return OpenAIServingEvals(request.app.state.upstreams.evals, str(request.base_url).rstrip("/"))


class OpenAIServingEvals:
    """Handles /v1/evals and its runs and output items."""

    def __init__(self, stub: eval_grpc.EvalServiceStub, dashboard: str) -> None:
        self._stub = stub
        self._dashboard = dashboard

    # -- evals --

    async def create(self, caller: Caller, body: CreateEvalRequest) -> Eval:
        request = body.to_proto()
        with caller.rpc_context():
            created: pb.Eval = (await self._stub.CreateEval(request)).eval
        return Eval.from_proto(created)

    async def retrieve(self, caller: Caller, eval_id: str) -> Eval:
        with caller.rpc_context():
            found: pb.Eval = (await self._stub.GetEval(pb.GetEvalRequest(eval_id=eval_id))).eval
        return Eval.from_proto(found)

    async def update(self, caller: Caller, eval_id: str, body: UpdateEvalRequest) -> Eval:
        with caller.rpc_context():
            updated: pb.Eval = (await self._stub.UpdateEval(body.to_proto(eval_id))).eval
        return Eval.from_proto(updated)

    async def list(self, caller: Caller, *, after: str | None, limit: int | None, order: str) -> EvalList:
        request = pb.ListEvalsRequest(limit=limit or 0, after=after or "", ascending=order == "asc")
        with caller.rpc_context():
            response: pb.ListEvalsResponse = await self._stub.ListEvals(request)
        return EvalList.of([Eval.from_proto(e) for e in response.evals], response.has_more)

    async def delete(self, caller: Caller, eval_id: str) -> DeletedEval:
        with caller.rpc_context():
            await self._stub.DeleteEval(pb.DeleteEvalRequest(eval_id=eval_id))
        return DeletedEval(eval_id=eval_id)

    # -- runs --

    def _run(self, run: pb.EvalRun) -> EvalRun:
        return EvalRun.from_proto(run, self._dashboard)

    async def create_run(self, caller: Caller, eval_id: str, body: CreateEvalRunRequest) -> EvalRun:
        request = body.to_proto(eval_id)
        with caller.rpc_context():
            created: pb.EvalRun = (await self._stub.CreateEvalRun(request)).run
        return self._run(created)

    async def retrieve_run(self, caller: Caller, eval_id: str, run_id: str) -> EvalRun:
        with caller.rpc_context():
            answer = await self._stub.GetEvalRun(pb.GetEvalRunRequest(eval_id=eval_id, run_id=run_id))
        run: pb.EvalRun = answer.run
        return self._run(run)

    async def list_runs(
        self,
        caller: Caller,
        eval_id: str,
        *,
        after: str | None,
        limit: int | None,
        order: str,
        status: str | None,
    ) -> EvalRunList:
        request = pb.ListEvalRunsRequest(
            eval_id=eval_id,
            limit=limit or 0,
            after=after or "",
            ascending=order == "asc",
            status=STATUS_OF_NAME[status] if status else pb.EVAL_RUN_STATUS_UNSPECIFIED,
        )
        with caller.rpc_context():
            response: pb.ListEvalRunsResponse = await self._stub.ListEvalRuns(request)
        return EvalRunList.of([self._run(r) for r in response.runs], response.has_more)

    async def cancel_run(self, caller: Caller, eval_id: str, run_id: str) -> EvalRun:
        with caller.rpc_context():
            answer = await self._stub.CancelEvalRun(pb.CancelEvalRunRequest(eval_id=eval_id, run_id=run_id))
        run: pb.EvalRun = answer.run
        return self._run(run)

    async def delete_run(self, caller: Caller, eval_id: str, run_id: str) -> DeletedEvalRun:
        with caller.rpc_context():
            await self._stub.DeleteEvalRun(pb.DeleteEvalRunRequest(eval_id=eval_id, run_id=run_id))
        return DeletedEvalRun(run_id=run_id)

    # -- output items: shown with the run's sampling parameters, which every item was sampled with --

    async def _sampling_params(self, eval_id: str, run_id: str) -> pb.EvalSamplingParams:
        run: pb.EvalRun = (await self._stub.GetEvalRun(pb.GetEvalRunRequest(eval_id=eval_id, run_id=run_id))).run
        return run.sampling_params

    async def list_output_items(
        self,
        caller: Caller,
        eval_id: str,
        run_id: str,
        *,
        after: str | None,
        limit: int | None,
        order: str,
        status: str | None,
    ) -> EvalRunOutputItemList:
        request = pb.ListEvalRunOutputItemsRequest(
            eval_id=eval_id,
            run_id=run_id,
            limit=limit or 0,
            after=after or "",
            ascending=order == "asc",
            status=status or "",
        )
        with caller.rpc_context():
            params = await self._sampling_params(eval_id, run_id)
            response: pb.ListEvalRunOutputItemsResponse = await self._stub.ListEvalRunOutputItems(request)
        items = [EvalRunOutputItem.from_proto(item, params) for item in response.output_items]
        return EvalRunOutputItemList.of(items, response.has_more)

    async def retrieve_output_item(
        self, caller: Caller, eval_id: str, run_id: str, output_item_id: str
    ) -> EvalRunOutputItem:
        request = pb.GetEvalRunOutputItemRequest(
            eval_id=eval_id, run_id=run_id, output_item_id=output_item_id
        )
        with caller.rpc_context():
            params = await self._sampling_params(eval_id, run_id)
            item: pb.EvalRunOutputItem = (await self._stub.GetEvalRunOutputItem(request)).output_item
        return EvalRunOutputItem.from_proto(item, params)
