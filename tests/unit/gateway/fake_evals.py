"""EvalService from memory, for the gateway's unit tests: the contract's behaviour, simple grading.

Evals, runs and output items per organization (another's reads as missing); a run's items
come inline or from a JSONL file of the fake dataset, its templates are rendered from
``{{item.<key>}}``; ``ClaimEvalSamples`` leases pending items of the oldest unfinished run
and ``RecordEvalSamples`` grades them (a ``string_check`` by its operation, a
``text_similarity`` as 1.0 for equal texts and 0.0 otherwise) until the run completes (or
fails, when every item errored, as the trainer's does).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import tailor.trainer.v1.eval_service_pb2 as pb
import tailor.trainer.v1.eval_service_pb2_grpc as eval_grpc
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.common.ids import new_id
from services.common.tenancy import current_organization

if TYPE_CHECKING:
    from tests.unit.gateway.fakes import FakeRegistry

_FINISHED = (pb.EVAL_RUN_STATUS_COMPLETED, pb.EVAL_RUN_STATUS_FAILED, pb.EVAL_RUN_STATUS_CANCELED)
_REFERENCE = re.compile(r"\{\{\s*(item|sample)\.([A-Za-z0-9_.]+)\s*\}\}")


def _page(items: list, after: str, limit: int, ascending: bool) -> tuple[list, bool]:
    ordered = items if ascending else items[::-1]
    ids = [item.id for item in ordered]
    start = ids.index(after) + 1 if after in ids else (len(ordered) if after else 0)
    size = limit or 20
    return ordered[start : start + size], start + size < len(ordered)


def render(template: str, item: dict, output_text: str = "") -> str:
    def value(match: re.Match[str]) -> str:
        if match.group(1) == "sample":
            return output_text
        found: object = item
        for key in match.group(2).split("."):
            found = found.get(key, "") if isinstance(found, dict) else ""
        return found if isinstance(found, str) else json.dumps(found)

    return _REFERENCE.sub(value, template)


@dataclass
class FakeRun:
    organization: str
    record: pb.EvalRun
    items: list[dict]
    leased_until: dict[int, float] = field(default_factory=dict)
    recorded: set[int] = field(default_factory=set)
    output_items: list[pb.EvalRunOutputItem] = field(default_factory=list)


class FakeEvals(eval_grpc.EvalServiceServicer):
    def __init__(self, files: dict, registry: FakeRegistry) -> None:
        self.files = files  # the fake dataset's {file_id: (organization, record, content)}
        self.registry = registry
        self.evals: dict[str, tuple[str, pb.Eval]] = {}
        self.runs: dict[str, FakeRun] = {}
        self.claims: list[pb.ClaimEvalSamplesRequest] = []
        self.holding = False  # while True, claims find no work (runs stay as created)

    def _eval(self, eval_id: str) -> pb.Eval:
        entry = self.evals.get(eval_id)
        if entry is None or entry[0] != current_organization():
            raise NotFound(f"Eval with id '{eval_id[:100]}' not found.", param="eval_id", code="not_found")
        return entry[1]

    def _run(self, eval_id: str, run_id: str) -> FakeRun:
        self._eval(eval_id)
        run = self.runs.get(run_id)
        if run is None or run.record.eval_id != eval_id:
            raise NotFound(f"Eval run with id '{run_id[:100]}' not found.", param="run_id", code="not_found")
        return run

    async def CreateEval(self, request, context):  # type: ignore[no-untyped-def]
        for index, criterion in enumerate(request.testing_criteria):
            if not criterion.WhichOneof("grader"):
                raise InvalidArgument("a criterion needs a grader", param=f"testing_criteria[{index}]")
        record = pb.Eval(
            id=new_id("eval"),
            name=request.name or "eval",
            created_at=int(time.time()),
            metadata=request.metadata,
            item_schema_json=request.item_schema_json,
            include_sample_schema=request.include_sample_schema,
            testing_criteria=request.testing_criteria,
        )
        self.evals[record.id] = (current_organization(), record)
        return pb.CreateEvalResponse(eval=record)

    async def GetEval(self, request, context):  # type: ignore[no-untyped-def]
        return pb.GetEvalResponse(eval=self._eval(request.eval_id))

    async def ListEvals(self, request, context):  # type: ignore[no-untyped-def]
        mine = [record for org, record in self.evals.values() if org == current_organization()]
        evals, has_more = _page(mine, request.after, request.limit, request.ascending)
        return pb.ListEvalsResponse(evals=evals, has_more=has_more)

    async def UpdateEval(self, request, context):  # type: ignore[no-untyped-def]
        record = self._eval(request.eval_id)
        if request.HasField("name"):
            record.name = request.name
        if request.set_metadata:
            record.metadata.clear()
            record.metadata.update(request.metadata)
        return pb.UpdateEvalResponse(eval=record)

    async def DeleteEval(self, request, context):  # type: ignore[no-untyped-def]
        self._eval(request.eval_id)
        del self.evals[request.eval_id]
        for run_id in [r for r, run in self.runs.items() if run.record.eval_id == request.eval_id]:
            del self.runs[run_id]
        return pb.DeleteEvalResponse(eval_id=request.eval_id)

    async def CreateEvalRun(self, request, context):  # type: ignore[no-untyped-def]
        self._eval(request.eval_id)
        try:
            self.registry._find(request.model)
        except NotFound:
            message = f"The model `{request.model}` does not exist."
            raise InvalidArgument(message, param="data_source.model") from None
        if request.WhichOneof("source") == "file_id":
            entry = self.files.get(request.file_id)
            if entry is None or entry[0] != current_organization():
                raise InvalidArgument(f"No such file {request.file_id}", param="data_source.source.id")
            rows = [json.loads(line) for line in entry[2].splitlines() if line.strip()]
        else:
            rows = [json.loads(row) for row in request.content.rows_json]
        record = pb.EvalRun(
            id=new_id("evalrun"),
            eval_id=request.eval_id,
            name=request.name or request.model,
            created_at=int(time.time()),
            metadata=request.metadata,
            model=request.model,
            status=pb.EVAL_RUN_STATUS_QUEUED,
            input_messages=request.input_messages,
            item_reference=request.item_reference,
            sampling_params=request.sampling_params,
            source_file_id=request.file_id,
            result_counts=pb.EvalResultCounts(total=len(rows)),
        )
        self.runs[record.id] = FakeRun(current_organization(), record, [row["item"] for row in rows])
        return pb.CreateEvalRunResponse(run=record)

    async def GetEvalRun(self, request, context):  # type: ignore[no-untyped-def]
        return pb.GetEvalRunResponse(run=self._run(request.eval_id, request.run_id).record)

    async def ListEvalRuns(self, request, context):  # type: ignore[no-untyped-def]
        self._eval(request.eval_id)
        mine = [run.record for run in self.runs.values() if run.record.eval_id == request.eval_id]
        if request.status:
            mine = [record for record in mine if record.status == request.status]
        runs, has_more = _page(mine, request.after, request.limit, request.ascending)
        return pb.ListEvalRunsResponse(runs=runs, has_more=has_more)

    async def CancelEvalRun(self, request, context):  # type: ignore[no-untyped-def]
        run = self._run(request.eval_id, request.run_id)
        if run.record.status in _FINISHED:
            raise FailedPrecondition(f"Run {run.record.id} has already finished.", param="run_id")
        run.record.status = pb.EVAL_RUN_STATUS_CANCELED
        return pb.CancelEvalRunResponse(run=run.record)

    async def DeleteEvalRun(self, request, context):  # type: ignore[no-untyped-def]
        self._run(request.eval_id, request.run_id)
        del self.runs[request.run_id]
        return pb.DeleteEvalRunResponse(run_id=request.run_id)

    async def ListEvalRunOutputItems(self, request, context):  # type: ignore[no-untyped-def]
        run = self._run(request.eval_id, request.run_id)
        mine = [item for item in run.output_items if not request.status or item.status == request.status]
        items, has_more = _page(mine, request.after, request.limit, request.ascending)
        return pb.ListEvalRunOutputItemsResponse(output_items=items, has_more=has_more)

    async def GetEvalRunOutputItem(self, request, context):  # type: ignore[no-untyped-def]
        for item in self._run(request.eval_id, request.run_id).output_items:
            if item.id == request.output_item_id:
                return pb.GetEvalRunOutputItemResponse(output_item=item)
        raise NotFound("Output item not found.", param="output_item_id", code="not_found")

    # -- the sampler's side --

    async def ClaimEvalSamples(self, request, context):  # type: ignore[no-untyped-def]
        self.claims.append(request)
        if self.holding:
            return pb.ClaimEvalSamplesResponse()
        now = time.monotonic()
        for run in self.runs.values():
            if run.record.status in _FINISHED:
                continue
            free = [
                index
                for index in range(len(run.items))
                if index not in run.recorded and run.leased_until.get(index, 0.0) <= now
            ][: request.max_items]
            if not free:
                continue
            run.record.status = pb.EVAL_RUN_STATUS_IN_PROGRESS
            tasks = []
            for index in free:
                run.leased_until[index] = now + request.lease_s
                messages = [
                    pb.EvalMessage(role=m.role, content=render(m.content, run.items[index]))
                    for m in run.record.input_messages
                ]
                tasks.append(pb.EvalSampleTask(item_index=index, messages=messages))
            return pb.ClaimEvalSamplesResponse(
                run_id=run.record.id,
                eval_id=run.record.eval_id,
                organization_id=run.organization,
                model=run.record.model,
                sampling_params=run.record.sampling_params,
                tasks=tasks,
            )
        return pb.ClaimEvalSamplesResponse()

    async def RecordEvalSamples(self, request, context):  # type: ignore[no-untyped-def]
        run = self.runs.get(request.run_id)
        if run is None or run.record.status == pb.EVAL_RUN_STATUS_CANCELED:
            return pb.RecordEvalSamplesResponse(run_cancelled=True)
        criteria = self.evals[run.record.eval_id][1].testing_criteria
        for sampled in request.items:
            if sampled.item_index in run.recorded:
                continue
            run.recorded.add(sampled.item_index)
            run.output_items.append(self._graded(run, criteria, sampled))
        counts = run.record.result_counts
        if len(run.recorded) == counts.total and counts.errored == counts.total:
            run.record.status = pb.EVAL_RUN_STATUS_FAILED  # as the trainer: nothing could be graded
            run.record.error_code = "all_items_errored"
            run.record.error_message = "Every item of the run errored."
        elif len(run.recorded) == counts.total:
            run.record.status = pb.EVAL_RUN_STATUS_COMPLETED
        return pb.RecordEvalSamplesResponse()

    @staticmethod
    def _graded(run: FakeRun, criteria: list, sampled: pb.SampledItem) -> pb.EvalRunOutputItem:
        item = run.items[sampled.item_index]
        output_text = sampled.sample.output[0].content if sampled.sample.output else ""
        grades = []
        if not sampled.sample.error_code:
            for criterion in criteria:
                grader = getattr(criterion, criterion.WhichOneof("grader"))
                given = render(grader.input, item, output_text)
                wanted = render(grader.reference, item, output_text)
                if criterion.HasField("string_check"):
                    operation = grader.operation
                    passed = {
                        "eq": given == wanted,
                        "ne": given != wanted,
                        "like": wanted in given,
                        "ilike": wanted.lower() in given.lower(),
                    }[operation]
                    score = float(passed)
                else:
                    score = 1.0 if given == wanted else 0.0
                    passed = score >= grader.pass_threshold
                grades.append(
                    pb.EvalGrade(
                        name=criterion.name, type=criterion.WhichOneof("grader"), score=score, passed=passed
                    )
                )
        counts = run.record.result_counts
        if sampled.sample.error_code:
            status, counts.errored = "error", counts.errored + 1
        elif all(grade.passed for grade in grades):
            status, counts.passed = "pass", counts.passed + 1
        else:
            status, counts.failed = "fail", counts.failed + 1
        return pb.EvalRunOutputItem(
            id=new_id("outputitem"),
            eval_id=run.record.eval_id,
            run_id=run.record.id,
            created_at=int(time.time()),
            datasource_item_id=sampled.item_index,
            datasource_item_json=json.dumps(item),
            status=status,
            sample=sampled.sample,
            results=grades,
        )
