"""Routes of /v1/fine_tuning/jobs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request

from services.gateway.auth import CallerDep
from services.gateway.fine_tuning.protocol import (
    CreateFineTuningJobRequest,
    FineTuningJob,
    FineTuningJobCheckpointList,
    FineTuningJobEventList,
    FineTuningJobList,
)
from services.gateway.fine_tuning.serving import OpenAIServingFineTuning

router = APIRouter(prefix="/v1/fine_tuning/jobs", tags=["fine-tuning"])


# async: FastAPI would run a plain `def` dependency in its thread pool, a costly hop per request
async def _serving(request: Request) -> OpenAIServingFineTuning:
    return request.app.state.fine_tuning_serving


Serving = Annotated[OpenAIServingFineTuning, Depends(_serving)]
Limit = Annotated[int | None, Query(ge=1)]


def _metadata_filter(request: Request) -> dict[str, str]:
    """``metadata[k]=v`` query parameters (the SDK's bracket encoding of a dict) as {k: v}."""
    return {
        key[len("metadata[") : -1]: value
        for key, value in request.query_params.items()
        if key.startswith("metadata[") and key.endswith("]")
    }


@router.post("", response_model=FineTuningJob)
async def create_job(
    body: CreateFineTuningJobRequest,
    caller: CallerDep,
    serving: Serving,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> FineTuningJob:
    """Creates a job; a retried identical request returns the same job (see the serving module)."""
    return await serving.create(caller, body, idempotency_key)


@router.get("", response_model=FineTuningJobList)
async def list_jobs(
    request: Request, caller: CallerDep, serving: Serving, after: str | None = None, limit: Limit = None
) -> FineTuningJobList:
    """Lists the organization's jobs, newest first, ``after`` a job id (exclusive)."""
    return await serving.list_jobs(caller, after=after, limit=limit, metadata=_metadata_filter(request))


@router.get("/{job_id}", response_model=FineTuningJob)
async def retrieve_job(job_id: str, caller: CallerDep, serving: Serving) -> FineTuningJob:
    """Returns one job."""
    return await serving.retrieve(caller, job_id)


@router.post("/{job_id}/cancel", response_model=FineTuningJob)
async def cancel_job(job_id: str, caller: CallerDep, serving: Serving) -> FineTuningJob:
    """Cancels an unfinished job; a finished one is a 400 (never 409, which the SDK would retry)."""
    return await serving.cancel(caller, job_id)


@router.post("/{job_id}/pause", response_model=FineTuningJob)
async def pause_job(job_id: str, caller: CallerDep, serving: Serving) -> FineTuningJob:
    """Pauses a job that has not ended; a running one stops after a checkpoint."""
    return await serving.pause(caller, job_id)


@router.post("/{job_id}/resume", response_model=FineTuningJob)
async def resume_job(job_id: str, caller: CallerDep, serving: Serving) -> FineTuningJob:
    """Continues a paused job where it was: validating its files again, or queued to train from its last checkpoint."""
    return await serving.resume(caller, job_id)


@router.get("/{job_id}/events", response_model=FineTuningJobEventList)
async def list_job_events(
    job_id: str, caller: CallerDep, serving: Serving, after: str | None = None, limit: Limit = None
) -> FineTuningJobEventList:
    """Lists a job's events, newest first, ``after`` an event id (exclusive)."""
    return await serving.list_events(caller, job_id, after=after, limit=limit)


@router.get("/{job_id}/checkpoints", response_model=FineTuningJobCheckpointList)
async def list_job_checkpoints(
    job_id: str, caller: CallerDep, serving: Serving, after: str | None = None, limit: Limit = None
) -> FineTuningJobCheckpointList:
    """Lists a job's kept checkpoints, newest first, ``after`` a checkpoint id (exclusive)."""
    return await serving.list_checkpoints(caller, job_id, after=after, limit=limit)
