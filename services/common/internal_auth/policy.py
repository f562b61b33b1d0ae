"""Who may call what: the one table of internal authorization.

- Health is anonymous (kubelet probes, grpc_health_probe); everything else needs a token.
- Reflection and the inference replicas' ``GetReplicaInfo`` (no tenant data): any service.
- A service identity may call the services listed for it in :data:`SERVICE_CALLERS`, acting
  for any organization (the gateway authenticated the end user; the trainer and inference
  act for the organization of the job or model they serve).
- A training worker (``iss=trainer, sub=worker``): only ``WorkerService`` calls naming its own
  job and attempt, ``DatasetService.DownloadFile`` of the files its token lists and
  ``DatasetService.UploadFile`` of its results (purpose FINE_TUNE_RESULTS), always as its
  job's organization. Its checkpoints go through the trainer too (``WorkerService.UploadCheckpoint``
  and ``DownloadCheckpoint``, whose header or request names its job and attempt): a worker
  holds no object store credentials; the trainer confines the keys to the job's prefix.
"""

from __future__ import annotations

from typing import Any

from services.common.internal_auth.tokens import Principal
from tailor.dataset.v1 import dataset_service_pb2 as dataset_pb2

DATASET = "/tailor.dataset.v1.DatasetService/"
TRAINER = "/tailor.trainer.v1.TrainerService/"
MODEL_REGISTRY = "/tailor.trainer.v1.ModelRegistryService/"
WORKER = "/tailor.trainer.v1.WorkerService/"
WEBHOOK = "/tailor.trainer.v1.WebhookService/"
EVAL = "/tailor.trainer.v1.EvalService/"
INFERENCE = "/tailor.inference.v1.InferenceService/"

# The identity (token audience) that serves each gRPC service.
AUDIENCE_OF_SERVICE = {
    "tailor.dataset.v1.DatasetService": "dataset",
    "tailor.trainer.v1.TrainerService": "trainer",
    "tailor.trainer.v1.ModelRegistryService": "trainer",
    "tailor.trainer.v1.WorkerService": "trainer",
    "tailor.trainer.v1.WebhookService": "trainer",
    "tailor.trainer.v1.EvalService": "trainer",
    "tailor.inference.v1.InferenceService": "inference",
}

ANONYMOUS_PREFIXES = ("/grpc.health.v1.Health/",)
# Any authenticated service identity, with or without an organization.
ANY_SERVICE_PREFIXES = ("/grpc.reflection.", INFERENCE + "GetReplicaInfo")
# Calls of a service allowed them that act for the organization the callee already knows: the
# eval sampler's (the trainer knows each run's organization and hands it out with the work).
NO_ORGANIZATION_METHODS = (EVAL + "ClaimEvalSamples", EVAL + "RecordEvalSamples")

SERVICE_CALLERS: dict[str, tuple[str, ...]] = {
    "gateway": (DATASET, TRAINER, MODEL_REGISTRY, WEBHOOK, EVAL, INFERENCE),
    "trainer": (DATASET,),  # reads a job's files to check them, stores results
    "inference": (MODEL_REGISTRY,),  # resolves a model name to its adapter
    "dataset": (),
}

WORKER_DOWNLOAD = DATASET + "DownloadFile"
WORKER_UPLOAD = DATASET + "UploadFile"
WORKER_CHECKPOINT_UPLOAD = WORKER + "UploadCheckpoint"


class Refused(Exception):
    """The caller is authenticated but not allowed this call; the message is the logged reason."""


def audience_of_method(method: str) -> str | None:
    """The identity serving ``/pkg.Service/Method``, or None for health, reflection and unknown services."""
    service = method.strip("/").split("/", 1)[0]
    return AUDIENCE_OF_SERVICE.get(service)


def is_anonymous(method: str) -> bool:
    return method.startswith(ANONYMOUS_PREFIXES)


def needs_organization(method: str) -> bool:
    return not (
        is_anonymous(method) or method.startswith(ANY_SERVICE_PREFIXES) or method in NO_ORGANIZATION_METHODS
    )


def authorize(principal: Principal, method: str) -> None:
    """Raises :class:`Refused` unless ``principal`` may call ``method`` (request checks aside)."""
    if principal.worker:
        if method.startswith(WORKER) or method in (WORKER_DOWNLOAD, WORKER_UPLOAD):
            return
        raise Refused("a worker may only report on its job and transfer its files")
    if method.startswith(ANY_SERVICE_PREFIXES):
        return
    allowed = SERVICE_CALLERS.get(principal.issuer, ())
    if not method.startswith(allowed):
        raise Refused(f"{principal.issuer} may not call this method")


def authorize_request(principal: Principal, method: str, request: Any) -> None:
    """The checks that need the request: a worker's own job, attempt and files."""
    if not principal.worker:
        return
    if method.startswith(WORKER):
        worker = request.worker
        if worker.job_id != principal.job_id or worker.attempt_id != principal.attempt_id:
            raise Refused("a worker may only report on its own job attempt")
    elif method == WORKER_DOWNLOAD and request.file_id not in principal.files:
        raise Refused("a worker may only download its job's files")


def authorize_stream_message(principal: Principal, method: str, message: Any) -> None:
    """The checks on each message of a streamed request: a worker uploads its own results only."""
    if not principal.worker:
        return
    if method == WORKER_CHECKPOINT_UPLOAD and message.WhichOneof("payload") == "header":
        worker = message.header.worker
        if worker.job_id != principal.job_id or worker.attempt_id != principal.attempt_id:
            raise Refused("a worker may only upload its own job attempt's checkpoints")
    if method == WORKER_UPLOAD and message.WhichOneof("payload") == "metadata":
        if message.metadata.purpose != dataset_pb2.FILE_PURPOSE_FINE_TUNE_RESULTS:
            raise Refused("a worker may only upload its job's results")
