"""``python -m tests.support.fake_worker``: a training worker that speaks the real protocol but trains nothing.

It is what the trainer's tests launch in place of ``python -m services.trainer.worker``:
started by the trainer's executor with the same environment, it claims its job,
reports the resolved hyperparameters, a metrics event per step (its heartbeat), a
checkpoint per epoch (a small PEFT-shaped adapter and a training state written to
the object store), uploads a results CSV through the dataset service, and reports
success. It obeys the CANCEL and PAUSE directives and stops on any refusal, as a real
worker must.

What it does can be changed per job through the job's metadata entry ``fake_worker``
(or ``TAILOR_FAKE_WORKER`` for every job), a comma-separated list of ``key=value``:

* ``steps_per_epoch=3`` and ``step_s=0.05``: how much "training" there is, and how slow;
* ``crash_at_step=N``: the process dies (exit code 3) on reaching step N;
* ``hang_at_step=N``: on reaching step N it stops reporting, and sleeps forever;
* ``fail=CODE``: it reports a failure with that code (``invalid_training_file`` names
  ``training_file`` as the param), not retryable unless ``retryable=1``.

A crash or hang happens only in an attempt that starts fresh, so a retry from a
checkpoint gets past it; ``always=1`` makes it happen in every attempt.
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, fields, replace

import grpc
from pydantic import Field

import tailor.trainer.v1.worker_service_pb2 as worker_pb2
import tailor.trainer.v1.worker_service_pb2_grpc as worker_grpc
from services.common.grpc_client import open_channel
from services.common.object_store import ObjectStore, open_object_store
from services.common.settings import CommonSettings, load_settings
from services.common.tenancy import call_context
from tailor.dataset.v1 import dataset_service_pb2 as dataset_pb2
from tailor.dataset.v1 import dataset_service_pb2_grpc as dataset_grpc
from tailor.trainer.v1 import job_pb2

BEHAVIOUR_METADATA_KEY = "fake_worker"
CRASH_EXIT_CODE = 3
# The protocol's refusals: the attempt was superseded, the job is finished, or it is not ours.
_REFUSALS = (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND)


class FakeWorkerSettings(CommonSettings):
    """What the trainer's executor hands a worker, plus the fake's default behaviour."""

    worker_job_id: str = Field("", description="The job to train (set by the executor).")
    worker_attempt_id: str = Field("", description="This launch's attempt id (set by the executor).")
    worker_organization: str = Field("", description="The job's organization (set by the executor).")
    worker_token: str = Field("", description="The attempt's credential (set by the executor).")
    fake_worker: str = Field("", description="Default behaviour of every job, as in the job metadata.")


@dataclass(frozen=True)
class Behaviour:
    """How the fake trains one job; see the module docstring."""

    steps_per_epoch: int = 3
    step_s: float = 0.05
    crash_at_step: int = 0
    hang_at_step: int = 0
    fail: str = ""
    retryable: bool = False
    always: bool = False

    def updated(self, spec: str) -> Behaviour:
        """This behaviour with the ``key=value`` pairs of ``spec`` applied."""
        types = {f.name: f.type for f in fields(self)}
        changes: dict[str, object] = {}
        for pair in filter(None, (p.strip() for p in spec.split(","))):
            key, _, value = pair.partition("=")
            kind = types[key]
            if kind == "bool":
                changes[key] = value in ("1", "true", "yes")
            elif kind == "int":
                changes[key] = int(value)
            elif kind == "float":
                changes[key] = float(value)
            else:
                changes[key] = value
        return replace(self, **changes)


# What the fake adapter adapts, reported as the real worker reports its resolved modules.
TARGET_MODULES = ("q_proj", "v_proj")


def adapter_files(rank: int, base_model: str) -> dict[str, bytes]:
    """A PEFT-shaped adapter: adapter_config.json and a valid, tensor-less safetensors file."""
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": rank,
        "lora_alpha": 2 * rank,
        "lora_dropout": 0.0,
        "bias": "none",
        "target_modules": list(TARGET_MODULES),
        "base_model_name_or_path": base_model,
    }
    header = json.dumps({"__metadata__": {"format": "pt", "fake": "true"}}).encode()
    header += b" " * (-len(header) % 8)
    return {
        "adapter_config.json": json.dumps(config).encode(),
        "adapter_model.safetensors": struct.pack("<Q", len(header)) + header,
    }


class FakeWorker:
    """One attempt at one job, reported for real."""

    def __init__(self, settings: FakeWorkerSettings, store: ObjectStore, channel: grpc.aio.Channel) -> None:
        self.settings = settings
        self.store = store
        self.channel = channel
        self.stub = worker_grpc.WorkerServiceStub(channel)
        self.identity = worker_pb2.WorkerIdentity(
            job_id=settings.worker_job_id, attempt_id=settings.worker_attempt_id
        )

    async def run(self) -> None:
        plan = (await self.stub.ClaimJob(worker_pb2.ClaimJobRequest(worker=self.identity))).plan
        behaviour = Behaviour().updated(self.settings.fake_worker)
        behaviour = behaviour.updated(plan.job.metadata.get(BEHAVIOUR_METADATA_KEY, ""))
        fresh_start = not plan.resume_from_uri
        misbehave = fresh_start or behaviour.always

        method = self.resolved_method(plan.job.method)
        hyperparameters = method.hyperparameters
        total_steps = hyperparameters.n_epochs * behaviour.steps_per_epoch
        first_step = 1
        if plan.resume_from_uri:
            state = json.loads(await self.store.get_bytes(plan.resume_from_uri + "state.json"))
            first_step = state["step"] + 1
        started = await self.stub.ReportStarted(
            worker_pb2.ReportStartedRequest(
                worker=self.identity, resolved_method=method, total_steps=total_steps, training_examples=20
            )
        )
        if started.directive != worker_pb2.WORKER_DIRECTIVE_CONTINUE:
            return
        if behaviour.fail:
            await self.report_failure(behaviour)
            return

        for step in range(first_step, total_steps + 1):
            if misbehave and step == behaviour.crash_at_step:
                os._exit(CRASH_EXIT_CODE)
            if misbehave and step == behaviour.hang_at_step:
                await asyncio.sleep(3600)
            await asyncio.sleep(behaviour.step_s)
            epoch = (step - 1) // behaviour.steps_per_epoch + 1
            metrics = job_pb2.Metrics(
                step=step,
                total_steps=total_steps,
                train_loss=2.0 / step,
                train_mean_token_accuracy=0.5,
                epoch=epoch,
            )
            directive = await self.report_step(step, metrics)
            if directive == worker_pb2.WORKER_DIRECTIVE_CANCEL:
                return
            if step % behaviour.steps_per_epoch == 0 or directive == worker_pb2.WORKER_DIRECTIVE_PAUSE:
                directive = await self.checkpoint(plan, step, epoch, metrics, hyperparameters.lora_rank)
                if directive != worker_pb2.WORKER_DIRECTIVE_CONTINUE:
                    return

        adapter_uri = await self.write_adapter(
            plan, f"{plan.output_prefix}adapter/", hyperparameters.lora_rank
        )
        await self.stub.ReportSucceeded(
            worker_pb2.ReportSucceededRequest(
                worker=self.identity,
                adapter_uri=adapter_uri,
                trained_tokens=1000 * hyperparameters.n_epochs,
                result_files=await self.upload_results(total_steps),
                lora_rank=hyperparameters.lora_rank,
            )
        )

    @staticmethod
    def resolved_method(requested: job_pb2.Method) -> job_pb2.Method:
        """The job's method with every "auto" hyperparameter given a value."""
        method = job_pb2.Method()
        method.CopyFrom(requested)
        if method.type == job_pb2.METHOD_TYPE_UNSPECIFIED:
            method.type = job_pb2.METHOD_TYPE_SUPERVISED
        hp = method.hyperparameters
        defaults = {"n_epochs": 2, "batch_size": 1, "learning_rate_multiplier": 1.0, "lora_rank": 8}
        if method.type == job_pb2.METHOD_TYPE_DPO:
            defaults["beta"] = 0.1
        for name, value in defaults.items():
            if not hp.HasField(name):
                setattr(hp, name, value)
        hp.lora_target_modules[:] = TARGET_MODULES
        return method

    async def report_step(self, step: int, metrics: job_pb2.Metrics) -> int:
        event = worker_pb2.WorkerEvent(
            level=job_pb2.EVENT_LEVEL_INFO,
            message=f"Step {step}/{metrics.total_steps}: training loss={metrics.train_loss:.2f}",
            type=job_pb2.EVENT_TYPE_METRICS,
            metrics=metrics,
        )
        request = worker_pb2.ReportEventsRequest(worker=self.identity, events=[event], current_step=step)
        return (await self.stub.ReportEvents(request)).directive

    async def checkpoint(
        self, plan: worker_pb2.TrainingPlan, step: int, epoch: int, metrics: job_pb2.Metrics, rank: int
    ) -> int:
        prefix = f"{plan.output_prefix}checkpoints/step-{step}/"
        adapter_uri = await self.write_adapter(plan, prefix + "adapter/", rank)
        state_uri = prefix + "state/"
        await self.store.put_bytes(state_uri + "state.json", json.dumps({"step": step}).encode())
        response = await self.stub.ReportCheckpoint(
            worker_pb2.ReportCheckpointRequest(
                worker=self.identity,
                step_number=step,
                epoch=epoch,
                adapter_uri=adapter_uri,
                state_uri=state_uri,
                metrics=metrics,
                lora_rank=rank,
            )
        )
        return response.directive

    async def write_adapter(self, plan: worker_pb2.TrainingPlan, prefix: str, rank: int) -> str:
        for name, data in adapter_files(rank, plan.base_model).items():
            await self.store.put_bytes(prefix + name, data)
        return prefix

    async def upload_results(self, total_steps: int) -> list[str]:
        """Stores the results CSV as a ``fine-tune-results`` file, as the real worker does."""
        rows = ["step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy"]
        rows += [f"{step},{2.0 / step:.4f},0.5,," for step in range(1, total_steps + 1)]

        async def upload() -> AsyncIterator[dataset_pb2.UploadFileRequest]:
            yield dataset_pb2.UploadFileRequest(
                metadata=dataset_pb2.UploadFileMetadata(
                    filename="step_metrics.csv", purpose=dataset_pb2.FILE_PURPOSE_FINE_TUNE_RESULTS
                )
            )
            yield dataset_pb2.UploadFileRequest(chunk="\n".join(rows).encode() + b"\n")

        async with open_channel(
            self.settings.dataset_addr, self.settings, bearer_token=self.settings.worker_token or None
        ) as channel:
            response = await dataset_grpc.DatasetServiceStub(channel).UploadFile(upload())
        return [response.file.id]

    async def report_failure(self, behaviour: Behaviour) -> None:
        param = "training_file" if behaviour.fail == "invalid_training_file" else ""
        error = job_pb2.JobError(
            code=behaviour.fail,
            message=f"The fake worker was told to fail with {behaviour.fail}.",
            param=param,
        )
        request = worker_pb2.ReportFailedRequest(
            worker=self.identity, error=error, retryable=behaviour.retryable
        )
        await self.stub.ReportFailed(request)


async def main() -> int:
    settings = load_settings(FakeWorkerSettings)
    store = open_object_store(settings)
    try:
        async with open_channel(settings.trainer_addr, settings, bearer_token=settings.worker_token or None) as channel:
            with call_context(settings.worker_organization, None):
                await FakeWorker(settings, store, channel).run()
    except grpc.aio.AioRpcError as error:
        if error.code() not in _REFUSALS:
            raise
        # Refused: superseded, cancelled or finished. Stopping is the right answer.
    finally:
        await store.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
