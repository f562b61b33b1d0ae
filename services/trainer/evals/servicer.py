"""EvalService's gRPC edge: reads a request, calls :mod:`.evals`, :mod:`.runs` or :mod:`.sampling`."""

from __future__ import annotations

import grpc

import tailor.trainer.v1.eval_service_pb2 as eval_pb2
import tailor.trainer.v1.eval_service_pb2_grpc as eval_grpc
from services.trainer.evals.evals import Evals
from services.trainer.evals.runs import EvalRuns
from services.trainer.evals.sampling import Sampling

Context = grpc.aio.ServicerContext


class EvalServicer(eval_grpc.EvalServiceServicer):
    """Evals, their runs and output items, and the sampler's claims and records."""

    def __init__(self, evals: Evals, runs: EvalRuns, sampling: Sampling) -> None:
        self._evals = evals
        self._runs = runs
        self._sampling = sampling

    async def CreateEval(
        self, request: eval_pb2.CreateEvalRequest, context: Context
    ) -> eval_pb2.CreateEvalResponse:
        return eval_pb2.CreateEvalResponse(eval=await self._evals.create(request))

    async def GetEval(self, request: eval_pb2.GetEvalRequest, context: Context) -> eval_pb2.GetEvalResponse:
        return eval_pb2.GetEvalResponse(eval=await self._evals.get(request.eval_id))

    async def ListEvals(
        self, request: eval_pb2.ListEvalsRequest, context: Context
    ) -> eval_pb2.ListEvalsResponse:
        evals, has_more = await self._evals.list(request)
        return eval_pb2.ListEvalsResponse(evals=evals, has_more=has_more)

    async def UpdateEval(
        self, request: eval_pb2.UpdateEvalRequest, context: Context
    ) -> eval_pb2.UpdateEvalResponse:
        return eval_pb2.UpdateEvalResponse(eval=await self._evals.update(request))

    async def DeleteEval(
        self, request: eval_pb2.DeleteEvalRequest, context: Context
    ) -> eval_pb2.DeleteEvalResponse:
        await self._evals.delete(request.eval_id)
        return eval_pb2.DeleteEvalResponse(eval_id=request.eval_id)

    async def CreateEvalRun(
        self, request: eval_pb2.CreateEvalRunRequest, context: Context
    ) -> eval_pb2.CreateEvalRunResponse:
        return eval_pb2.CreateEvalRunResponse(run=await self._runs.create(request))

    async def GetEvalRun(
        self, request: eval_pb2.GetEvalRunRequest, context: Context
    ) -> eval_pb2.GetEvalRunResponse:
        return eval_pb2.GetEvalRunResponse(run=await self._runs.get(request.eval_id, request.run_id))

    async def ListEvalRuns(
        self, request: eval_pb2.ListEvalRunsRequest, context: Context
    ) -> eval_pb2.ListEvalRunsResponse:
        runs, has_more = await self._runs.list(request)
        return eval_pb2.ListEvalRunsResponse(runs=runs, has_more=has_more)

    async def CancelEvalRun(
        self, request: eval_pb2.CancelEvalRunRequest, context: Context
    ) -> eval_pb2.CancelEvalRunResponse:
        return eval_pb2.CancelEvalRunResponse(run=await self._runs.cancel(request.eval_id, request.run_id))

    async def DeleteEvalRun(
        self, request: eval_pb2.DeleteEvalRunRequest, context: Context
    ) -> eval_pb2.DeleteEvalRunResponse:
        await self._runs.delete(request.eval_id, request.run_id)
        return eval_pb2.DeleteEvalRunResponse(run_id=request.run_id)

    async def ListEvalRunOutputItems(
        self, request: eval_pb2.ListEvalRunOutputItemsRequest, context: Context
    ) -> eval_pb2.ListEvalRunOutputItemsResponse:
        items, has_more = await self._runs.list_output_items(request)
        return eval_pb2.ListEvalRunOutputItemsResponse(output_items=items, has_more=has_more)

    async def GetEvalRunOutputItem(
        self, request: eval_pb2.GetEvalRunOutputItemRequest, context: Context
    ) -> eval_pb2.GetEvalRunOutputItemResponse:
        return eval_pb2.GetEvalRunOutputItemResponse(output_item=await self._runs.get_output_item(request))

    async def ClaimEvalSamples(
        self, request: eval_pb2.ClaimEvalSamplesRequest, context: Context
    ) -> eval_pb2.ClaimEvalSamplesResponse:
        return await self._sampling.claim(request)

    async def RecordEvalSamples(
        self, request: eval_pb2.RecordEvalSamplesRequest, context: Context
    ) -> eval_pb2.RecordEvalSamplesResponse:
        return await self._sampling.record(request)
