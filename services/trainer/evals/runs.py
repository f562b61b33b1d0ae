"""Eval runs as users see them: create (items checked and stored), read, list, cancel, delete; output items.

Create checks everything before storing anything: the input (templates whose references
are all ``item.``, or an ``item.`` reference to each item's messages), the sampling
parameters, the model (what :class:`~services.trainer.registry.ModelRegistry` resolves for
the organization, as a chat completion would), and every item of the source (:mod:`.items`).
The run is then stored ``queued`` with its items ``pending``, in one transaction; the
gateway's sampler takes it from there (:mod:`.sampling`).
"""

from __future__ import annotations

from sqlalchemy import delete, select

from services.common.database import paginate
from services.common.errors import InvalidArgument, NotFound, shown
from services.common.ids import random_token
from services.common.not_found import eval_output_item_not_found
from services.common.tenancy import current_organization
from services.trainer.config import TrainerSettings
from services.trainer.dataset_client import DatasetFiles
from services.trainer.evals import run_status
from services.trainer.evals.conversions import criteria_from_record, output_item_to_proto, run_to_proto
from services.trainer.evals.evals import DEFAULT_PAGE, check_name
from services.trainer.evals.items import (
    FILE_PARAM,
    SourceRow,
    check_rows,
    criterion_templates,
    file_rows,
    inline_rows,
)
from services.trainer.evals.records import (
    EvalOutputItemRecord,
    EvalRunItemRecord,
    EvalRunRecord,
    eval_of,
    run_of,
)
from services.trainer.evals.run_requests import check_input, check_sampling
from services.trainer.job_requests import check_metadata
from services.trainer.jobs import page_size
from services.trainer.records import TrainerRecords, now
from services.trainer.registry import ModelRegistry
from tailor.dataset.v1 import dataset_service_pb2 as dataset_pb2
from tailor.trainer.v1 import eval_service_pb2 as eval_pb2

MODEL_PARAM = "data_source.model"
FILE_ID_PARAM = "data_source.source.id"
OUTPUT_STATUSES = ("pass", "fail", "error")


class EvalRuns:
    """The run half of EvalService."""

    def __init__(
        self,
        settings: TrainerSettings,
        records: TrainerRecords,
        registry: ModelRegistry,
        dataset: DatasetFiles,
    ) -> None:
        self._settings = settings
        self._records = records
        self._registry = registry
        self._dataset = dataset

    async def create(self, request: eval_pb2.CreateEvalRunRequest) -> eval_pb2.EvalRun:
        organization = current_organization()
        check_name(request.name)
        check_metadata(dict(request.metadata))
        templates, item_reference = check_input(request)
        sampling = check_sampling(request.sampling_params)
        async with self._records.read() as session:
            definition = await eval_of(session, request.eval_id, organization)
        await self._check_model(request.model, organization)
        rows = await self._rows(request)
        criteria = criteria_from_record(definition)
        check_rows(
            rows,
            definition.item_schema,
            [t["content"] for t in templates] + [t for c in criteria for t in criterion_templates(c)],
            item_reference,
        )
        run = EvalRunRecord(
            id=f"evalrun_{random_token(24)}",
            eval_id=definition.id,
            organization_id=organization,
            created_at=now(),
            name=request.name or f"{request.model} run",
            user_metadata=dict(request.metadata),
            model=request.model,
            status=run_status.QUEUED,
            input_messages=templates,
            item_reference=item_reference,
            sampling_params=sampling,
            source_file_id=request.file_id if request.WhichOneof("source") == "file_id" else "",
            total=len(rows),
            errored=0,
            failed=0,
            passed=0,
            per_criterion={c.name: {"passed": 0, "failed": 0} for c in criteria},
            usage={},
            error_code="",
            error_message="",
        )
        async with self._records.write() as session:
            await eval_of(session, definition.id, organization)  # not deleted meanwhile
            session.add(run)
            session.add_all(
                EvalRunItemRecord(run_id=run.id, item_index=row.index, item=row.item, sample=row.sample)
                for row in rows
            )
        return run_to_proto(run)

    async def _check_model(self, model: str, organization: str) -> None:
        if not model:
            raise InvalidArgument(f"{MODEL_PARAM} is required.", param=MODEL_PARAM)
        try:
            await self._registry.resolve(model, organization)
        except NotFound as error:
            raise InvalidArgument(error.message, param=MODEL_PARAM, code=error.code) from error

    async def _rows(self, request: eval_pb2.CreateEvalRunRequest) -> list[SourceRow]:
        """The source's rows: the file's lines or the inline content."""
        max_items = self._settings.trainer_eval_max_items
        source = request.WhichOneof("source")
        if source == "content":
            return inline_rows(list(request.content.rows_json), max_items)
        if source != "file_id" or not request.file_id:
            raise InvalidArgument(f"{FILE_PARAM} is required: a file id or inline content.", param=FILE_PARAM)
        file = await self._dataset.get_file(request.file_id)
        if file is None:
            raise InvalidArgument(
                f"{FILE_ID_PARAM}: the file {shown(request.file_id)} does not exist.",
                param=FILE_ID_PARAM,
                code="file_not_found",
            )
        if file.purpose != dataset_pb2.FILE_PURPOSE_EVALS:
            raise InvalidArgument(
                f"{FILE_ID_PARAM}: the file {file.id} does not have purpose 'evals'.", param=FILE_ID_PARAM
            )
        if file.status != dataset_pb2.FILE_STATUS_PROCESSED:
            raise InvalidArgument(
                f"{FILE_ID_PARAM}: the file {file.id} is not processed.", param=FILE_ID_PARAM
            )
        limit = self._settings.trainer_eval_max_file_bytes
        content = bytearray()
        async for chunk in self._dataset.download(file.id):
            content += chunk
            if len(content) > limit:
                raise InvalidArgument(
                    f"{FILE_ID_PARAM}: the file {file.id} is larger than {limit} bytes.", param=FILE_ID_PARAM
                )
        return file_rows(bytes(content).split(b"\n"), max_items)

    async def get(self, eval_id: str, run_id: str) -> eval_pb2.EvalRun:
        async with self._records.read() as session:
            return run_to_proto(await run_of(session, eval_id, run_id, current_organization()))

    async def list(self, request: eval_pb2.ListEvalRunsRequest) -> tuple[list[eval_pb2.EvalRun], bool]:
        organization = current_organization()
        limit = page_size(request.limit, DEFAULT_PAGE)
        query = select(EvalRunRecord).where(
            EvalRunRecord.eval_id == request.eval_id, EvalRunRecord.organization_id == organization
        )
        if request.status:
            status = run_status.from_enum(request.status)
            if status is None:
                raise InvalidArgument("status is not a run status.", param="status")
            query = query.where(EvalRunRecord.status == status)
        async with self._records.read() as session:
            await eval_of(session, request.eval_id, organization)
            rows, has_more = await paginate(
                session,
                query,
                seq=EvalRunRecord.seq,
                id_column=EvalRunRecord.id,
                after=request.after or None,
                limit=limit,
                newest_first=not request.ascending,
            )
        return [run_to_proto(row) for row in rows], has_more

    async def cancel(self, eval_id: str, run_id: str) -> eval_pb2.EvalRun:
        """Stops sampling: graded items stay, the others are never handed out again."""
        async with self._records.write() as session:
            run = await run_of(session, eval_id, run_id, current_organization())
            run_status.apply(session, run, run_status.Action.CANCEL)
            return run_to_proto(run)

    async def delete(self, eval_id: str, run_id: str) -> None:
        """Deletes the run, its items and output items (a sampler recording later hears "cancelled")."""
        async with self._records.write() as session:
            run = await run_of(session, eval_id, run_id, current_organization())
            await session.execute(delete(EvalRunItemRecord).where(EvalRunItemRecord.run_id == run.id))
            await session.execute(delete(EvalOutputItemRecord).where(EvalOutputItemRecord.run_id == run.id))
            await session.delete(run)

    async def list_output_items(
        self, request: eval_pb2.ListEvalRunOutputItemsRequest
    ) -> tuple[list[eval_pb2.EvalRunOutputItem], bool]:
        organization = current_organization()
        limit = page_size(request.limit, DEFAULT_PAGE)
        if request.status and request.status not in OUTPUT_STATUSES:
            raise InvalidArgument(f"status must be one of {', '.join(OUTPUT_STATUSES)}.", param="status")
        query = select(EvalOutputItemRecord).where(EvalOutputItemRecord.run_id == request.run_id)
        if request.status:
            query = query.where(EvalOutputItemRecord.status == request.status)
        async with self._records.read() as session:
            await run_of(session, request.eval_id, request.run_id, organization)
            rows, has_more = await paginate(
                session,
                query,
                seq=EvalOutputItemRecord.seq,
                id_column=EvalOutputItemRecord.id,
                after=request.after or None,
                limit=limit,
                newest_first=not request.ascending,
            )
        return [output_item_to_proto(row) for row in rows], has_more

    async def get_output_item(
        self, request: eval_pb2.GetEvalRunOutputItemRequest
    ) -> eval_pb2.EvalRunOutputItem:
        async with self._records.read() as session:
            await run_of(session, request.eval_id, request.run_id, current_organization())
            query = select(EvalOutputItemRecord).where(
                EvalOutputItemRecord.id == request.output_item_id,
                EvalOutputItemRecord.run_id == request.run_id,
            )
            found = (await session.execute(query.limit(1))).scalar_one_or_none()
        if found is None:
            raise eval_output_item_not_found(request.output_item_id)
        return output_item_to_proto(found)
