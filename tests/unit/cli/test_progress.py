"""The line ``tailor jobs follow`` draws: what a user reads of a job's step, epoch, losses and time left."""

from __future__ import annotations

from services.cli.progress import (
    Progress,
    format_duration,
    format_progress,
    n_epochs_of,
    progress_bar,
    seconds_left,
)


def running(**metrics: object) -> Progress:
    return Progress("running", n_epochs=2).with_metrics(metrics, created_at=100.0)


def test_a_step_shows_step_total_percent_epoch_and_losses() -> None:
    progress = running(step=3, total_steps=12, epoch=1, train_loss=1.23456, valid_loss=2.5)
    assert format_progress(progress, 65) == (
        "running  step 3/12   25%  epoch 1/2  train loss 1.2346  valid loss 2.5000  ETA 1m05s"
    )


def test_the_last_validation_loss_stays_when_a_step_reports_none() -> None:
    progress = running(step=3, total_steps=12, valid_loss=2.5).with_metrics(
        {"step": 4, "total_steps": 12, "train_loss": 1.0}, created_at=101.0
    )
    assert (progress.step, progress.train_loss, progress.valid_loss) == (4, 1.0, 2.5)


def test_the_full_validation_loss_is_preferred_to_the_batch_one() -> None:
    progress = running(step=6, valid_loss=2.5, full_valid_loss=2.0)
    assert progress.valid_loss == 2.0


def test_before_the_first_step_the_line_says_it_waits() -> None:
    assert format_progress(Progress("queued"), None) == "queued  waiting for the first step"


def test_a_finished_job_shows_no_eta() -> None:
    progress = running(step=12, total_steps=12, train_loss=0.5)
    line = format_progress(Progress(**{**progress.__dict__, "status": "succeeded"}), 0.0)
    assert line.startswith("succeeded  step 12/12  100%") and "ETA" not in line


def test_in_a_terminal_a_bar_fits_the_width_and_the_line_never_wraps() -> None:
    progress = running(step=5, total_steps=10, epoch=1, train_loss=1.0)
    wide = format_progress(progress, 30, width=120)
    assert "[" + "#" * 15 + "-" * 15 + "]" in wide and len(wide) < 120
    fitted = format_progress(progress, 30, width=80)
    assert len(fitted) == 79 and fitted.endswith("ETA 30s") and "[#" in fitted
    narrow = format_progress(progress, 30, width=40)
    assert "[" not in narrow and len(narrow) == 39


def test_the_bar_is_filled_in_proportion_and_never_overflows() -> None:
    assert progress_bar(0, 10, 10) == "[----------]"
    assert progress_bar(3, 10, 10) == "[###-------]"
    assert progress_bar(15, 10, 10) == "[##########]"
    assert progress_bar(1, 0, 4) == "[----]"


def test_the_servers_estimated_finish_wins() -> None:
    progress = running(step=2, total_steps=10)
    assert seconds_left(progress, now=1000.0, estimated_finish=1090) == 90.0
    assert seconds_left(progress, now=1100.0, estimated_finish=1090) == 0.0


def test_without_an_estimate_the_pace_of_the_steps_seen_gives_the_time_left() -> None:
    progress = Progress("running").with_metrics({"step": 2, "total_steps": 10}, 100.0)
    assert seconds_left(progress, now=100.0, estimated_finish=None) is None  # one step: no pace yet
    progress = progress.with_metrics({"step": 4, "total_steps": 10}, 110.0)  # 5 s a step, 6 steps left
    assert seconds_left(progress, now=110.0, estimated_finish=None) == 30.0
    assert seconds_left(progress, now=125.0, estimated_finish=None) == 15.0
    assert seconds_left(progress, now=200.0, estimated_finish=None) == 0.0


def test_durations_are_short() -> None:
    assert [format_duration(s) for s in (0, 4.2, 59, 60, 185, 3600, 3725)] == [
        "0s", "5s", "59s", "1m00s", "3m05s", "1h00m", "1h02m",
    ]


def test_epochs_are_known_once_resolved() -> None:
    class Hyperparameters:
        def __init__(self, n_epochs: object) -> None:
            self.n_epochs = n_epochs

    assert n_epochs_of(Hyperparameters(3)) == 3
    assert n_epochs_of(Hyperparameters("auto")) is None
    assert n_epochs_of(None) is None
