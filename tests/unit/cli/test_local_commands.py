"""``tailor`` commands that need no server: ``files validate`` and the command line itself.

``validate`` must say what upload would say, line for line, so these run the real
command (``main``) on files written to disk and read its output and exit code.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.cli.context import make_client
from services.cli.main import main

CHAT = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Ahoy"}]}
PREFERENCE = {
    "input": {"messages": [{"role": "user", "content": "Hi"}]},
    "preferred_output": [{"role": "assistant", "content": "Ahoy"}],
    "non_preferred_output": [{"role": "assistant", "content": "Hello"}],
}


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_valid_file_passes_and_says_what_was_not_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "good.jsonl", [json.dumps(CHAT)] * 12)
    assert main(["files", "validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "valid, 12 chat examples" in out and "in 12 lines" in out
    assert "Not checked locally: token counts" in out


def test_problems_are_listed_with_their_line_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    no_answer = {"messages": [{"role": "user", "content": "Hi"}]}
    path = write(tmp_path / "bad.jsonl", [json.dumps(CHAT), "{oops", "", json.dumps(no_answer)])
    assert main(["files", "validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert "invalid, 2 problems in 4 lines" in out
    assert "  line 2: invalid JSON" in out
    assert "  line 4: no assistant message" in out  # the blank line 3 still counts, as in an editor


def test_json_output_lists_problems_for_scripts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "bad.jsonl", [json.dumps(CHAT), '{"mesages": []}'])
    assert main(["files", "validate", str(path), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["valid"] is False and report["problem_count"] == 1
    assert report["problems"][0]["line"] == 2 and "mesages" in report["problems"][0]["message"]


def test_method_checks_the_format_the_method_trains_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chat = write(tmp_path / "chat.jsonl", [json.dumps(CHAT)] * 12)
    preference = write(tmp_path / "pref.jsonl", [json.dumps(PREFERENCE)] * 12)
    assert main(["files", "validate", str(chat), "--method", "dpo"]) == 1
    assert "not a dpo training file" in capsys.readouterr().out
    assert main(["files", "validate", str(preference), "--method", "dpo"]) == 0
    assert main(["files", "validate", str(preference), "--method", "sft"]) == 1
    assert "the supervised method trains on chat or prompt/completion" in capsys.readouterr().out


def test_method_checks_a_training_file_has_enough_examples(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "few.jsonl", [json.dumps(CHAT)] * 3)
    assert main(["files", "validate", str(path)]) == 0
    assert main(["files", "validate", str(path), "--method", "sft"]) == 1
    assert "has 3 examples; at least 10 are required" in capsys.readouterr().out


def test_a_missing_file_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["files", "validate", str(tmp_path / "nope.jsonl")]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("error: cannot read") and "Traceback" not in captured.err


def test_global_options_go_before_or_after_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    # Port 9 (discard) is closed on loopback: the error names where it tried.
    for argv in (
        ["--base-url", "http://127.0.0.1:9/v1", "--api-key", "k", "models", "list"],
        ["models", "list", "--base-url", "http://127.0.0.1:9/v1", "--api-key", "k"],
    ):
        assert main(argv) == 1
        assert "could not connect to http://127.0.0.1:9/v1" in capsys.readouterr().err


def test_a_bad_number_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["jobs", "create", "--model", "m", "--training-file", "f", "--n-epochs", "two"])
    assert exited.value.code == 2
    assert "--n-epochs: expected a whole number or auto, got 'two'" in capsys.readouterr().err


def test_beta_needs_the_dpo_method(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["jobs", "create", "--model", "m", "--training-file", "f", "--beta", "0.1", "--api-key", "k"]
    assert main(argv) == 1
    assert "--beta is a DPO hyperparameter" in capsys.readouterr().err


def test_without_flags_or_environment_it_finds_the_local_stack_and_its_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("TAILOR_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TAILOR_GATEWAY_PORT", "8123")
    (tmp_path / "local_api_key").write_text("sk-local-0001=local\n")
    client = make_client(None, None)
    assert (str(client.base_url), client.api_key) == ("http://127.0.0.1:8123/v1/", "sk-local-0001")
    assert make_client("http://elsewhere/v1", "k").api_key == "k"


def test_without_any_key_the_error_says_where_to_get_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("TAILOR_DATA_DIR", str(tmp_path))
    assert main(["models", "list", "--base-url", "http://127.0.0.1:9/v1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: no API key found for http://127.0.0.1:9/v1.")
    assert "export OPENAI_API_KEY=<key>" in err and str((tmp_path / "local_api_key").resolve()) in err


def test_the_local_stacks_key_is_never_sent_to_another_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("TAILOR_DATA_DIR", str(tmp_path))
    (tmp_path / "local_api_key").write_text("sk-local-0001=local\n")
    assert main(["models", "list", "--base-url", "http://elsewhere.invalid/v1"]) == 1
    assert capsys.readouterr().err.startswith("error: no API key found for http://elsewhere.invalid/v1.")
