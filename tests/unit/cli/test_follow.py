"""``tailor jobs follow`` off a terminal: plain lines a log keeps, and the job's outcome as the exit code.

The API is a scripted fake returning the SDK's own objects, poll after poll, so each test
reads exactly what a user's log would hold for a job that succeeds, fails or is cancelled.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any

from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent

from services.cli.context import CANCELLED, FAILED, OK, Cli
from services.cli.jobs import follow

JOB_ID = "ftjob-abc"


def job(status: str, **fields: Any) -> FineTuningJob:
    return FineTuningJob.model_validate(
        {
            "id": JOB_ID, "object": "fine_tuning.job", "created_at": 1000, "model": "tailor-tiny",
            "organization_id": "org-a", "result_files": [], "seed": 1, "status": status,
            "training_file": "file-1", "hyperparameters": {"n_epochs": 2}, **fields,
        }
    )  # fmt: skip


def message(number: int, text: str, level: str = "info") -> FineTuningJobEvent:
    return FineTuningJobEvent.model_validate(
        {"id": f"ev-{number}", "object": "fine_tuning.job.event", "created_at": 1000 + number,
         "level": level, "message": text, "type": "message"}
    )  # fmt: skip


def metrics(number: int, **data: object) -> FineTuningJobEvent:
    return FineTuningJobEvent.model_validate(
        {"id": f"ev-{number}", "object": "fine_tuning.job.event", "created_at": 1000 + number,
         "level": "info", "message": f"Step {data['step']}", "type": "metrics", "data": data}
    )  # fmt: skip


@dataclass
class Page:
    data: list[FineTuningJobEvent]


@dataclass
class ScriptedJobs:
    """Each poll returns the next (job, events so far) pair; events newest first, as the API lists them."""

    polls: list[tuple[FineTuningJob, list[FineTuningJobEvent]]]
    current: int = field(default=-1)

    def retrieve(self, job_id: str) -> FineTuningJob:
        assert job_id == JOB_ID
        self.current = min(self.current + 1, len(self.polls) - 1)
        return self.polls[self.current][0]

    def list_events(self, job_id: str, limit: int) -> Page:
        return Page(list(reversed(self.polls[self.current][1])))


def run(
    polls: list[tuple[FineTuningJob, list[FineTuningJobEvent]]], *, as_json: bool = False
) -> tuple[int, str, str]:
    jobs = ScriptedJobs(polls)
    client = type("Client", (), {"fine_tuning": type("FineTuning", (), {"jobs": jobs})()})()
    out, err = io.StringIO(), io.StringIO()
    cli = Cli(json=as_json, out=out, err=err, _client=client)  # type: ignore[arg-type]
    code = follow(cli, JOB_ID, poll_s=0)
    return code, out.getvalue(), err.getvalue()


TRAINING = [
    message(1, "Created fine-tuning job"),
    metrics(2, step=1, total_steps=4, epoch=1, train_loss=2.5),
    metrics(3, step=2, total_steps=4, epoch=1, train_loss=2.0, valid_loss=2.2),
]


def test_each_step_is_one_plain_line_and_success_exits_0() -> None:
    done = job("succeeded", fine_tuned_model="ft:tailor-tiny:org-a::x1", finished_at=1030, trained_tokens=99)
    code, out, _ = run([(job("running"), TRAINING[:2]), (job("running"), TRAINING), (done, TRAINING)])
    lines = out.splitlines()
    assert code == OK
    assert lines[0].endswith("info  Created fine-tuning job")
    assert lines[1] == "running  step 1/4   25%  epoch 1/2  train loss 2.5000"
    assert lines[2] == "running  step 2/4   50%  epoch 1/2  train loss 2.0000  valid loss 2.2000  ETA 2s"
    assert lines[-1] == "succeeded in 30s: ft:tailor-tiny:org-a::x1 (99 trained tokens)"
    assert len(lines) == 4  # an event seen on an earlier poll is not printed again
    assert "\x1b" not in out and "\r" not in out


def test_a_failed_job_prints_its_error_and_exits_1() -> None:
    error = {"code": "invalid_training_file", "message": "line 3 is bad.", "param": None}
    failed = job("failed", error=error)
    code, out, err = run([(failed, TRAINING[:1])])
    assert code == FAILED
    assert err == "error: ftjob-abc failed: line 3 is bad. (invalid_training_file)\n"


def test_a_cancelled_job_exits_3() -> None:
    code, _, err = run([(job("running"), TRAINING[:2]), (job("cancelled"), TRAINING[:2])])
    assert code == CANCELLED and "was cancelled" in err


def test_json_is_each_event_then_the_final_job() -> None:
    done = job("succeeded", fine_tuned_model="ft:tailor-tiny:org-a::x1")
    code, out, _ = run([(done, TRAINING)], as_json=True)
    objects = [json.loads(line) for line in out.splitlines()]
    assert code == OK
    assert [o["object"] for o in objects] == ["fine_tuning.job.event"] * 3 + ["fine_tuning.job"]
    assert objects[2]["data"]["valid_loss"] == 2.2 and objects[-1]["status"] == "succeeded"
