"""Fine-tuning jobs: OpenAI's /v1/fine_tuning/jobs semantics over the trainer service.

Creation is safe against retries. The SDK retries a POST that timed out or got a 5xx,
and sends no idempotency key of its own, so without one a flaky network could start two
jobs. The gateway therefore always gives the trainer a key: the client's
``Idempotency-Key`` header when sent, otherwise a digest of (organization, the request
body as canonical JSON, the current window of ``gateway_idempotency_window_s``). The
window matters because the trainer keeps keys forever: without it, running the same
script again tomorrow (same file, same settings: a legitimate new job) would get
yesterday's job back. The SDK's retries land within seconds, well inside a window; a
retry that happens to straddle a window boundary is the one case that still creates a
second job, and a client that needs certainty sends its own key. A derived key is marked
as such (``idempotency_key_derived``): the trainer returns the earlier job for it only
while that job has not ended, so repeating a create after cancelling (or after a failure)
starts a new job, where a client's own key keeps returning its job
(``services/trainer/idempotency.py`` says why they differ).

A job for a base model that no inference replica serves is refused here, before the
trainer sees it: 400, ``param: "model"``, ``code: "model_not_available"``, naming the base
(a fine-tuned ``model`` counts as its base). The model it would produce could not be
used, and hours of training are a high price for a typo in the deployment. The gateway
knows the replicas' bases from its router (``services/gateway/inference_pools.py``), and refuses
only when it can tell: every discovered replica has said its base, and none said this
one. While it has discovered no replica at all, or some discovered replica has not said
its base yet (a replica still starting, a blip), the job goes ahead as before: training
does not need inference, and an inference outage must not turn valid jobs into 400s.
``AdapterAffinityRouter.start`` runs one whole discovery (addresses, health, bases) before
the gateway accepts requests, so a deployment whose replicas are up gets the check from
its first request.

A training file that failed validation is refused here by the trainer: 400,
``param: "training_file"``, ``code: "invalid_training_file"``, with the dataset
service's line-numbered details in the message (OpenAI would fail the job later instead;
refusing at once saves the user a poll loop and names the line).
"""

from __future__ import annotations

import hashlib
import json
import time

import grpc

from services.common.errors import shown
from services.gateway.auth import Caller
from services.gateway.config import GatewaySettings
from services.gateway.errors import invalid_request
from services.gateway.fine_tuning.protocol import (
    CreateFineTuningJobRequest,
    FineTuningJob,
    FineTuningJobCheckpoint,
    FineTuningJobCheckpointList,
    FineTuningJobEvent,
    FineTuningJobEventList,
    FineTuningJobList,
)
from services.gateway.upstream import Upstreams
from tailor.trainer.v1 import trainer_service_pb2 as pb

# The trainer's largest page; a larger `limit` gets this many and `has_more`, so paging still works.
MAX_PAGE_SIZE = 100
MAX_CLIENT_KEY_CHARS = 256
# A `model` the registry refuses to resolve: the trainer's CreateJob answers it with its own 400.
_LEFT_TO_THE_TRAINER = frozenset(
    {grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE}
)


def _page_size(limit: int | None) -> int:
    return min(limit, MAX_PAGE_SIZE) if limit else 0


class OpenAIServingFineTuning:
    """Handles /v1/fine_tuning/jobs and its sub-routes."""

    def __init__(self, upstreams: Upstreams, settings: GatewaySettings, clock=time.time) -> None:  # type: ignore[no-untyped-def]
        self._upstreams = upstreams
        self._jobs = upstreams.jobs
        self._settings = settings
        self._clock = clock

    def idempotency_key(
        self, caller: Caller, body: CreateFineTuningJobRequest, client_key: str | None
    ) -> str:
        """The key the trainer deduplicates creation on; see the module docstring."""
        if client_key:
            return "client:" + client_key[:MAX_CLIENT_KEY_CHARS]
        window = self._settings.gateway_idempotency_window_s
        if window == 0:
            return ""
        canonical = json.dumps(
            body.model_dump(mode="json", exclude_unset=True), sort_keys=True, separators=(",", ":")
        )
        bucket = int(self._clock()) // window
        digest = hashlib.sha256(f"{caller.organization}\n{bucket}\n{canonical}".encode()).hexdigest()
        return "derived:" + digest

    async def create(
        self, caller: Caller, body: CreateFineTuningJobRequest, client_key: str | None
    ) -> FineTuningJob:
        request = pb.CreateJobRequest(
            model=body.model,
            training_file=body.training_file,
            validation_file=body.validation_file or "",
            method=body.to_method(),
            suffix=body.suffix or "",
            metadata=body.metadata or {},
            idempotency_key=self.idempotency_key(caller, body, client_key),
            idempotency_key_derived=not client_key,
            integrations=[integration.to_proto() for integration in body.integrations or []],
        )
        if body.seed is not None:
            request.seed = body.seed
        await self._refuse_unserved_base(caller, body.model)
        with caller.rpc_context():
            response: pb.CreateJobResponse = await self._jobs.CreateJob(request)
        return FineTuningJob.from_proto(response.job)

    async def _refuse_unserved_base(self, caller: Caller, name: str) -> None:
        """400 naming ``model`` when no inference replica serves the base ``name`` runs on; see the
        module docstring. A name the registry does not know is left to the trainer's own 400."""
        router = self._upstreams.inference
        if not name or all(router.serves(base) is not False for base in self._settings.base_models):
            return  # nothing to refuse: spare the registry a call
        try:
            model = await self._upstreams.resolved_models.ask(caller, name)
        except grpc.aio.AioRpcError as error:
            if error.code() in _LEFT_TO_THE_TRAINER:
                return
            raise
        base = model.base_model or model.id
        if router.serves(base) is not False:
            return
        served = ", ".join(sorted(router.pools())) or "none"
        problem = f"No inference replica serves the base model `{base}`"
        if base != name:
            problem = (
                f"`{shown(name)}` is trained on the base model `{base}`, and no inference replica serves it"
            )
        raise invalid_request(
            f"{problem}, so a model fine-tuned from it could not be used. Base models served: {served}.",
            param="model",
            code="model_not_available",
        )

    async def list_jobs(
        self, caller: Caller, *, after: str | None, limit: int | None, metadata: dict[str, str]
    ) -> FineTuningJobList:
        request = pb.ListJobsRequest(limit=_page_size(limit), after=after or "", metadata=metadata)
        with caller.rpc_context():
            response: pb.ListJobsResponse = await self._jobs.ListJobs(request)
        return FineTuningJobList.of(
            [FineTuningJob.from_proto(job) for job in response.jobs], response.has_more
        )

    async def retrieve(self, caller: Caller, job_id: str) -> FineTuningJob:
        response = await self._job_call(caller, self._jobs.GetJob, pb.GetJobRequest(job_id=job_id))
        return FineTuningJob.from_proto(response.job)

    async def cancel(self, caller: Caller, job_id: str) -> FineTuningJob:
        response = await self._job_call(caller, self._jobs.CancelJob, pb.CancelJobRequest(job_id=job_id)
        )
        return FineTuningJob.from_proto(response.job)

    async def pause(self, caller: Caller, job_id: str) -> FineTuningJob:
        response = await self._job_call(caller, self._jobs.PauseJob, pb.PauseJobRequest(job_id=job_id)
        )
        return FineTuningJob.from_proto(response.job)

    async def resume(self, caller: Caller, job_id: str) -> FineTuningJob:
        response = await self._job_call(caller, self._jobs.ResumeJob, pb.ResumeJobRequest(job_id=job_id)
        )
        return FineTuningJob.from_proto(response.job)

    async def list_events(
        self, caller: Caller, job_id: str, *, after: str | None, limit: int | None
    ) -> FineTuningJobEventList:
        request = pb.ListJobEventsRequest(job_id=job_id, limit=_page_size(limit), after=after or "")
        response = await self._job_call(caller, self._jobs.ListJobEvents, request)
        events = [FineTuningJobEvent.from_proto(event) for event in response.events]
        return FineTuningJobEventList.of(events, response.has_more)

    async def list_checkpoints(
        self, caller: Caller, job_id: str, *, after: str | None, limit: int | None
    ) -> FineTuningJobCheckpointList:
        request = pb.ListJobCheckpointsRequest(job_id=job_id, limit=_page_size(limit), after=after or "")
        response = await self._job_call(caller, self._jobs.ListJobCheckpoints, request)
        checkpoints = [FineTuningJobCheckpoint.from_proto(c) for c in response.checkpoints]
        return FineTuningJobCheckpointList.of(checkpoints, response.has_more)

    @staticmethod
    async def _job_call(caller: Caller, rpc, request):  # type: ignore[no-untyped-def]
        """Calls ``rpc`` about one job as the caller (a missing or foreign job is the trainer's 404)."""
        with caller.rpc_context():
            return await rpc(request)
