"""The installed ``tailor`` command against the running platform, run as a user runs it: a subprocess.

The script under test is the one ``pip install -e .`` put beside the tests' Python
(``.venv/bin/tailor``), with the API given the standard way (``OPENAI_BASE_URL`` /
``OPENAI_API_KEY``). One tiny job is trained for the module (the examples of
test_fine_tuning_flow, one epoch, with a validation file so a validation loss shows):
the tests then read what each command printed and its exit code, in file order; the
last ones delete the model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import KEY_A, Stack
from tests.e2e.test_fine_tuning_flow import BASE_MODEL, EXAMPLES, TRAINING_TIMEOUT_S
from tests.support.processes import free_port

pytestmark = pytest.mark.slow

TAILOR = Path(sys.executable).with_name("tailor")
COMMAND_TIMEOUT_S = 120


@dataclass
class Ran:
    """What a command printed, and how it exited."""

    code: int
    out: str
    err: str

    def json(self) -> object:
        return json.loads(self.out)


def tailor(
    stack: Stack, *args: str, key: str = KEY_A, stdin: str | None = None, timeout: float = COMMAND_TIMEOUT_S
) -> Ran:
    assert TAILOR.exists(), f"{TAILOR} is missing: reinstall the package (pip install --no-deps -e .)"
    environment = {**os.environ, "OPENAI_BASE_URL": f"{stack.url}/v1", "OPENAI_API_KEY": key}
    result = subprocess.run(
        [str(TAILOR), *args], env=environment, input=stdin, capture_output=True, text=True, timeout=timeout
    )
    return Ran(result.returncode, result.stdout, result.stderr)


def write_examples(path: Path, examples: list[dict[str, object]]) -> Path:
    path.write_text("\n".join(json.dumps(example) for example in examples) + "\n")
    return path


@dataclass
class Followed:
    """The module's job, created and followed through the CLI."""

    training_file: str
    job: dict[str, object]
    follow: Ran


@pytest.fixture(scope="module")
def followed(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Followed:
    folder = tmp_path_factory.mktemp("cli")
    training = write_examples(folder / "pirate.jsonl", EXAMPLES)
    validation = write_examples(folder / "pirate_valid.jsonl", EXAMPLES[:2])
    uploaded = tailor(stack, "files", "upload", str(training), "--json")
    assert uploaded.code == 0, uploaded.err
    file = uploaded.json()
    assert isinstance(file, dict) and file["status"] == "processed"
    created = tailor(
        stack, "jobs", "create", "--model", BASE_MODEL, "--training-file", file["id"],
        "--validation-file", str(validation),  # a local path: uploaded first
        "--suffix", "cli", "--n-epochs", "1", "--batch-size", "4", "--seed", "7", "--json",
    )  # fmt: skip
    assert created.code == 0, created.err
    job = created.json()
    assert isinstance(job, dict)
    follow = tailor(stack, "jobs", "follow", str(job["id"]), "--poll", "0.5", timeout=TRAINING_TIMEOUT_S)
    return Followed(training_file=str(file["id"]), job=job, follow=follow)


def test_validate_passes_a_good_file_and_names_the_lines_of_a_bad_one_as_upload_does(
    stack: Stack, tmp_path: Path
) -> None:
    good = write_examples(tmp_path / "good.jsonl", EXAMPLES)
    passed = tailor(stack, "files", "validate", str(good))
    assert passed.code == 0 and "valid, 12 chat examples" in passed.out
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(EXAMPLES[0]) + "\n{not json\n" + json.dumps({"messages": []}) + "\n")
    failed = tailor(stack, "files", "validate", str(bad))
    assert failed.code == 1
    assert "line 2: invalid JSON" in failed.out and "line 3:" in failed.out
    refused = tailor(stack, "files", "upload", str(bad))  # the service says the same
    assert refused.code == 1 and ": refused: 2 problems; first: line 2: invalid JSON" in refused.out


def test_create_uploads_a_local_validation_file_and_returns_the_job(followed: Followed) -> None:
    job = followed.job
    assert str(job["id"]).startswith("ftjob-") and job["model"] == BASE_MODEL
    assert job["training_file"] == followed.training_file
    assert str(job["validation_file"]).startswith("file-")


def test_follow_shows_steps_and_losses_and_exits_with_the_jobs_success(followed: Followed) -> None:
    follow = followed.follow
    assert follow.code == 0, follow.out + follow.err
    assert "Created fine-tuning job" in follow.out
    assert "step 3/3" in follow.out and "epoch 1/1" in follow.out
    assert "train loss " in follow.out and "valid loss " in follow.out
    assert f"ft:{BASE_MODEL}:org-a:cli:" in follow.out.splitlines()[-1]
    assert "\x1b[" not in follow.out  # not a terminal: plain lines, no redrawing


def test_lists_show_the_file_and_the_job(stack: Stack, followed: Followed) -> None:
    files = tailor(stack, "files", "list", "--json").json()
    assert isinstance(files, dict) and files["object"] == "list"
    assert followed.training_file in [f["id"] for f in files["data"]]
    jobs = tailor(stack, "jobs", "list")
    assert jobs.code == 0 and jobs.out.startswith("ID")
    assert f"{followed.job['id']}  succeeded" in jobs.out


def test_a_cancelled_job_is_followed_to_exit_code_3(stack: Stack, followed: Followed) -> None:
    training_file = ("--training-file", followed.training_file)
    created = tailor(stack, "jobs", "create", "--model", BASE_MODEL, *training_file)
    assert created.code == 0, created.err
    job_id = created.out.split(":")[0]
    cancelled = tailor(stack, "jobs", "cancel", job_id)
    assert (cancelled.code, cancelled.out) == (0, f"{job_id}: cancelled\n")
    follow = tailor(stack, "jobs", "follow", job_id)
    assert follow.code == 3 and f"error: {job_id} was cancelled" in follow.err


def test_chat_streams_the_fine_tuned_models_answer(stack: Stack, followed: Followed) -> None:
    model = fine_tuned_model(stack, followed)
    # greedy, so that the same answer comes twice
    greedy = ("--max-tokens", "8", "--temperature", "0", "--system", "You are a pirate.")
    streamed = tailor(stack, "chat", model, *greedy, "--json", stdin="Greet sailor 3.")
    assert streamed.code == 0, streamed.err
    chunks = [json.loads(line) for line in streamed.out.splitlines()]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    pieces = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    pieces = [piece for piece in pieces if piece]
    assert len(pieces) > 1  # the answer came in pieces, as they were generated
    # (tailor-tiny's random weights say little that is readable, sometimes only whitespace)
    answered = tailor(stack, "chat", model, "Greet sailor 3.", *greedy)
    assert answered.code == 0, answered.err
    assert answered.out == "".join(pieces) + "\n"


def test_a_wrong_key_or_an_unreachable_api_is_one_clear_line(stack: Stack) -> None:
    refused = tailor(stack, "models", "list", key="sk-wrong")
    assert refused.code == 1 and refused.out == ""
    assert refused.err.startswith("error: ") and "(HTTP 401" in refused.err
    assert "Traceback" not in refused.err
    nowhere = f"http://127.0.0.1:{free_port()}/v1"
    unreachable = tailor(stack, "jobs", "list", "--base-url", nowhere)
    assert unreachable.code == 1 and f"could not connect to {nowhere}" in unreachable.err
    assert "Traceback" not in unreachable.err


def test_models_list_then_delete_the_fine_tune(stack: Stack, followed: Followed) -> None:
    model = fine_tuned_model(stack, followed)
    listed = tailor(stack, "models", "list", "--json").json()
    assert isinstance(listed, dict) and model in [m["id"] for m in listed["data"]]
    assert BASE_MODEL in tailor(stack, "models", "list").out
    deleted = tailor(stack, "models", "delete", model)
    assert deleted.code == 0 and deleted.out.strip() == f"{model}: deleted"
    gone = tailor(stack, "chat", model, "Hi")
    assert gone.code == 1 and "(HTTP 404, model_not_found)" in gone.err


def fine_tuned_model(stack: Stack, followed: Followed) -> str:
    shown = tailor(stack, "jobs", "show", str(followed.job["id"]), "--json").json()
    assert isinstance(shown, dict) and shown["status"] == "succeeded"
    return str(shown["fine_tuned_model"])
