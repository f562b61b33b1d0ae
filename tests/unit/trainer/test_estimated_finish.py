"""estimated_finish from the steps workers report: null until measurable, the recent pace, null after.

Times are given, not measured: ``note_progress`` takes the wall clock as an argument.
"""

from __future__ import annotations

from services.trainer.lifecycle import PACE_WINDOW_S, Action, apply, clear_progress, note_progress
from services.trainer.records import JobRecord, Status


class _Session:
    def add(self, row: object) -> None:
        pass


def running_job(total_steps: int = 100) -> JobRecord:
    job = JobRecord(id="ftjob-x", organization_id="org-a", status=Status.RUNNING, total_steps=total_steps)
    clear_progress(job)
    return job


def test_an_attempts_first_report_gives_no_estimate_and_its_second_the_pace_times_the_steps_left() -> None:
    job = running_job()
    note_progress(job, 10, 1000.0)
    assert job.estimated_finish is None and job.current_step == 10
    note_progress(job, 20, 1020.0)  # 2 s a step, 80 steps left
    assert job.estimated_finish == 1020 + 160


def test_a_pace_change_shows_within_a_few_windows_while_a_slow_start_fades() -> None:
    job = running_job(total_steps=10_000)
    note_progress(job, 0, 0.0)
    wall, step = 0.0, 0
    for _ in range(100):  # 10 s a step at first (a slow start) ...
        step, wall = step + 1, wall + 10.0
        note_progress(job, step, wall)
    for _ in range(2000):  # ... then 1 s a step, reported every step
        step, wall = step + 1, wall + 1.0
        note_progress(job, step, wall)
    seconds_per_step = (job.estimated_finish - wall) / (10_000 - step)
    assert 1.0 <= seconds_per_step < 1.1  # an attempt-wide average would say 1.43
    assert wall - job.pace_start_time <= PACE_WINDOW_S + 1


def test_pause_resume_and_the_end_clear_the_estimate_until_the_new_attempt_measures_its_own() -> None:
    job, session = running_job(), _Session()
    note_progress(job, 10, 1000.0)
    note_progress(job, 20, 1020.0)
    apply(session, job, Action.PAUSE)  # type: ignore[arg-type]
    assert job.estimated_finish is None
    note_progress(job, 21, 1030.0)  # the pausing worker's last report: paused jobs get no estimate
    assert job.estimated_finish is None
    apply(session, job, Action.RESUME)  # type: ignore[arg-type]
    assert job.status == Status.QUEUED and job.estimated_finish is None and job.pace_start_step is None

    job.status = Status.RUNNING  # the new attempt: its own pace, from its first report
    note_progress(job, 21, 5000.0)
    assert job.estimated_finish is None
    note_progress(job, 31, 5010.0)
    assert job.estimated_finish == 5010 + 69
    apply(session, job, Action.SUCCEED)  # type: ignore[arg-type]
    assert job.estimated_finish is None
