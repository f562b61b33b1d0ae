"""Eval records to the contract's messages: evals, runs with their counts, output items."""

from __future__ import annotations

import json

from services.trainer.conversions import message_from, message_from_dict
from services.trainer.evals import run_status
from services.trainer.evals.records import EvalOutputItemRecord, EvalRecord, EvalRunRecord
from tailor.trainer.v1 import eval_service_pb2 as eval_pb2


def criteria_from_record(record: EvalRecord) -> list[eval_pb2.TestingCriterion]:
    return [message_from_dict(eval_pb2.TestingCriterion, criterion) for criterion in record.testing_criteria]


def eval_to_proto(record: EvalRecord) -> eval_pb2.Eval:
    return eval_pb2.Eval(
        id=record.id,
        name=record.name,
        created_at=record.created_at,
        metadata=record.user_metadata,
        item_schema_json=json.dumps(record.item_schema),
        include_sample_schema=record.include_sample_schema,
        testing_criteria=criteria_from_record(record),
    )


def run_to_proto(run: EvalRunRecord) -> eval_pb2.EvalRun:
    return eval_pb2.EvalRun(
        id=run.id,
        eval_id=run.eval_id,
        name=run.name,
        created_at=run.created_at,
        metadata=run.user_metadata,
        model=run.model,
        status=run_status.to_enum(run.status),
        input_messages=[eval_pb2.MessageTemplate(**message) for message in run.input_messages],
        item_reference=run.item_reference,
        sampling_params=message_from(eval_pb2.EvalSamplingParams, run.sampling_params),
        source_file_id=run.source_file_id,
        result_counts=eval_pb2.EvalResultCounts(
            total=run.total, errored=run.errored, failed=run.failed, passed=run.passed
        ),
        per_testing_criteria_results=[
            eval_pb2.CriterionResult(testing_criteria=name, passed=counts["passed"], failed=counts["failed"])
            for name, counts in run.per_criterion.items()
        ],
        per_model_usage=[
            eval_pb2.EvalModelUsage(model_name=name, **counts) for name, counts in run.usage.items()
        ],
        error_code=run.error_code,
        error_message=run.error_message,
    )


def output_item_to_proto(record: EvalOutputItemRecord) -> eval_pb2.EvalRunOutputItem:
    return eval_pb2.EvalRunOutputItem(
        id=record.id,
        eval_id=record.eval_id,
        run_id=record.run_id,
        created_at=record.created_at,
        datasource_item_id=record.item_index,
        datasource_item_json=record.item_json,
        status=record.status,
        sample=message_from_dict(eval_pb2.EvalSample, record.sample),
        results=[message_from_dict(eval_pb2.EvalGrade, grade) for grade in record.results],
    )
