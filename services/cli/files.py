"""``tailor files validate | upload | list``: check a training file before uploading it, then upload it.

``validate`` runs the dataset service's own validator (:class:`JsonlValidator`, over the
rules of :mod:`services.common.training_format`) on the local file, so a file it passes
is one upload accepts, with the same line numbers and wording; with ``--method`` it also
asks the trainer's check of a job's training file (:func:`file_problem`: the format the
method trains on, the minimum number of examples). What it cannot check locally it says:
token counts and lengths depend on the base model's tokenizer, which the user's machine
may not have.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from services.cli.context import FAILED, OK, Cli, CliError, local_time
from services.common.training_format import ExampleFormat
from services.dataset.validation import JsonlValidator, ValidationResult

CHUNK_BYTES = 1 << 20
METHODS = {"sft": "supervised", "dpo": "dpo"}
NOT_CHECKED = (
    "Not checked locally: token counts and example lengths, which depend on the base model's "
    "tokenizer (the trainer truncates long examples and fails ones over the model's context)."
)


def register(resources: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    files = resources.add_parser("files", help="validate, upload and list training files")
    commands = files.add_subparsers(dest="command", required=True, metavar="COMMAND")

    validate = commands.add_parser(
        "validate", help="check a JSONL file locally with the dataset service's rules, before uploading"
    )
    validate.add_argument("file", type=Path, help="the JSONL file")
    validate.add_argument(
        "--method", choices=sorted(METHODS), help="also check it can train a job of this method"
    )
    validate.set_defaults(run=run_validate)

    upload = commands.add_parser("upload", help="upload a file and wait until it is processed")
    upload.add_argument("file", type=Path, help="the file to upload")
    upload.add_argument("--purpose", default="fine-tune", help="the file's purpose (default fine-tune)")
    upload.add_argument("--no-wait", action="store_true", help="return once uploaded, before processing")
    upload.set_defaults(run=run_upload)

    listing = commands.add_parser("list", help="list the organization's files")
    listing.add_argument("--purpose", help="only files of this purpose")
    listing.set_defaults(run=run_list)


def validate_file(path: Path) -> ValidationResult:
    """The dataset service's verdict on a local file, read in chunks (any size, bounded memory)."""
    validator = JsonlValidator()
    try:
        with path.open("rb") as file:
            while chunk := file.read(CHUNK_BYTES):
                validator.feed(chunk)
    except OSError as error:
        raise CliError(f"cannot read {path}: {error.strerror or error}") from None
    return validator.finish()


def method_problem(path: Path, result: ValidationResult, method: str) -> str | None:
    """Why a valid file cannot be a ``method`` job's training file, in the trainer's words; None if it can."""
    from services.trainer.file_checks import TRAINING_FILE, file_problem
    from tailor.dataset.v1 import dataset_service_pb2 as dataset_pb2
    from tailor.trainer.v1 import job_pb2

    assert result.statistics is not None
    statistics = result.statistics
    file = dataset_pb2.File(
        id=path.name,
        purpose=dataset_pb2.FILE_PURPOSE_FINE_TUNE,
        status=dataset_pb2.FILE_STATUS_PROCESSED,
        statistics=dataset_pb2.FileStatistics(
            format=dataset_pb2.ExampleFormat.Value(f"EXAMPLE_FORMAT_{statistics.format.name}"),
            examples=statistics.examples,
        ),
    )
    method_type = job_pb2.MethodType.Value(f"METHOD_TYPE_{METHODS[method].upper()}")
    problem = file_problem(file, TRAINING_FILE, method_type)
    return problem.message if problem else None


def run_validate(args: argparse.Namespace, cli: Cli) -> int:
    result = validate_file(args.file)
    problem = method_problem(args.file, result, args.method) if args.method and result.valid else None
    valid = result.valid and problem is None
    if cli.json:
        cli.emit(_validation_json(args.file, result, args.method, problem))
        return OK if valid else FAILED
    if not result.valid:
        many = "problem" if result.problem_count == 1 else "problems"
        cli.print(f"{args.file}: invalid, {result.problem_count} {many} in {result.lines} lines")
        for each in result.problems:
            cli.print(f"  {each}")
        if result.problem_count > len(result.problems):
            cli.print(f"  ... and {result.problem_count - len(result.problems)} more")
        return FAILED
    stats = result.statistics
    assert stats is not None
    verdict = f"valid, but not a {args.method} training file: {problem}\n  " if problem else "valid, "
    trained = "outputs" if stats.format is ExampleFormat.PREFERENCE else "messages"
    cli.print(
        f"{args.file}: {verdict}{stats.examples} {stats.format.label} examples "
        f"({stats.trained_messages} trained {trained}, {stats.characters} characters) in {result.lines} lines"
    )
    cli.print(NOT_CHECKED)
    return OK if valid else FAILED


def _validation_json(
    path: Path, result: ValidationResult, method: str | None, problem: str | None
) -> dict[str, Any]:
    stats = result.statistics
    return {
        "file": str(path),
        "valid": result.valid and problem is None,
        "lines": result.lines,
        "problem_count": result.problem_count,
        "problems": [{"line": p.line, "code": p.code, "message": p.message} for p in result.problems],
        "statistics": None
        if stats is None
        else {
            "format": stats.format.value,
            "examples": stats.examples,
            "messages": stats.messages,
            "characters": stats.characters,
            "trained_messages": stats.trained_messages,
        },
        "method": method,
        "method_problem": problem,
        "not_checked": NOT_CHECKED,
    }


def upload(cli: Cli, path: Path, purpose: str = "fine-tune", *, wait: bool = True) -> Any:
    """Upload ``path``; wait for the dataset service's verdict unless told not to. Returns the file."""
    try:
        with path.open("rb") as content:
            uploaded = cli.client.files.create(file=content, purpose=purpose)  # type: ignore[arg-type]
    except OSError as error:
        raise CliError(f"cannot read {path}: {error.strerror or error}") from None
    if wait and uploaded.status not in ("processed", "error"):
        uploaded = cli.client.files.wait_for_processing(uploaded.id, poll_interval=0.5)
    return uploaded


def run_upload(args: argparse.Namespace, cli: Cli) -> int:
    uploaded = upload(cli, args.file, args.purpose, wait=not args.no_wait)
    refused = uploaded.status == "error"
    if cli.json:
        cli.emit(uploaded)
    elif refused:
        cli.print(f"{uploaded.id}: refused: {uploaded.status_details}")
    else:
        cli.print(f"{uploaded.id}: {uploaded.bytes} bytes, {uploaded.status}")
    return FAILED if refused else OK


def run_list(args: argparse.Namespace, cli: Cli) -> int:
    options = {"purpose": args.purpose} if args.purpose else {}
    files = list(cli.client.files.list(**options))
    if cli.json:
        cli.emit_list(files)
        return OK
    rows = [(f.id, f.filename, f.purpose, f.status, f.bytes, local_time(f.created_at)) for f in files]
    cli.table(rows, ("ID", "FILENAME", "PURPOSE", "STATUS", "BYTES", "CREATED"))
    return OK
