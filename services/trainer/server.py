"""The trainer's gRPC server: TrainerService, ModelRegistryService, WorkerService, WebhookService and EvalService.

The servicers are thin: they read the request, call the logic of
:mod:`services.trainer.jobs`, :mod:`services.trainer.registry` and
:mod:`services.trainer.worker_api`, and wrap the result. Errors are raised as
:class:`~services.common.errors.TailorError` and mapped to statuses by the common
interceptor. :class:`TrainerServer` adds the trainer's start-up (tables, recovery,
scheduler) and shutdown to the common server lifecycle.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

import tailor.trainer.v1.eval_service_pb2 as eval_pb2
import tailor.trainer.v1.eval_service_pb2_grpc as eval_grpc
import tailor.trainer.v1.model_registry_service_pb2 as registry_pb2
import tailor.trainer.v1.model_registry_service_pb2_grpc as registry_grpc
import tailor.trainer.v1.trainer_service_pb2 as trainer_pb2
import tailor.trainer.v1.trainer_service_pb2_grpc as trainer_grpc
import tailor.trainer.v1.webhook_service_pb2 as webhook_pb2
import tailor.trainer.v1.webhook_service_pb2_grpc as webhook_grpc
import tailor.trainer.v1.worker_service_pb2 as worker_pb2
import tailor.trainer.v1.worker_service_pb2_grpc as worker_grpc
from services.common.grpc_server import GrpcServer, ServiceRegistration
from services.common.object_store.sweep import AbandonedUploadSweep
from services.common.tenancy import current_organization
from services.trainer.config import TrainerSettings
from services.trainer.evals.servicer import EvalServicer
from services.trainer.jobs import JobService
from services.trainer.registry import ModelRegistry
from services.trainer.runtime import TrainerRuntime
from services.trainer.webhooks.delivery import WebhookDelivery
from services.trainer.webhooks.endpoints import WebhookEndpoints, WebhookServicer
from services.trainer.worker_api import WorkerApi

Context = grpc.aio.ServicerContext


class TrainerServicer(trainer_grpc.TrainerServiceServicer):
    """Fine-tuning jobs, their events and checkpoints."""

    def __init__(self, jobs: JobService) -> None:
        self._jobs = jobs

    async def CreateJob(
        self, request: trainer_pb2.CreateJobRequest, context: Context
    ) -> trainer_pb2.CreateJobResponse:
        """Checks and creates a job (or returns the one created earlier under the same idempotency key)."""
        return trainer_pb2.CreateJobResponse(job=await self._jobs.create(request))

    async def GetJob(
        self, request: trainer_pb2.GetJobRequest, context: Context
    ) -> trainer_pb2.GetJobResponse:
        """Returns one of the organization's jobs."""
        return trainer_pb2.GetJobResponse(job=await self._jobs.get(request.job_id))

    async def ListJobs(
        self, request: trainer_pb2.ListJobsRequest, context: Context
    ) -> trainer_pb2.ListJobsResponse:
        """Lists the organization's jobs, newest first."""
        jobs, has_more = await self._jobs.list(request.limit, request.after, dict(request.metadata))
        return trainer_pb2.ListJobsResponse(jobs=jobs, has_more=has_more)

    async def CancelJob(
        self, request: trainer_pb2.CancelJobRequest, context: Context
    ) -> trainer_pb2.CancelJobResponse:
        """Cancels an unfinished job and stops its worker."""
        return trainer_pb2.CancelJobResponse(job=await self._jobs.cancel(request.job_id))

    async def PauseJob(
        self, request: trainer_pb2.PauseJobRequest, context: Context
    ) -> trainer_pb2.PauseJobResponse:
        """Pauses a job that has not finished."""
        return trainer_pb2.PauseJobResponse(job=await self._jobs.pause(request.job_id))

    async def ResumeJob(
        self, request: trainer_pb2.ResumeJobRequest, context: Context
    ) -> trainer_pb2.ResumeJobResponse:
        """Puts a paused job back where it was (the queue, or file validation)."""
        return trainer_pb2.ResumeJobResponse(job=await self._jobs.resume(request.job_id))

    async def ListJobEvents(
        self, request: trainer_pb2.ListJobEventsRequest, context: Context
    ) -> trainer_pb2.ListJobEventsResponse:
        """Lists a job's events, newest first."""
        events, has_more = await self._jobs.list_events(request.job_id, request.limit, request.after)
        return trainer_pb2.ListJobEventsResponse(events=events, has_more=has_more)

    async def ListJobCheckpoints(
        self, request: trainer_pb2.ListJobCheckpointsRequest, context: Context
    ) -> trainer_pb2.ListJobCheckpointsResponse:
        """Lists a job's kept checkpoints, newest first."""
        checkpoints, has_more = await self._jobs.list_checkpoints(
            request.job_id, request.limit, request.after
        )
        return trainer_pb2.ListJobCheckpointsResponse(checkpoints=checkpoints, has_more=has_more)


class ModelRegistryServicer(registry_grpc.ModelRegistryServiceServicer):
    """What model names stand for."""

    def __init__(self, registry: ModelRegistry) -> None:
        self._registry = registry

    async def ResolveModel(
        self, request: registry_pb2.ResolveModelRequest, context: Context
    ) -> registry_pb2.ResolveModelResponse:
        """Resolves a base model, or one of the organization's fine-tuned models or checkpoints."""
        model = await self._registry.resolve(request.model, current_organization())
        return registry_pb2.ResolveModelResponse(model=model)

    async def ListModels(
        self, request: registry_pb2.ListModelsRequest, context: Context
    ) -> registry_pb2.ListModelsResponse:
        """Lists the base models and the organization's models."""
        return registry_pb2.ListModelsResponse(models=await self._registry.list(current_organization()))

    async def DeleteModel(
        self, request: registry_pb2.DeleteModelRequest, context: Context
    ) -> registry_pb2.DeleteModelResponse:
        """Deletes one of the organization's fine-tuned models or checkpoints."""
        await self._registry.delete(request.model, current_organization())
        return registry_pb2.DeleteModelResponse(model=request.model, deleted=True)


class WorkerServicer(worker_grpc.WorkerServiceServicer):
    """Progress reports from training workers."""

    def __init__(self, workers: WorkerApi) -> None:
        self._workers = workers

    async def ClaimJob(
        self, request: worker_pb2.ClaimJobRequest, context: Context
    ) -> worker_pb2.ClaimJobResponse:
        """Hands the attempt its training plan and marks the job running."""
        return worker_pb2.ClaimJobResponse(plan=await self._workers.claim(request.worker))

    async def ReportStarted(
        self, request: worker_pb2.ReportStartedRequest, context: Context
    ) -> worker_pb2.ReportStartedResponse:
        """Takes the resolved hyperparameters and the total number of steps."""
        return worker_pb2.ReportStartedResponse(directive=await self._workers.report_started(request))

    async def ReportEvents(
        self, request: worker_pb2.ReportEventsRequest, context: Context
    ) -> worker_pb2.ReportEventsResponse:
        """Takes messages and metrics; also the heartbeat."""
        return worker_pb2.ReportEventsResponse(directive=await self._workers.report_events(request))

    async def ReportCheckpoint(
        self, request: worker_pb2.ReportCheckpointRequest, context: Context
    ) -> worker_pb2.ReportCheckpointResponse:
        """Registers an uploaded checkpoint."""
        checkpoint, directive = await self._workers.report_checkpoint(request)
        return worker_pb2.ReportCheckpointResponse(checkpoint=checkpoint, directive=directive)

    async def ReportSucceeded(
        self, request: worker_pb2.ReportSucceededRequest, context: Context
    ) -> worker_pb2.ReportSucceededResponse:
        """Registers the fine-tuned model; the job succeeded."""
        return worker_pb2.ReportSucceededResponse(job=await self._workers.report_succeeded(request))

    async def ReportFailed(
        self, request: worker_pb2.ReportFailedRequest, context: Context
    ) -> worker_pb2.ReportFailedResponse:
        """Ends the attempt with an error; the job fails or is retried."""
        return worker_pb2.ReportFailedResponse(job=await self._workers.report_failed(request))

    async def UploadCheckpoint(
        self, request_iterator: AsyncIterator[worker_pb2.UploadCheckpointRequest], context: Context
    ) -> worker_pb2.UploadCheckpointResponse:
        """Stores one file of a checkpoint or of the final adapter under the job's output prefix."""
        return await self._workers.upload_checkpoint(request_iterator)

    async def DownloadCheckpoint(
        self, request: worker_pb2.DownloadCheckpointRequest, context: Context
    ) -> AsyncIterator[worker_pb2.DownloadCheckpointResponse]:
        """Streams a resume state or the initial adapter, object by object."""
        async for message in self._workers.download_checkpoint(request):
            yield message


def _full_name(module: object, service: str) -> str:
    return module.DESCRIPTOR.services_by_name[service].full_name  # type: ignore[attr-defined]


def registrations(runtime: TrainerRuntime) -> list[ServiceRegistration]:
    """The trainer's five services, for the common server."""
    return [
        ServiceRegistration(
            _full_name(trainer_pb2, "TrainerService"),
            trainer_grpc.add_TrainerServiceServicer_to_server,
            TrainerServicer(runtime.jobs),
        ),
        ServiceRegistration(
            _full_name(registry_pb2, "ModelRegistryService"),
            registry_grpc.add_ModelRegistryServiceServicer_to_server,
            ModelRegistryServicer(runtime.registry),
        ),
        ServiceRegistration(
            _full_name(worker_pb2, "WorkerService"),
            worker_grpc.add_WorkerServiceServicer_to_server,
            WorkerServicer(runtime.workers),
        ),
        ServiceRegistration(
            _full_name(webhook_pb2, "WebhookService"),
            webhook_grpc.add_WebhookServiceServicer_to_server,
            WebhookServicer(WebhookEndpoints(runtime.settings, runtime.records)),
        ),
        ServiceRegistration(
            _full_name(eval_pb2, "EvalService"),
            eval_grpc.add_EvalServiceServicer_to_server,
            EvalServicer(runtime.evals, runtime.eval_runs, runtime.eval_sampling),
        ),
    ]


def _abandoned_outputs_sweep(runtime: TrainerRuntime) -> AbandonedUploadSweep:
    """Removes, at start-up, the checkpoint uploads a killed trainer left (under ``orgs/{org}/jobs/``)."""
    return AbandonedUploadSweep(
        runtime.store,
        "orgs/",
        runtime.settings.object_store_abandoned_upload_s,
        lambda key: key.split("/")[2:3] == ["jobs"],
    )


class TrainerServer(GrpcServer):
    """The common server lifecycle plus the trainer's own start-up and shutdown."""

    def __init__(self, settings: TrainerSettings, runtime: TrainerRuntime) -> None:
        super().__init__(
            settings,
            settings.trainer_listen,
            registrations(runtime),
            readiness_checks=[
                runtime.records.check,
                runtime.store.check,
                _abandoned_outputs_sweep(runtime),
            ],
        )
        self.runtime = runtime
        self.webhooks = WebhookDelivery(settings, runtime.records)

    async def start(self) -> int:
        """Creates the tables, serves, then recovers the previous run's jobs and starts scheduling and webhooks."""
        await self.runtime.open()
        port = await super().start()
        await self.runtime.start(worker_trainer_address(self.runtime.settings, port))
        await self.webhooks.start()
        return port

    async def stop(self) -> None:
        """Stops webhooks and scheduling (and local workers), lets in-flight calls finish, then closes the records."""
        await self.webhooks.stop()
        await self.runtime.stop_scheduling()
        await super().stop()
        await self.runtime.close()


def worker_trainer_address(settings: TrainerSettings, bound_port: int) -> str:
    """Where workers reach the trainer: ``trainer_addr``, or loopback when the port was chosen at bind time (tests)."""
    if settings.trainer_listen.rsplit(":", 1)[-1] == "0":
        return f"127.0.0.1:{bound_port}"
    return settings.trainer_addr


def build_server(settings: TrainerSettings) -> TrainerServer:
    return TrainerServer(settings, TrainerRuntime(settings))
