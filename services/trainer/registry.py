"""The model registry: what each model name the API accepts stands for.

Base models come from settings (``TAILOR_BASE_MODELS``), are owned by "system" and
cannot be deleted. A succeeded job registers ``ft:{base}:{org}:{suffix}:{id}`` and each
kept checkpoint ``ft:{base}:{org}:{suffix}:{id}:ckpt-step-N``, each pointing at a PEFT
adapter prefix in the object store. Registered names belong to one organization:
another organization's name, an unknown one and a deleted one all answer NOT_FOUND
with code ``model_not_found``, so existence does not leak.

Deleting a fine-tuned model leaves its checkpoints registered: as on OpenAI they are
separate names, deleted one by one. Deletion marks the record; the adapter objects
stay with the job that produced them.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.database import first_or_none
from services.common.errors import PermissionDenied
from services.common.not_found import model_not_found
from services.trainer.config import TrainerSettings
from services.trainer.conversions import model_to_proto
from services.trainer.records import JobRecord, ModelRecord, TrainerRecords, now
from tailor.trainer.v1 import model_registry_service_pb2 as registry_pb2

FINE_TUNED = registry_pb2.ModelKind.Name(registry_pb2.MODEL_KIND_FINE_TUNED)
CHECKPOINT = registry_pb2.ModelKind.Name(registry_pb2.MODEL_KIND_CHECKPOINT)
SYSTEM_OWNER = "system"
FINE_TUNED_PREFIX = "ft:"


def fine_tuned_model_name(base_model: str, organization_id: str, suffix: str, id_segment: str) -> str:
    """``ft:{base}:{org}:{suffix}:{id}``; the suffix segment is empty when the job had none, as OpenAI's."""
    return f"{FINE_TUNED_PREFIX}{base_model}:{organization_id}:{suffix}:{id_segment}"


def checkpoint_model_name(fine_tuned_model: str, step_number: int) -> str:
    """The name of a job's checkpoint: its model name and ``:ckpt-step-N``."""
    return f"{fine_tuned_model}:ckpt-step-{step_number}"


def _live(name: str, organization_id: str) -> tuple[ColumnElement[bool], ...]:
    """The conditions of the organization's live (not deleted) registered model of that name."""
    return (
        ModelRecord.name == name,
        ModelRecord.organization_id == organization_id,
        ModelRecord.deleted.is_(False),
    )


async def registered_model(session: AsyncSession, name: str, organization_id: str) -> ModelRecord | None:
    """The organization's live (not deleted) registered model of that name, or None."""
    return await first_or_none(session, select(ModelRecord).where(*_live(name, organization_id)))


def register_model(
    session: AsyncSession,
    *,
    name: str,
    kind: str,
    organization_id: str,
    base_model: str,
    adapter_uri: str,
    job_id: str,
    lora_rank: int,
    step_number: int = 0,
) -> ModelRecord:
    """Adds a fine-tuned model or checkpoint to the registry (in the caller's transaction)."""
    model = ModelRecord(
        name=name,
        kind=kind,
        organization_id=organization_id,
        base_model=base_model,
        adapter_uri=adapter_uri,
        job_id=job_id,
        step_number=step_number,
        lora_rank=lora_rank,
        created_at=now(),
    )
    session.add(model)
    return model


class ModelRegistry:
    """Resolves, lists and deletes the models an organization can name."""

    def __init__(self, settings: TrainerSettings, records: TrainerRecords) -> None:
        self._settings = settings
        self._records = records
        # Base models have no registration time; report when this trainer started serving them.
        self._base_models_created = now()

    def base_model(self, name: str) -> registry_pb2.Model | None:
        if name not in self._settings.base_models:
            return None
        return registry_pb2.Model(
            id=name,
            kind=registry_pb2.MODEL_KIND_BASE,
            base_model=name,
            owned_by=SYSTEM_OWNER,
            created=self._base_models_created,
        )

    async def resolve(self, name: str, organization_id: str) -> registry_pb2.Model:
        """What ``name`` stands for in the organization; NOT_FOUND (model_not_found) otherwise."""
        base = self.base_model(name)
        if base is not None:
            return base
        # One query on every chat's path: the model, and its job's hyperparameters for the
        # target modules its worker reported (every checkpoint of a job and its final model
        # adapt the same ones).
        query = (
            select(ModelRecord, JobRecord.hyperparameters)
            .outerjoin(JobRecord, JobRecord.id == ModelRecord.job_id)
            .where(*_live(name, organization_id))
        )
        async with self._records.read() as session:
            found = (await session.execute(query)).first()
        if found is None:
            raise model_not_found(name)
        model, hyperparameters = found
        return model_to_proto(model, list((hyperparameters or {}).get("lora_target_modules", [])))

    async def list(self, organization_id: str) -> list[registry_pb2.Model]:
        """Base models first, then the organization's fine-tuned models and checkpoints, newest first."""
        models = [self.base_model(name) for name in sorted(self._settings.base_models)]
        query = (
            select(ModelRecord)
            .where(ModelRecord.organization_id == organization_id, ModelRecord.deleted.is_(False))
            .order_by(ModelRecord.seq.desc())
        )
        async with self._records.read() as session:
            registered = (await session.execute(query)).scalars().all()
        return [m for m in models if m is not None] + [model_to_proto(m) for m in registered]

    async def delete(self, name: str, organization_id: str) -> None:
        """Marks the organization's model deleted; base models cannot be deleted (PERMISSION_DENIED)."""
        if self.base_model(name) is not None:
            raise PermissionDenied(
                f"The base model `{name}` cannot be deleted; only fine-tuned models can.",
                param="model",
                code="model_not_deletable",
            )
        async with self._records.write() as session:
            model = await registered_model(session, name, organization_id)
            if model is None:
                raise model_not_found(name)
            model.deleted = True
