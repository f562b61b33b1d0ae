"""Records to protobuf messages and back: the edge between the trainer's logic and its contracts.

Hyperparameters and metrics are stored as JSON objects holding only the fields that
are set, so "auto" (absent) survives a round trip.
"""

from __future__ import annotations

from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message

from services.trainer.records import CheckpointRecord, EventRecord, JobRecord, ModelRecord
from tailor.trainer.v1 import job_pb2, model_registry_service_pb2

MessageT = TypeVar("MessageT", bound=Message)


def set_fields(message: Message) -> dict[str, Any]:
    """The fields of a message of optional scalars (and repeated strings) that are set, as a plain dict."""
    return {
        field.name: list(value) if field.is_repeated else value
        for field, value in message.ListFields()
    }


def message_from(cls: type[MessageT], fields: dict[str, Any] | None) -> MessageT:
    """A message of optional scalars built from a dict of the set fields (unknown keys ignored)."""
    known = cls.DESCRIPTOR.fields_by_name
    return cls(**{name: value for name, value in (fields or {}).items() if name in known})


def message_from_dict(cls: type[MessageT], fields: dict[str, Any]) -> MessageT:
    """A message from its dict form (:func:`message_to_dict`), nested messages included."""
    return json_format.ParseDict(fields, cls(), ignore_unknown_fields=True)


def message_to_dict(message: Message) -> dict[str, Any]:
    """A message as a JSON-able dict keeping the proto field names (stored in JSON columns)."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def job_to_proto(job: JobRecord) -> job_pb2.Job:
    message = job_pb2.Job(
        id=job.id,
        organization_id=job.organization_id,
        model=job.model,
        base_model=job.base_model,
        training_file=job.training_file,
        validation_file=job.validation_file,
        method=job_pb2.Method(
            type=job_pb2.MethodType.Value(job.method_type),
            hyperparameters=message_from(job_pb2.Hyperparameters, job.hyperparameters),
        ),
        status=job_pb2.JobStatus.Value(job.status),
        fine_tuned_model=job.fine_tuned_model,
        created_at=job.created_at,
        result_files=job.result_files,
        seed=job.seed,
        suffix=job.suffix,
        metadata=job.user_metadata,
        integrations=[message_from_dict(job_pb2.Integration, item) for item in job.integrations or []],
    )
    if job.finished_at is not None:
        message.finished_at = job.finished_at
    if job.estimated_finish is not None:
        message.estimated_finish = job.estimated_finish
    if job.trained_tokens is not None:
        message.trained_tokens = job.trained_tokens
    if job.error_code:
        message.error.CopyFrom(
            job_pb2.JobError(code=job.error_code, message=job.error_message, param=job.error_param)
        )
    return message


def event_to_proto(event: EventRecord) -> job_pb2.JobEvent:
    message = job_pb2.JobEvent(
        id=event.id,
        job_id=event.job_id,
        created_at=event.created_at,
        level=job_pb2.EventLevel.Value(event.level),
        message=event.message,
        type=job_pb2.EventType.Value(event.type),
    )
    if event.metrics is not None:
        message.metrics.CopyFrom(message_from(job_pb2.Metrics, event.metrics))
    return message


def checkpoint_to_proto(checkpoint: CheckpointRecord) -> job_pb2.Checkpoint:
    return job_pb2.Checkpoint(
        id=checkpoint.id,
        job_id=checkpoint.job_id,
        created_at=checkpoint.created_at,
        fine_tuned_model_checkpoint=checkpoint.model_name,
        step_number=checkpoint.step_number,
        metrics=message_from(job_pb2.Metrics, checkpoint.metrics),
    )


def model_to_proto(
    model: ModelRecord, lora_target_modules: list[str] | None = None
) -> model_registry_service_pb2.Model:
    return model_registry_service_pb2.Model(
        id=model.name,
        kind=model_registry_service_pb2.ModelKind.Value(model.kind),
        base_model=model.base_model,
        owned_by=model.organization_id,
        created=model.created_at,
        adapter_uri=model.adapter_uri,
        job_id=model.job_id,
        step_number=model.step_number,
        lora_rank=model.lora_rank,
        lora_target_modules=lora_target_modules or [],
    )
