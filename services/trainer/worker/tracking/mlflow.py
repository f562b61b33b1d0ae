"""A job's MLflow run (Tailor's ``mlflow`` integration; docs/integrations.md).

The run is created in the integration's experiment (created when missing) on its tracking
server, through an ``MlflowClient`` bound to that URI: nothing of mlflow's process-wide
"active run" state is used. Its params are the job's resolved hyperparameters, its tags say
which job it is, and every optimizer step is one ``log_batch`` at MLflow step = the job's step.

A paused or resumed job, or one retried from a checkpoint, continues the same run: each run
carries the tags ``tailor.job_id`` and ``tailor.integration`` (the item's index among the
job's mlflow integrations), and a later attempt finds it by them. The server is the one home
of that link, so no id needs to travel in checkpoints or events.

mlflow retries a failing request for minutes by default; the worker bounds each call to
``worker_mlflow_request_timeout_s`` and ``worker_mlflow_request_retries`` so that a server
that goes away stalls training for seconds before the tracker is dropped. mlflow's usage
telemetry is off. Credentials, when
the organization has some, arrive as mlflow's own ``MLFLOW_TRACKING_TOKEN`` or
``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` in the worker's environment.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog

from services.trainer.worker.results import message_event
from services.trainer.worker.tracking.trackers import Post, default_tags
from tailor.trainer.v1 import job_pb2

log = structlog.get_logger("tailor.worker.tracking.mlflow")

JOB_TAG = "tailor.job_id"
INTEGRATION_TAG = "tailor.integration"
# MLflow refuses longer param values.
MAX_PARAM_VALUE_LENGTH = 6000


class MlflowTracker:
    """One MLflow run of one job."""

    def __init__(
        self,
        job: job_pb2.Job,
        integration: job_pb2.MlflowIntegration,
        index: int,
        post: Post,
        *,
        request_timeout_s: int,
        request_retries: int,
    ) -> None:
        self._job = job
        self._integration = integration
        self._index = str(index)
        self._post = post
        self._environment = {
            "MLFLOW_HTTP_REQUEST_TIMEOUT": str(request_timeout_s),
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(request_retries),
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
            # mlflow would otherwise report usage to mlflow.org from the worker, at import and per call
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }
        self._client: Any = None
        self._run_id: str | None = None
        self.description = (
            f"MLflow reporting to experiment {integration.experiment_name!r} on {integration.tracking_uri}"
        )

    def start(self, config: dict[str, Any]) -> None:
        """Finds the job's run from an earlier attempt or creates it, then records the params."""
        integration = self._integration
        with self._bounded_requests():
            from mlflow import MlflowClient  # imported only by jobs that ask for it, telemetry off

            client = MlflowClient(tracking_uri=integration.tracking_uri)
            experiment_id = self._experiment_id(client)
            run = self._earlier_run(client, experiment_id)
            resumed = run is not None
            if run is None:
                run = client.create_run(
                    experiment_id, run_name=integration.run_name or self._job.id, tags=self._tags()
                )
            else:
                client.update_run(run.info.run_id, status="RUNNING")
            self._client, self._run_id = client, run.info.run_id
            # Params cannot change once logged; an earlier attempt's are kept as they are.
            params = {
                name: value for name, value in run_params(config).items() if name not in run.data.params
            }
            self._log_batch(params=params)
        log.info("mlflow run started", run_id=self._run_id, resumed=resumed)
        self._post(
            message_event(
                f"Reporting metrics to MLflow experiment {integration.experiment_name!r} on "
                f"{integration.tracking_uri}, run {self._run_id}"
                + (" (continued)." if resumed else ".")
            )
        )

    def log(self, values: dict[str, float | int], step: int) -> None:
        timestamp = int(time.time() * 1000)
        with self._bounded_requests():
            self._log_batch(metrics={name: (float(value), timestamp, step) for name, value in values.items()})

    def finish(self, *, failed: bool) -> None:
        with self._bounded_requests():
            self._client.set_terminated(self._run_id, status="FAILED" if failed else "FINISHED")
        self._client = None

    def abandon(self) -> None:
        """Nothing to close: a run left RUNNING on a server that failed is the server's to settle."""
        self._client = None

    def _experiment_id(self, client: Any) -> str:
        from mlflow.exceptions import MlflowException

        name = self._integration.experiment_name
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        try:
            return client.create_experiment(name)
        except MlflowException:  # created meanwhile by another job
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
            return experiment.experiment_id

    def _earlier_run(self, client: Any, experiment_id: str) -> Any:
        found = client.search_runs(
            [experiment_id],
            filter_string=(
                f"tags.`{JOB_TAG}` = '{self._job.id}' and tags.`{INTEGRATION_TAG}` = '{self._index}'"
            ),
            max_results=1,
        )
        return found[0] if found else None

    def _tags(self) -> dict[str, str]:
        job = self._job
        tags = {
            JOB_TAG: job.id,
            INTEGRATION_TAG: self._index,
            "tailor.base_model": job.base_model,
            "tailor.training_file": job.training_file,
            "tailor.validation_file": job.validation_file,
            # W&B's default tags, as one value: "tailor/finetune, tailor/{base model}, tailor/{job id}"
            "tailor.tags": ", ".join(default_tags(job)),
        }
        return {name: value for name, value in tags.items() if value}

    def _log_batch(
        self,
        *,
        params: dict[str, str] | None = None,
        metrics: dict[str, tuple[float, int, int]] | None = None,
    ) -> None:
        from mlflow.entities import Metric, Param

        param_list = [Param(name, value) for name, value in (params or {}).items()]
        metric_list = [
            Metric(name, value, timestamp, step)
            for name, (value, timestamp, step) in (metrics or {}).items()
            if math.isfinite(value)  # MLflow stores NaN, but a diverged loss is the job's events' to tell
        ]
        # MLflow takes at most 100 params per batch.
        for start in range(0, max(len(param_list), 1), 100):
            self._client.log_batch(
                self._run_id,
                metrics=metric_list if start == 0 else [],
                params=param_list[start : start + 100],
            )

    @contextmanager
    def _bounded_requests(self) -> Iterator[None]:
        """mlflow reads its request limits from the environment at each request; an operator's own win.

        Set only around mlflow's calls, which the training thread makes one at a time.
        """
        added = {name: value for name, value in self._environment.items() if name not in os.environ}
        os.environ.update(added)
        try:
            yield
        finally:
            for name in added:
                os.environ.pop(name, None)


def run_params(config: dict[str, Any]) -> dict[str, str]:
    """The run's params: the resolved hyperparameters under their names, the job's fields as ``job.*``."""
    params = {f"job.{name}": value for name, value in config.items() if name != "hyperparameters"}
    params.update(config.get("hyperparameters", {}))
    return {name: str(value)[:MAX_PARAM_VALUE_LENGTH] for name, value in params.items() if value is not None}
