"""Evals as users see them: create (checked before anything is stored), read, list, update, delete.

An eval's item schema must be a JSON schema of an object (Draft 2020-12, as OpenAI's
``custom`` data source config); its criteria are checked by
:func:`services.trainer.evals.graders.check_criterion` and their names are unique. Deleting an
eval deletes its runs, their items and output items.
"""

from __future__ import annotations

import json
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from sqlalchemy import delete, select

from services.common.database import paginate
from services.common.errors import InvalidArgument, shown
from services.common.ids import random_token
from services.common.tenancy import current_organization
from services.trainer.conversions import message_to_dict
from services.trainer.evals.conversions import eval_to_proto
from services.trainer.evals.graders import check_criterion
from services.trainer.evals.records import (
    EvalOutputItemRecord,
    EvalRecord,
    EvalRunItemRecord,
    EvalRunRecord,
    eval_of,
)
from services.trainer.job_requests import check_metadata
from services.trainer.jobs import page_size
from services.trainer.records import TrainerRecords, now
from tailor.trainer.v1 import eval_service_pb2 as eval_pb2

SCHEMA_PARAM = "data_source_config.item_schema"
DEFAULT_PAGE = 20
MAX_NAME_LENGTH = 256


def parse_item_schema(text: str) -> dict[str, Any]:
    """The item schema of a request: valid JSON, a valid Draft 2020-12 schema, of an object."""
    if not text:
        raise InvalidArgument(f"{SCHEMA_PARAM} is required.", param=SCHEMA_PARAM)
    try:
        schema = json.loads(text)
    except json.JSONDecodeError as error:
        problem = f"{SCHEMA_PARAM} is not valid JSON ({error.msg})."
        raise InvalidArgument(problem, param=SCHEMA_PARAM) from error
    if not isinstance(schema, dict):
        raise InvalidArgument(f"{SCHEMA_PARAM} must be a JSON schema object.", param=SCHEMA_PARAM)
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        raise InvalidArgument(
            f"{SCHEMA_PARAM} is not a valid JSON schema: {shown(error.message)}", param=SCHEMA_PARAM
        ) from error
    kind = schema.get("type")
    if kind != "object" and not (isinstance(kind, list) and kind == ["object"]):
        raise InvalidArgument(
            f'{SCHEMA_PARAM} must describe an object ("type": "object"); each item is one.',
            param=SCHEMA_PARAM,
        )
    return schema


def check_criteria(criteria: list[eval_pb2.TestingCriterion], include_sample: bool) -> None:
    """At least one criterion, each valid, their names unique."""
    if not criteria:
        raise InvalidArgument("testing_criteria must hold at least one criterion.", param="testing_criteria")
    names: set[str] = set()
    for index, criterion in enumerate(criteria):
        if not criterion.name:
            raise InvalidArgument(
                f"testing_criteria[{index}].name is required.", param=f"testing_criteria[{index}].name"
            )
        if criterion.name in names:
            raise InvalidArgument(
                f"testing_criteria[{index}].name: another criterion is already named "
                f"{shown(criterion.name)!r}.",
                param=f"testing_criteria[{index}].name",
            )
        names.add(criterion.name)
        check_criterion(criterion, index, include_sample)


def check_name(name: str) -> None:
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidArgument(f"name must be at most {MAX_NAME_LENGTH} characters.", param="name")


class Evals:
    """The eval half of EvalService; runs are :class:`services.trainer.evals.runs.EvalRuns`."""

    def __init__(self, records: TrainerRecords) -> None:
        self._records = records

    async def create(self, request: eval_pb2.CreateEvalRequest) -> eval_pb2.Eval:
        organization = current_organization()
        check_name(request.name)
        check_metadata(dict(request.metadata))
        schema = parse_item_schema(request.item_schema_json)
        check_criteria(list(request.testing_criteria), request.include_sample_schema)
        record = EvalRecord(
            id=f"eval_{random_token(24)}",
            organization_id=organization,
            created_at=now(),
            name=request.name,
            user_metadata=dict(request.metadata),
            item_schema=schema,
            include_sample_schema=request.include_sample_schema,
            testing_criteria=[message_to_dict(criterion) for criterion in request.testing_criteria],
        )
        async with self._records.write() as session:
            session.add(record)
        return eval_to_proto(record)

    async def get(self, eval_id: str) -> eval_pb2.Eval:
        async with self._records.read() as session:
            return eval_to_proto(await eval_of(session, eval_id, current_organization()))

    async def list(self, request: eval_pb2.ListEvalsRequest) -> tuple[list[eval_pb2.Eval], bool]:
        limit = page_size(request.limit, DEFAULT_PAGE)
        query = select(EvalRecord).where(EvalRecord.organization_id == current_organization())
        async with self._records.read() as session:
            rows, has_more = await paginate(
                session,
                query,
                seq=EvalRecord.seq,
                id_column=EvalRecord.id,
                after=request.after or None,
                limit=limit,
                newest_first=not request.ascending,
            )
        return [eval_to_proto(row) for row in rows], has_more

    async def update(self, request: eval_pb2.UpdateEvalRequest) -> eval_pb2.Eval:
        if request.HasField("name"):
            check_name(request.name)
        if request.set_metadata:
            check_metadata(dict(request.metadata))
        async with self._records.write() as session:
            record = await eval_of(session, request.eval_id, current_organization())
            if request.HasField("name"):
                record.name = request.name
            if request.set_metadata:
                record.user_metadata = dict(request.metadata)
            return eval_to_proto(record)

    async def delete(self, eval_id: str) -> None:
        """Deletes the eval, its runs and everything they hold."""
        async with self._records.write() as session:
            record = await eval_of(session, eval_id, current_organization())
            run_ids = select(EvalRunRecord.id).where(EvalRunRecord.eval_id == record.id).scalar_subquery()
            await session.execute(delete(EvalRunItemRecord).where(EvalRunItemRecord.run_id.in_(run_ids)))
            outputs = delete(EvalOutputItemRecord).where(EvalOutputItemRecord.eval_id == record.id)
            await session.execute(outputs)
            await session.execute(delete(EvalRunRecord).where(EvalRunRecord.eval_id == record.id))
            await session.delete(record)
