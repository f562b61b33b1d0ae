"""A fine-tuning job's progress as one line of text: step/total, epoch, losses and time left.

Pure functions of what the API returned (the job and its ``metrics`` events), so the line
``tailor jobs follow`` draws is tested without a server or a terminal. The time left is
the job's own ``estimated_finish`` when the server gives one (Tailor does, from the pace
of the current attempt; OpenAI sometimes does), else the pace of the steps seen so far.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

MIN_BAR_WIDTH = 10
MAX_BAR_WIDTH = 30


@dataclass(frozen=True)
class StepSeen:
    """A step the job reported, and when (the metrics event's ``created_at``, Unix seconds)."""

    step: int
    at: float


@dataclass(frozen=True)
class Progress:
    """What is known of a job's training so far; None where nothing was reported yet.

    ``first`` and ``latest`` are the first and latest steps this follower saw: their pace
    gives the time left when the server gives no ``estimated_finish``.
    """

    status: str
    step: int | None = None
    total_steps: int | None = None
    epoch: int | None = None
    n_epochs: int | None = None
    train_loss: float | None = None
    valid_loss: float | None = None
    first: StepSeen | None = None
    latest: StepSeen | None = None

    def with_metrics(self, data: dict[str, Any], created_at: float) -> Progress:
        """The progress after one ``metrics`` event (its ``data`` as the API returns it).

        A validation loss is reported on some steps only: the last one stays shown.
        """
        step = data.get("step")
        seen = StepSeen(int(step), created_at) if isinstance(step, int) else None
        return replace(
            self,
            step=seen.step if seen else self.step,
            total_steps=data.get("total_steps", self.total_steps),
            epoch=data.get("epoch", self.epoch),
            train_loss=data.get("train_loss", self.train_loss),
            valid_loss=data.get("full_valid_loss", data.get("valid_loss", self.valid_loss)),
            first=self.first or seen,
            latest=seen or self.latest,
        )


def seconds_left(progress: Progress, now: float, estimated_finish: float | None) -> float | None:
    """Seconds until the job should finish, or None when nothing tells yet.

    The server's ``estimated_finish`` wins; otherwise the seconds per step between the
    first and latest steps seen, times the steps left, less the time since the latest.
    """
    if estimated_finish is not None:
        return max(0.0, estimated_finish - now)
    first, latest, total = progress.first, progress.latest, progress.total_steps
    if first is None or latest is None or total is None or latest.step <= first.step:
        return None
    per_step = (latest.at - first.at) / (latest.step - first.step)
    return max(0.0, per_step * (total - latest.step) - (now - latest.at))


def format_duration(seconds: float) -> str:
    """``45s``, ``3m05s``, ``1h02m``: short enough for a progress line."""
    whole = math.ceil(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def progress_bar(step: int, total: int, width: int) -> str:
    """``[#####-----]`` filled in proportion of ``step`` to ``total``, ``width`` cells inside."""
    filled = min(width, max(0, round(width * step / total))) if total > 0 else 0
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def format_progress(progress: Progress, eta_s: float | None, *, width: int | None = None) -> str:
    """One line: status, step/total (with a bar when ``width`` leaves room), epoch, losses, ETA.

    ``width`` is the terminal's; None draws no bar (plain lines for logs and pipes). The
    line never exceeds ``width``: the bar shrinks, then goes, then the line is cut.
    """
    fields = [progress.status]
    bar_slot = -1
    if progress.step is not None:
        total = progress.total_steps
        fields.append(f"step {progress.step}/{total}" if total else f"step {progress.step}")
        if total:
            bar_slot = len(fields)
            fields.append(f"{100 * progress.step / total:3.0f}%")
    elif progress.status in ("validating_files", "queued", "running"):
        fields.append("waiting for the first step")
    if progress.epoch is not None:
        of = f"/{progress.n_epochs}" if progress.n_epochs else ""
        fields.append(f"epoch {progress.epoch}{of}")
    if progress.train_loss is not None:
        fields.append(f"train loss {progress.train_loss:.4f}")
    if progress.valid_loss is not None:
        fields.append(f"valid loss {progress.valid_loss:.4f}")
    if eta_s is not None and progress.status in ("running", "queued"):
        fields.append(f"ETA {format_duration(eta_s)}")
    line = "  ".join(fields)
    if width is None:
        return line
    if bar_slot >= 0 and progress.step is not None and progress.total_steps:
        room = width - 1 - len(line) - len("  []")  # the last column stays free: no wrap
        if room >= MIN_BAR_WIDTH:
            bar = progress_bar(progress.step, progress.total_steps, min(MAX_BAR_WIDTH, room))
            line = "  ".join([*fields[:bar_slot], bar, *fields[bar_slot:]])
    return line[: max(0, width - 1)]


def n_epochs_of(hyperparameters: Any) -> int | None:
    """The job's epochs when known (``auto`` until the trainer resolves it)."""
    value = getattr(hyperparameters, "n_epochs", None)
    return value if isinstance(value, int) else None
