"""Waiting for fine-tuning jobs through the SDK: the one polling loop of the end-to-end tests."""

from __future__ import annotations

import time
from typing import Any

import openai
from openai.types.fine_tuning import FineTuningJob

# A tiny model's job on a busy 2-core machine; generous, since a stuck job fails anyway.
TRAINING_TIMEOUT_S = 420
ENDED = ("succeeded", "failed", "cancelled")


def wait_until_ended(
    client: openai.OpenAI, job: FineTuningJob, timeout_s: float = TRAINING_TIMEOUT_S
) -> FineTuningJob:
    """``job`` polled each second until it has ended; fails the test when it has not within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while job.status not in ENDED:
        assert time.monotonic() < deadline, f"job {job.id} still {job.status} after {timeout_s}s"
        time.sleep(1)
        job = client.fine_tuning.jobs.retrieve(job.id)
    return job


def wait_until_succeeded(client: openai.OpenAI, job: FineTuningJob) -> FineTuningJob:
    """``job`` once it has ended, which must be a success (the job's error is the failure's message)."""
    job = wait_until_ended(client, job)
    assert job.status == "succeeded", job.error
    return job


def fine_tune(client: openai.OpenAI, model: str, training_file: str, **options: Any) -> FineTuningJob:
    """Creates a job with ``options`` (suffix, seed, hyperparameters, ...) and waits for its success."""
    job = client.fine_tuning.jobs.create(model=model, training_file=training_file, **options)
    job = wait_until_succeeded(client, job)
    assert job.fine_tuned_model, job
    return job
