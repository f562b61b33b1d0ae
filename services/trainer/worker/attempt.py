"""One job attempt, from its claimed plan to its reported outcome: the phases and their order.

The RPC sequence (the contract the trainer implements; every call carries the job's
organization in its metadata), after ``WorkerService.ClaimJob`` gave the plan (:mod:`.run`):

1. ``DatasetService.DownloadFile`` streams the training (and validation) file to a local file;
   the resume state and the initial adapter, when the plan names them, are streamed down by
   ``WorkerService.DownloadCheckpoint`` (:mod:`.transfers`); checkpoints and the final adapter
   go up by ``WorkerService.UploadCheckpoint``. The worker has no object store access.
2. Tokenizer, examples, hyperparameters ("auto" resolved), base model and adapter are loaded
   (:mod:`.preparation`).
3. ``ReportStarted`` (resolved method, total steps, training examples).
4. Training (:mod:`.training`). Metrics events every ``worker_metrics_interval_steps`` steps
   and at epoch ends. At each epoch end the adapter and the training state are uploaded to
   ``{output_prefix}checkpoints/step-{N}/{adapter,state}/``, then ``ReportCheckpoint``.
5. The final adapter is uploaded to ``{output_prefix}adapter/``, the results CSV with
   ``DatasetService.UploadFile`` (purpose FINE_TUNE_RESULTS); the trackers' runs are closed;
   then ``ReportSucceeded``, the attempt's last report (the heartbeats stop with it).

Directives: CANCEL stops at once and uploads nothing more; PAUSE saves and reports a checkpoint
(unless nothing was trained since the last one), then exits. Loading and training run in a
worker thread, so the event loop keeps the heartbeats going; from there, checkpoint uploads and
reports hop back onto the event loop and are waited for.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import structlog

from services.trainer.worker.checkpoints import checkpoint_location, final_adapter_prefix, save_state
from services.trainer.worker.config import WorkerSettings
from services.trainer.worker.lora import adapted_modules, save_adapter
from services.trainer.worker.preparation import Inputs, Prepared, prepare
from services.trainer.worker.progress import Stop, TrainerLink
from services.trainer.worker.results import RESULTS_FILENAME, metrics_event, metrics_proto
from services.trainer.worker.tracking import Trackers, job_trackers
from services.trainer.worker.training import StepReport, TrainingCancelled
from services.trainer.worker.transfers import (
    CheckpointLink,
    download_dataset_file,
    download_prefix,
    upload_checkpoint,
    upload_directory,
    upload_results_file,
)
from tailor.dataset.v1 import dataset_service_pb2_grpc
from tailor.trainer.v1 import worker_service_pb2

log = structlog.get_logger("tailor.worker")

T = TypeVar("T")


class _Stopped(Exception):
    """The link says stop; unwinds the attempt between phases."""


class JobAttempt:
    """One attempt at one job; :meth:`run` does steps 1-5 of the module docstring."""

    def __init__(
        self,
        settings: WorkerSettings,
        plan: worker_service_pb2.TrainingPlan,
        link: TrainerLink,
        checkpoints: CheckpointLink,
        datasets: dataset_service_pb2_grpc.DatasetServiceStub,
        scratch: Path,
    ) -> None:
        self.settings = settings
        self.plan = plan
        self.job = plan.job
        self.link = link
        self.checkpoints = checkpoints
        self.datasets = datasets
        self.scratch = scratch
        self._loop = asyncio.get_running_loop()
        self._last_checkpoint_step = -1

    async def run(self) -> None:
        """Train the job and report its outcome (raises what should become a ReportFailed)."""
        try:
            await self._run()
        except _Stopped:
            log.info("stopped", reason=self.link.stop.value if self.link.stop else None)

    async def _run(self) -> None:
        inputs = await self._download_inputs()
        self._check_stop()
        prepared = await asyncio.to_thread(
            prepare, self.settings, self.plan, inputs, post=self.link.post, should_cancel=self._cancelled
        )
        if prepared.resumed_step is not None:
            self._last_checkpoint_step = prepared.resumed_step
        self._check_stop()
        await self.link.started(
            prepared.hyperparameters.to_method(adapted_modules(prepared.model)),
            total_steps=prepared.loop.total_steps,
            training_examples=len(prepared.training),
        )
        trackers = job_trackers(self.job, self.settings, self.link.post)
        await asyncio.to_thread(trackers.start, self._tracked_config(prepared))
        failed = True
        try:
            if await asyncio.to_thread(self._train, prepared, trackers):
                await self._finish(prepared, trackers)
            failed = False  # finished, or stopped by a pause or cancel
        finally:
            await asyncio.to_thread(trackers.finish, failed=failed)  # the runs still open

    def _tracked_config(self, prepared: Prepared) -> dict[str, Any]:
        """What a tracker's run records as its config: the job, its resolved hyperparameters."""
        return {
            "job_id": self.job.id,
            "base_model": self.plan.base_model,
            "model": self.job.model,
            "training_file": self.job.training_file,
            "validation_file": self.job.validation_file or None,
            "suffix": self.job.suffix or None,
            "seed": self.job.seed,
            "total_steps": prepared.loop.total_steps,
            "hyperparameters": dataclasses.asdict(prepared.hyperparameters),
        }

    def _cancelled(self) -> bool:
        return self.link.stop is not None and self.link.stop.is_immediate

    def _check_stop(self) -> None:
        # A pause is handled by the training loop (checkpoint, then exit), and is moot once training is done.
        if self._cancelled():
            raise _Stopped

    # Step 1: inputs.

    async def _download_inputs(self) -> Inputs:
        training_path = await self._download_file(self.job.training_file, "training_file")
        validation_path = None
        if self.job.validation_file:
            validation_path = await self._download_file(self.job.validation_file, "validation_file")
        resume_dir = adapter_dir = None
        if self.plan.resume_from_uri:
            resume_dir = await download_prefix(
                self.checkpoints, self.plan.resume_from_uri, self.scratch / "resume"
            )
        if self.plan.initial_adapter_uri:
            adapter_dir = await download_prefix(
                self.checkpoints, self.plan.initial_adapter_uri, self.scratch / "initial"
            )
        return Inputs(training_path, validation_path, resume_dir, adapter_dir)

    async def _download_file(self, file_id: str, file_param: str) -> Path:
        path = self.scratch / f"{file_param}.jsonl"
        return await download_dataset_file(self.datasets, file_id, file_param, path)

    # Step 4: training (in a worker thread).

    def _train(self, prepared: Prepared, trackers: Trackers) -> bool:
        """Run the loop; True when training finished, False when it stopped early."""
        try:
            for report in prepared.loop.run():
                self.link.current_step = report.step
                prepared.results.record(report)
                trackers.log(report)
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
        self._await(upload_checkpoint(self.checkpoints, local, location))
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

    # Step 5: results.

    async def _finish(self, prepared: Prepared, trackers: Trackers) -> None:
        final = await asyncio.to_thread(self._save_adapter, prepared, self.scratch / "final-adapter")
        adapter_prefix = final_adapter_prefix(self.plan.output_prefix)
        await upload_directory(self.checkpoints, final, adapter_prefix)
        self._check_stop()
        results_file = await upload_results_file(self.datasets, RESULTS_FILENAME, prepared.results.to_csv())
        self._check_stop()
        # The trackers' runs end before the outcome is reported: what they say on closing (a run
        # written offline, an upload that failed) is then among the job's events, not refused after them.
        await asyncio.to_thread(trackers.finish, failed=False)
        await self.link.succeeded(
            adapter_uri=adapter_prefix,
            trained_tokens=prepared.loop.trained_tokens,
            result_files=[results_file],
            lora_rank=prepared.hyperparameters.lora_rank,
        )
        log.info("job succeeded", trained_tokens=prepared.loop.trained_tokens, steps=prepared.loop.step)
