"""``tailor jobs create | list | show | follow | cancel | pause | resume``: fine-tuning jobs.

``follow`` is the reason this module exists: it polls the job and its events (the only
progress the API offers, the same way on Tailor and OpenAI) and draws one live line, step
and epoch, train and validation loss, time left, redrawn in a terminal and printed as
plain lines in a log or a pipe; the job's message events are printed as they come. It
exits with the job's outcome, so ``tailor jobs follow JOB && deploy`` does what it reads.

``create --training-file`` takes a file id, or a local path that it uploads first (and
stops if the dataset service refuses it), so one command goes from a JSONL file to a job.
"""

from __future__ import annotations

import argparse
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from services.cli.context import CANCELLED, FAILED, INTERRUPTED, OK, Cli, CliError, local_time
from services.cli.files import METHODS, upload
from services.cli.progress import Progress, format_progress, n_epochs_of, seconds_left

TERMINAL = ("succeeded", "failed", "cancelled")
EVENTS_PER_POLL = 100  # the API's page limit; older unseen events of a long gap are skipped


def register(resources: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    jobs = resources.add_parser("jobs", help="create, follow and control fine-tuning jobs")
    commands = jobs.add_subparsers(dest="command", required=True, metavar="COMMAND")

    create = commands.add_parser("create", help="start a fine-tuning job")
    create.add_argument("--model", required=True, help="the base model to fine-tune")
    create.add_argument("--training-file", required=True, help="a file id, or a local JSONL file to upload")
    create.add_argument("--validation-file", help="a file id, or a local JSONL file to upload")
    create.add_argument("--suffix", help="up to 64 characters in the fine-tuned model's name")
    create.add_argument("--method", choices=sorted(METHODS), default="sft", help="sft (default) or dpo")
    create.add_argument("--n-epochs", type=_auto(int), help="passes over the training file, or auto")
    create.add_argument("--batch-size", type=_auto(int), help="examples per step, or auto")
    create.add_argument("--learning-rate-multiplier", type=_auto(float), help="a number, or auto")
    create.add_argument("--beta", type=_auto(float), help="DPO's KL penalty strength, or auto")
    create.add_argument("--seed", type=int, help="for a reproducible job")
    create.add_argument("--follow", action="store_true", help="then follow it, as `jobs follow` does")
    _add_poll(create)
    create.set_defaults(run=run_create)

    listing = commands.add_parser("list", help="list jobs, newest first")
    listing.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    listing.set_defaults(run=run_list)

    for name, help_text in (
        ("show", "show a job"),
        ("cancel", "cancel a job"),
        ("pause", "pause a job after its next checkpoint"),
        ("resume", "resume a paused job from its last checkpoint"),
    ):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("job", help="the job's id (ftjob-...)")
        command.set_defaults(run=run_action, action=name)

    follow_parser = commands.add_parser(
        "follow", help="draw a job's progress until it ends; exit 0 if it succeeded"
    )
    follow_parser.add_argument("job", help="the job's id (ftjob-...)")
    _add_poll(follow_parser)
    follow_parser.set_defaults(run=run_follow)


def _add_poll(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--poll", type=float, default=2.0, help="seconds between polls (default 2)")


_NUMBER_NAMES = {int: "a whole number", float: "a number"}


def _auto(kind: type) -> Any:
    """An argparse type taking a number or the word ``auto``."""

    def parse(text: str) -> Any:
        if text == "auto":
            return text
        try:
            return kind(text)
        except ValueError:
            expected = f"expected {_NUMBER_NAMES[kind]} or auto, got {text!r}"
            raise argparse.ArgumentTypeError(expected) from None

    return parse


def method_body(args: argparse.Namespace) -> dict[str, Any]:
    """The request's ``method``: its type and the hyperparameters given on the command line."""
    method_type = METHODS[args.method]
    names = ["n_epochs", "batch_size", "learning_rate_multiplier"]
    names += ["beta"] if method_type == "dpo" else []
    hyperparameters = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    if args.beta is not None and method_type != "dpo":
        raise CliError("--beta is a DPO hyperparameter: add --method dpo")
    body: dict[str, Any] = {"type": method_type}
    if hyperparameters:
        body[method_type] = {"hyperparameters": hyperparameters}
    return body


def _file_id(cli: Cli, given: str) -> str:
    """``given`` itself when it is a file id; the id of the upload when it names a local file."""
    path = Path(given)
    if not path.is_file():
        return given
    uploaded = upload(cli, path)
    if uploaded.status == "error":
        raise CliError(f"{path} was refused: {uploaded.status_details}")
    cli.note(f"uploaded {path} as {uploaded.id}")
    return str(uploaded.id)


def run_create(args: argparse.Namespace, cli: Cli) -> int:
    method = method_body(args)
    options: dict[str, Any] = {}
    if args.validation_file:
        options["validation_file"] = _file_id(cli, args.validation_file)
    for name in ("suffix", "seed"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    training_file = _file_id(cli, args.training_file)
    job = cli.client.fine_tuning.jobs.create(
        model=args.model, training_file=training_file, method=method, **options  # type: ignore[arg-type]
    )
    if cli.json:
        cli.emit(job)
    else:
        cli.print(f"{job.id}: {job.status}")
    return follow(cli, job.id, args.poll) if args.follow else OK


def run_list(args: argparse.Namespace, cli: Cli) -> int:
    jobs = cli.client.fine_tuning.jobs.list(limit=args.limit).data
    if cli.json:
        cli.emit_list(jobs)
        return OK
    rows = [(j.id, j.status, j.model, j.fine_tuned_model, local_time(j.created_at)) for j in jobs]
    cli.table(rows, ("ID", "STATUS", "MODEL", "FINE-TUNED MODEL", "CREATED"))
    return OK


def run_action(args: argparse.Namespace, cli: Cli) -> int:
    jobs = cli.client.fine_tuning.jobs
    act = {"show": jobs.retrieve, "cancel": jobs.cancel, "pause": jobs.pause, "resume": jobs.resume}
    job = act[args.action](args.job)
    if cli.json:
        cli.emit(job)
    elif args.action == "show":
        _describe(cli, job)
    else:
        cli.print(f"{job.id}: {job.status}")
    return OK


def _describe(cli: Cli, job: Any) -> None:
    hyperparameters = job.hyperparameters.to_dict() if job.hyperparameters else {}
    rows = [
        ("status", job.status),
        ("model", job.model),
        ("fine-tuned model", job.fine_tuned_model),
        ("training file", job.training_file),
        ("validation file", job.validation_file),
        ("hyperparameters", ", ".join(f"{k}={v}" for k, v in hyperparameters.items())),
        ("trained tokens", job.trained_tokens),
        ("created", local_time(job.created_at)),
        ("finished", local_time(job.finished_at)),
        ("error", job.error.message if job.error else None),
    ]
    cli.print(job.id)
    for name, value in rows:
        if value not in (None, ""):
            cli.print(f"  {name + ':':18}{value}")


def run_follow(args: argparse.Namespace, cli: Cli) -> int:
    return follow(cli, args.job, args.poll)


def follow(cli: Cli, job_id: str, poll_s: float) -> int:
    """Show the job's progress and events until it ends; its outcome as an exit code."""
    try:
        return _follow(cli, job_id, poll_s)
    except KeyboardInterrupt:
        cli.note(f"\nstopped following; {job_id} goes on (`tailor jobs cancel {job_id}` stops it)")
        return INTERRUPTED


def _follow(cli: Cli, job_id: str, poll_s: float) -> int:
    jobs = cli.client.fine_tuning.jobs
    live = not cli.json and cli.out.isatty()
    seen: set[str] = set()
    progress: Progress | None = None
    while True:
        job = jobs.retrieve(job_id)
        events = jobs.list_events(job_id, limit=EVENTS_PER_POLL).data
        progress = replace(
            progress or Progress(job.status), status=job.status, n_epochs=n_epochs_of(job.hyperparameters)
        )
        for event in reversed(events):  # the API lists newest first
            if event.id in seen:
                continue
            seen.add(event.id)
            if event.type == "metrics" and isinstance(event.data, dict):
                progress = progress.with_metrics(event.data, event.created_at)
            if cli.json:
                cli.emit(event)
            elif event.type == "metrics" and not live:
                eta = seconds_left(progress, event.created_at, job.estimated_finish)
                cli.print(format_progress(progress, eta))
            elif event.type != "metrics":
                stamp = time.strftime("%H:%M:%S", time.localtime(event.created_at))
                _print_above(cli, f"{stamp} {event.level:5} {event.message}", live)
        if live:
            width = shutil.get_terminal_size().columns
            eta = seconds_left(progress, time.time(), job.estimated_finish)
            cli.print("\r\x1b[K" + format_progress(progress, eta, width=width), end="")
        if job.status in TERMINAL:
            if live:
                cli.print()
            return _outcome(cli, job)
        time.sleep(poll_s)


def _print_above(cli: Cli, text: str, live: bool) -> None:
    """A line above the live progress line (which the next poll redraws)."""
    cli.print(("\r\x1b[K" if live else "") + text)


def _outcome(cli: Cli, job: Any) -> int:
    if cli.json:
        cli.emit(job)
    if job.status == "succeeded":
        if not cli.json:
            took = (job.finished_at or job.created_at) - job.created_at
            cli.print(f"succeeded in {took}s: {job.fine_tuned_model} ({job.trained_tokens} trained tokens)")
        return OK
    if job.status == "cancelled":
        cli.note(f"error: {job.id} was cancelled")
        return CANCELLED
    error = job.error
    reason = (error.message + (f" ({error.code})" if error.code else "")) if error else "no reason given"
    cli.note(f"error: {job.id} failed: {reason}")
    return FAILED
