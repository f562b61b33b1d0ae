"""One job attempt from claim to final report: the worker's orchestration and its error mapping.

The RPC sequence (the contract the trainer implements; every call carries the job's
organization in its metadata):

1. ``WorkerService.ClaimJob`` -> the :class:`TrainingPlan`. From here on, ``ReportEvents`` goes
   out whenever events are queued and at least every ``heartbeat_interval_s`` (a heartbeat
   task, independent of how slow a step is).
2. The object store is checked; ``DatasetService.DownloadFile`` streams the training (and
   validation) file to a local file; the resume state and the initial adapter, when the plan
   names them, are downloaded from the object store.
3. Tokenizer, examples, hyperparameters ("auto" resolved), base model and adapter are loaded.
4. ``ReportStarted`` (resolved method, total steps, training examples).
5. Training. Metrics events every ``worker_metrics_interval_steps`` steps and at epoch ends. At
   each epoch end the adapter and the training state are uploaded to
   ``{output_prefix}checkpoints/step-{N}/{adapter,state}/``, then ``ReportCheckpoint``.
6. The final adapter is uploaded to ``{output_prefix}adapter/``, the results CSV with
   ``DatasetService.UploadFile`` (purpose FINE_TUNE_RESULTS), then ``ReportSucceeded``.

On failure: ``ReportFailed`` with a :class:`JobError` (see :mod:`.failures`). Directives:
CANCEL stops at once and uploads nothing more; PAUSE saves and reports a checkpoint (unless
nothing was trained since the last one), then exits. A refused report ends the worker quietly.

Exit codes: 0 when the trainer knows the outcome (succeeded, failed, cancelled, paused, or it
refused us), 1 when it could not be told (unreachable), 143 after SIGTERM, 2 on bad settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import os
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import structlog
import torch
from peft import PeftModel

from services.common.base_models import BaseModelSpec, resolve_base_model
from services.common.errors import TailorError
from services.common.grpc_client import open_channel
from services.common.object_store import (
    ObjectNotFound,
    ObjectStore,
    ObjectStoreUnavailable,
    open_object_store,
)
from services.common.tenancy import call_context
from services.trainer.worker.checkpoints import (
    checkpoint_location,
    download_prefix,
    final_adapter_prefix,
    load_state,
    save_state,
    upload_directory,
)
from services.trainer.worker.config import WorkerSettings
from services.trainer.worker.data import ExampleSet, load_examples
from services.trainer.worker.dpo import PreferenceObjective
from services.trainer.worker.failures import (
    BASE_MODEL_UNAVAILABLE,
    DATASET_UNAVAILABLE,
    INTERNAL_ERROR,
    OBJECT_STORE_UNAVAILABLE,
    OUT_OF_MEMORY,
    JobFailure,
    invalid_file,
)
from services.trainer.worker.hyperparameters import Hyperparameters, resolve_hyperparameters, steps_per_epoch
from services.trainer.worker.lora import ADAPTER_CONFIG, check_vllm_compatible, lora_config, save_adapter
from services.trainer.worker.models import attach_adapter, choose_placement, load_base_model, load_tokenizer
from services.trainer.worker.progress import ReportRefused, Stop, TrainerLink, TrainerUnreachable
from services.trainer.worker.results import (
    RESULTS_FILENAME,
    ResultsLog,
    message_event,
    metrics_event,
    metrics_proto,
)
from services.trainer.worker.training import (
    StepReport,
    SupervisedObjective,
    TrainingCancelled,
    TrainingConfig,
    TrainingLoop,
)
from tailor.dataset.v1 import dataset_service_pb2, dataset_service_pb2_grpc
from tailor.trainer.v1 import job_pb2, worker_service_pb2, worker_service_pb2_grpc

log = structlog.get_logger("tailor.worker")

T = TypeVar("T")

EXIT_REPORTED = 0
EXIT_UNREPORTED = 1
EXIT_BAD_SETTINGS = 2
EXIT_TERMINATED = 128 + signal.SIGTERM
# A file download or a results upload is one long stream, not a short call.
FILE_TRANSFER_TIMEOUT_S = 3600.0
UPLOAD_CHUNK_BYTES = 1 << 20
# For a base model the plan names but this worker's settings do not configure.
DEFAULT_LORA_RANK = 16
DEFAULT_MAX_SEQ_LENGTH = 2048


async def run_worker(settings: WorkerSettings, *, handle_signals: bool = True) -> int:
    """Train the job named in ``settings`` and report to the trainer; returns the exit code.

    ``handle_signals`` installs the SIGTERM handler (``python -m services.trainer.worker`` does;
    tests running the worker inside their own process do not).
    """
    missing = [
        name
        for name in ("worker_job_id", "worker_attempt_id", "worker_organization")
        if not getattr(settings, name)
    ]
    if missing:
        log.error("worker identity not set", missing=[f"TAILOR_{name.upper()}" for name in missing])
        return EXIT_BAD_SETTINGS
    if settings.worker_torch_threads:
        torch.set_num_threads(settings.worker_torch_threads)

    identity = worker_service_pb2.WorkerIdentity(
        job_id=settings.worker_job_id, attempt_id=settings.worker_attempt_id
    )
    structlog.contextvars.bind_contextvars(job_id=identity.job_id, attempt_id=identity.attempt_id)
    with call_context(settings.worker_organization, f"{identity.job_id}.{identity.attempt_id}"):
        trainer_channel = open_channel(settings.trainer_addr, settings)
        dataset_channel = open_channel(settings.dataset_addr, settings)
        store = open_object_store(settings)
        try:
            link = TrainerLink(worker_service_pb2_grpc.WorkerServiceStub(trainer_channel), identity)
            return await _run_attempt(settings, link, dataset_channel, store, handle_signals=handle_signals)
        finally:
            await store.close()
            await dataset_channel.close()
            await trainer_channel.close()


async def _run_attempt(
    settings: WorkerSettings,
    link: TrainerLink,
    dataset_channel: grpc.aio.Channel,
    store: ObjectStore,
    *,
    handle_signals: bool,
) -> int:
    try:
        plan = await link.claim()
    except ReportRefused as refusal:
        log.info("claim refused; nothing to do", reason=str(refusal))
        return EXIT_REPORTED
    except TrainerUnreachable as error:
        log.error("trainer unreachable; cannot claim the job", error=str(error))
        return EXIT_UNREPORTED
    log.info("job claimed", base_model=plan.base_model, output_prefix=plan.output_prefix)

    heartbeats = asyncio.create_task(link.heartbeats())
    async with _terminate_on_sigterm(link, settings.worker_stop_grace_s, enabled=handle_signals):
        scratch = Path(tempfile.mkdtemp(prefix="tailor-worker-", dir=settings.worker_scratch_dir))
        try:
            attempt = JobAttempt(
                settings,
                plan,
                link,
                store,
                dataset_service_pb2_grpc.DatasetServiceStub(dataset_channel),
                scratch,
            )
            await attempt.run()
        except ReportRefused as refusal:
            log.info("report refused; stopping", reason=str(refusal))
        except TrainerUnreachable as error:
            log.error("trainer unreachable; outcome not reported", error=str(error))
            return EXIT_UNREPORTED
        except Exception as error:
            if link.stop is not None and link.stop.is_immediate:
                log.info("stopped", reason=link.stop.value, during=repr(error))
            else:
                return await _report_failure(link, error)
        finally:
            heartbeats.cancel()
            shutil.rmtree(scratch, ignore_errors=True)
    return EXIT_TERMINATED if link.stop is Stop.TERMINATED else EXIT_REPORTED


async def _report_failure(link: TrainerLink, error: Exception) -> int:
    failure = job_failure(error)
    if failure.code == INTERNAL_ERROR:
        log.error("job failed unexpectedly", exc_info=error)
    else:
        log.warning("job failed", code=failure.code, message=failure.message)
    try:
        await link.failed(
            job_pb2.JobError(code=failure.code, message=failure.message, param=failure.param),
            retryable=failure.retryable,
        )
    except ReportRefused:
        return EXIT_REPORTED
    except TrainerUnreachable as unreachable:
        log.error("trainer unreachable; failure not reported", error=str(unreachable))
        return EXIT_UNREPORTED
    return EXIT_REPORTED


def job_failure(error: BaseException) -> JobFailure:
    """The user-facing failure for an exception that ended a job (the one mapping of errors to codes)."""
    if isinstance(error, JobFailure):
        return error
    if isinstance(error, torch.OutOfMemoryError | MemoryError):
        return JobFailure(
            OUT_OF_MEMORY,
            "Training ran out of memory. Use a smaller batch_size or shorter examples, or lower "
            "TAILOR_WORKER_MICRO_BATCH_TOKENS or enable TAILOR_WORKER_GRADIENT_CHECKPOINTING on the trainer.",
        )
    if isinstance(error, ObjectStoreUnavailable):
        return JobFailure(
            OBJECT_STORE_UNAVAILABLE, f"The object store is unavailable: {error.message}", retryable=True
        )
    if isinstance(error, ObjectNotFound | FileNotFoundError):
        return JobFailure(INTERNAL_ERROR, f"A stored checkpoint or adapter is missing: {error}")
    return JobFailure(INTERNAL_ERROR, "The training worker failed unexpectedly.", retryable=True)


@contextlib.asynccontextmanager
async def _terminate_on_sigterm(link: TrainerLink, grace_s: float, *, enabled: bool) -> AsyncIterator[None]:
    """On SIGTERM: stop training at once, and exit regardless once ``grace_s`` has passed."""
    if not enabled:
        yield
        return
    loop = asyncio.get_running_loop()

    def on_sigterm() -> None:
        link.request_stop(Stop.TERMINATED)
        # A step, a model load or a download may not notice the stop in time; the trainer treats
        # the exit as a cancel either way, so nothing is lost by not waiting for them.
        loop.call_later(grace_s, os._exit, EXIT_TERMINATED)

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


@dataclass
class Prepared:
    """Everything loaded before training starts."""

    hyperparameters: Hyperparameters
    training: ExampleSet
    model: PeftModel
    loop: TrainingLoop
    results: ResultsLog


class _Stopped(Exception):
    """The link says stop; unwinds the attempt between phases."""


class JobAttempt:
    """One attempt at one job; :meth:`run` does steps 2-6 of the module docstring."""

    def __init__(
        self,
        settings: WorkerSettings,
        plan: worker_service_pb2.TrainingPlan,
        link: TrainerLink,
        store: ObjectStore,
        datasets: dataset_service_pb2_grpc.DatasetServiceStub,
        scratch: Path,
    ) -> None:
        self.settings = settings
        self.plan = plan
        self.job = plan.job
        self.link = link
        self.store = store
        self.datasets = datasets
        self.scratch = scratch
        self.base_spec: BaseModelSpec | None = settings.base_models.get(plan.base_model)
        self._loop = asyncio.get_running_loop()
        self._last_checkpoint_step = -1

    async def run(self) -> None:
        """Train the job and report its outcome (raises what should become a ReportFailed)."""
        try:
            await self._run()
        except _Stopped:
            log.info("stopped", reason=self.link.stop.value if self.link.stop else None)

    async def _run(self) -> None:
        await self._check_object_store()
        training_path = await self._download_file(self.job.training_file, "training_file")
        validation_path = None
        if self.job.validation_file:
            validation_path = await self._download_file(self.job.validation_file, "validation_file")
        resume_dir = adapter_dir = None
        if self.plan.resume_from_uri:
            resume_dir = await download_prefix(self.store, self.plan.resume_from_uri, self.scratch / "resume")
        if self.plan.initial_adapter_uri:
            adapter_dir = await download_prefix(
                self.store, self.plan.initial_adapter_uri, self.scratch / "initial"
            )
        self._check_stop()

        prepared = await asyncio.to_thread(
            self._prepare, training_path, validation_path, resume_dir, adapter_dir
        )
        self._check_stop()
        await self.link.started(
            prepared.hyperparameters.to_method(),
            total_steps=prepared.loop.total_steps,
            training_examples=len(prepared.training),
        )
        finished = await asyncio.to_thread(self._train, prepared)
        if finished:
            await self._finish(prepared)

    def _check_stop(self) -> None:
        # A pause is handled by the training loop (checkpoint, then exit), and is moot once training is done.
        if self.link.stop is not None and self.link.stop.is_immediate:
            raise _Stopped

    # Step 2: inputs.

    async def _check_object_store(self) -> None:
        # Fail before hours of training, not at the first checkpoint.
        await self.store.check()

    async def _download_file(self, file_id: str, file_param: str) -> Path:
        """Stream a dataset file to a local file; the first message is its record."""
        path = self.scratch / f"{file_param}.jsonl"
        request = dataset_service_pb2.DownloadFileRequest(file_id=file_id)
        try:
            with path.open("wb") as output:
                async for message in self.datasets.DownloadFile(request, timeout=FILE_TRANSFER_TIMEOUT_S):
                    if message.HasField("file"):
                        _check_file_record(message.file, file_param)
                    else:
                        await asyncio.to_thread(output.write, message.chunk)
        except grpc.aio.AioRpcError as error:
            if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED):
                raise invalid_file(file_param, 0, f"file {file_id} does not exist.") from None
            raise JobFailure(
                DATASET_UNAVAILABLE,
                f"The dataset service could not send file {file_id}: {error.code().name}: {error.details()}",
                retryable=True,
            ) from error
        return path

    # Step 3: loading (in a worker thread; the event loop keeps the heartbeats going).

    def _prepare(
        self,
        training_path: Path,
        validation_path: Path | None,
        resume_dir: Path | None,
        adapter_dir: Path | None,
    ) -> Prepared:
        revision = self.base_spec.revision if self.base_spec else None
        source = self._base_model_source()
        tokenizer = load_tokenizer(
            source,
            revision=revision,
            chat_template=self.base_spec.chat_template if self.base_spec else None,
        )
        max_length = (
            self.settings.worker_max_seq_length
            or self.plan.max_seq_length
            or (self.base_spec.max_seq_length if self.base_spec else DEFAULT_MAX_SEQ_LENGTH)
        )
        dpo = self.job.method.type == job_pb2.METHOD_TYPE_DPO
        training = load_examples(
            training_path, tokenizer, preference=dpo, max_length=max_length, file_param="training_file"
        )
        self._post_file_summary("Training", training)
        validation = None
        if validation_path is not None:
            validation = load_examples(
                validation_path,
                tokenizer,
                preference=dpo,
                max_length=max_length,
                file_param="validation_file",
            )
            self._post_file_summary("Validation", validation)

        resume_state = load_state(resume_dir) if resume_dir else None
        if resume_state:
            hyperparameters = Hyperparameters(**resume_state["hyperparameters"])
        else:
            hyperparameters = resolve_hyperparameters(
                self.job.method,
                n_examples=len(training),
                base_learning_rate=self.plan.base_learning_rate,
                default_lora_rank=self.base_spec.lora_rank if self.base_spec else DEFAULT_LORA_RANK,
                max_lora_rank=self.settings.max_lora_rank,
            )
            if adapter_dir:
                hyperparameters = self._with_adapter_shape(hyperparameters, adapter_dir)

        placement = choose_placement(self.settings.worker_device, self.settings.worker_dtype)
        base_model = load_base_model(
            source,
            placement,
            revision=revision,
            attn_implementation=self.settings.worker_attn_implementation,
        )
        torch.manual_seed(self.job.seed)  # a new adapter's initial weights
        model = attach_adapter(
            base_model,
            config=lora_config(
                hyperparameters.lora_rank, hyperparameters.lora_alpha, hyperparameters.lora_dropout
            ),
            adapter_dir=adapter_dir,
            gradient_checkpointing=self.settings.worker_gradient_checkpointing,
        )
        objective = (
            PreferenceObjective(hyperparameters.beta)
            if hyperparameters.beta is not None
            else SupervisedObjective()
        )
        total_steps = steps_per_epoch(len(training), hyperparameters.batch_size) * hyperparameters.n_epochs
        config = TrainingConfig(
            n_epochs=hyperparameters.n_epochs,
            batch_size=hyperparameters.batch_size,
            learning_rate=hyperparameters.learning_rate,
            seed=self.job.seed,
            max_length=max_length,
            pad_token_id=tokenizer.pad_token_id,
            warmup_steps=math.ceil(self.settings.worker_warmup_ratio * total_steps),
            packing=self.settings.worker_packing,
            micro_batch_tokens=self.settings.worker_micro_batch_tokens,
            metrics_interval=self.settings.worker_metrics_interval_steps,
        )
        loop = TrainingLoop(
            model,
            objective,
            training.examples,
            config,
            device=placement.device,
            valid_examples=validation.examples if validation else (),
            autocast_dtype=placement.autocast_dtype,
            should_cancel=lambda: self.link.stop is not None and self.link.stop.is_immediate,
        )
        results = ResultsLog()
        if resume_state:
            loop.load_state_dict(resume_state["loop"])
            results = ResultsLog(resume_state["results"])
            self._last_checkpoint_step = loop.step
            self.link.post(message_event(f"Resuming from the checkpoint at step {loop.step}"))
        log.info(
            "prepared",
            device=str(placement.device),
            dtype=str(placement.dtype),
            total_steps=total_steps,
            hyperparameters=dataclasses.asdict(hyperparameters),
        )
        return Prepared(hyperparameters, training, model, loop, results)

    def _base_model_source(self) -> str:
        """Where to load the base model from on this machine.

        A built-in model (tailor-tiny) is built under this worker's own data directory: the
        trainer's path for it means nothing inside a Kubernetes pod. Anything else is loaded from
        where the trainer resolved it (a Hugging Face id, or a directory both can see).
        """
        if self.base_spec is None or not self.base_spec.is_builtin:
            return self.plan.base_model_source
        try:
            return resolve_base_model(self.plan.base_model, self.settings).location
        except (TailorError, OSError) as error:
            raise JobFailure(
                BASE_MODEL_UNAVAILABLE, f"Base model {self.plan.base_model!r} could not be built: {error}"
            ) from error

    def _with_adapter_shape(self, hyperparameters: Hyperparameters, adapter_dir: Path) -> Hyperparameters:
        """Continuing an ``ft:`` model keeps its adapter's rank, alpha and dropout."""
        check_vllm_compatible(adapter_dir, max_rank=self.settings.max_lora_rank)
        config = json.loads((adapter_dir / ADAPTER_CONFIG).read_text(encoding="utf-8"))
        return dataclasses.replace(
            hyperparameters,
            lora_rank=config["r"],
            lora_alpha=float(config["lora_alpha"]),
            lora_dropout=float(config.get("lora_dropout") or 0.0),
        )

    def _post_file_summary(self, name: str, examples: ExampleSet) -> None:
        self.link.post(
            message_event(
                f"{name} file: {len(examples)} {examples.format.label} examples, {examples.num_tokens} tokens"
            )
        )
        if examples.truncated_examples:
            self.link.post(
                message_event(
                    f"{name} file: {examples.truncated_examples} examples are longer than {examples.max_length} "
                    "tokens and were truncated",
                    warning=True,
                )
            )
        if examples.skipped_examples:
            self.link.post(
                message_event(
                    f"{name} file: {examples.skipped_examples} examples have no assistant tokens within the first "
                    f"{examples.max_length} tokens and were skipped",
                    warning=True,
                )
            )

    # Step 5: training (in a worker thread).

    def _train(self, prepared: Prepared) -> bool:
        """Run the loop; True when training finished, False when it stopped early."""
        try:
            for report in prepared.loop.run():
                self.link.current_step = report.step
                prepared.results.record(report)
                if report.reports_metrics:
                    self.link.post(metrics_event(report))
                if report.end_of_epoch:
                    self._checkpoint(prepared, report)
                stop = self.link.stop
                if stop is Stop.PAUSE and report.step < report.total_steps:
                    if report.step > self._last_checkpoint_step:
                        self._checkpoint(prepared, report)
                    log.info("paused", step=report.step)
                    return False
                if stop is not None and stop.is_immediate:
                    return False
        except TrainingCancelled:
            return False
        return True

    def _checkpoint(self, prepared: Prepared, report: StepReport) -> None:
        """Save, upload and report the checkpoint at this step."""
        location = checkpoint_location(self.plan.output_prefix, report.step)
        local = self.scratch / f"checkpoint-{report.step}"
        self._save_adapter(prepared, local / "adapter")
        save_state(
            local / "state",
            {
                "loop": prepared.loop.state_dict(),
                "hyperparameters": dataclasses.asdict(prepared.hyperparameters),
                "results": prepared.results.rows,
            },
        )
        self._await(upload_directory(self.store, local / "adapter", location.adapter_prefix))
        self._await(upload_directory(self.store, local / "state", location.state_prefix))
        shutil.rmtree(local, ignore_errors=True)
        self._await(
            self.link.checkpoint(
                step=report.step,
                epoch=report.epoch,
                adapter_uri=location.adapter_prefix,
                state_uri=location.state_prefix,
                metrics=metrics_proto(report),
                lora_rank=prepared.hyperparameters.lora_rank,
            )
        )
        self._last_checkpoint_step = report.step

    def _save_adapter(self, prepared: Prepared, directory: Path) -> Path:
        return save_adapter(
            prepared.model,
            directory,
            base_model_name=self.plan.base_model,
            max_rank=self.settings.max_lora_rank,
        )

    def _await(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the event loop from the training thread and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    # Step 6: results.

    async def _finish(self, prepared: Prepared) -> None:
        final = await asyncio.to_thread(self._save_adapter, prepared, self.scratch / "final-adapter")
        adapter_prefix = final_adapter_prefix(self.plan.output_prefix)
        await upload_directory(self.store, final, adapter_prefix)
        self._check_stop()
        results_file = await self._upload_results(prepared.results.to_csv())
        self._check_stop()
        await self.link.succeeded(
            adapter_uri=adapter_prefix,
            trained_tokens=prepared.loop.trained_tokens,
            result_files=[results_file],
            lora_rank=prepared.hyperparameters.lora_rank,
        )
        log.info("job succeeded", trained_tokens=prepared.loop.trained_tokens, steps=prepared.loop.step)

    async def _upload_results(self, content: bytes) -> str:
        """Store the results CSV as a ``fine-tune-results`` file; returns its id."""

        async def messages() -> AsyncIterator[dataset_service_pb2.UploadFileRequest]:
            yield dataset_service_pb2.UploadFileRequest(
                metadata=dataset_service_pb2.UploadFileMetadata(
                    filename=RESULTS_FILENAME,
                    purpose=dataset_service_pb2.FILE_PURPOSE_FINE_TUNE_RESULTS,
                    expected_bytes=len(content),
                )
            )
            for start in range(0, len(content), UPLOAD_CHUNK_BYTES):
                yield dataset_service_pb2.UploadFileRequest(chunk=content[start : start + UPLOAD_CHUNK_BYTES])

        try:
            response = await self.datasets.UploadFile(messages(), timeout=FILE_TRANSFER_TIMEOUT_S)
        except grpc.aio.AioRpcError as error:
            raise JobFailure(
                DATASET_UNAVAILABLE,
                f"The dataset service could not store the results file: {error.code().name}: {error.details()}",
                retryable=True,
            ) from error
        return response.file.id


def _check_file_record(record: dataset_service_pb2.File, file_param: str) -> None:
    """A file the dataset service found invalid fails the job with its first problem."""
    if record.status == dataset_service_pb2.FILE_STATUS_ERROR:
        problem = record.problems[0] if record.problems else None
        reason = problem.message if problem else (record.status_details or "the dataset service rejected it.")
        raise invalid_file(file_param, problem.line if problem else 0, reason)
