"""``make up``'s plan (one inference replica per base model, on the ports TAILOR_INFERENCE_ADDR
gives) and its supervisor's decisions (when a crashed service is restarted, when it is given up on).

The launcher itself runs in tests/integration/test_local_stack.py (one base, a service
killed and restarted) and tests/e2e/test_two_base_models.py (two bases, a third without a
replica).
"""

from __future__ import annotations

import asyncio
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from services.gateway.config import GatewaySettings
from services.local_supervisor import Child, CrashRecord, RestartPolicy, Supervisor, describe_exit
from services.local_stack import (
    InferenceReplica,
    inference_child,
    inference_replicas,
    key_banner,
    served_base_models,
    service_environment,
)

TINY = {"source": "builtin:tailor-tiny"}


def settings(*bases: str, inference_addr: str = "127.0.0.1:50053") -> GatewaySettings:
    return GatewaySettings(base_models={base: TINY for base in bases}, inference_addr=inference_addr)


def test_the_default_is_one_replica_where_it_always_was() -> None:
    default = GatewaySettings()
    replicas = inference_replicas(default, served_base_models(default, ""))
    assert replicas == [InferenceReplica("tailor-tiny", "127.0.0.1:50053")]
    child = inference_child(replicas[0], 0, several=False, env={"TAILOR_DATA_DIR": "/d"})
    assert (child.name, child.module) == ("inference", "inference")
    assert child.env == {
        "TAILOR_INFERENCE_BASE_MODEL": "tailor-tiny",
        "TAILOR_INFERENCE_LISTEN": "127.0.0.1:50053",
    }


def test_one_replica_per_base_on_the_listed_then_the_next_ports() -> None:
    three = settings("a", "b", "c", inference_addr="127.0.0.1:6000,127.0.0.1:7000")
    assert inference_replicas(three, served_base_models(three, "")) == [
        InferenceReplica("a", "127.0.0.1:6000"),
        InferenceReplica("b", "127.0.0.1:7000"),
        InferenceReplica("c", "127.0.0.1:7001"),
    ]
    two = settings("a", "b")
    assert [r.address for r in inference_replicas(two, ["a", "b"])] == ["127.0.0.1:50053", "127.0.0.1:50054"]


def test_several_replicas_keep_their_adapters_apart(tmp_path: Path) -> None:
    env = {"TAILOR_DATA_DIR": str(tmp_path), "TAILOR_INFERENCE_METRICS_PORT": "9100"}
    children = [
        inference_child(InferenceReplica(base, f"127.0.0.1:{port}"), i, several=True, env=env)
        for i, (base, port) in enumerate([("tailor-tiny", 1), ("org/model-b", 2)])
    ]
    caches = [child.env["TAILOR_INFERENCE_ADAPTER_CACHE_DIR"] for child in children]
    assert caches == [
        str(tmp_path / "adapter-cache" / "tailor-tiny"),
        str(tmp_path / "adapter-cache" / "org_model-b"),
    ]
    assert [child.env["TAILOR_INFERENCE_METRICS_PORT"] for child in children] == ["9100", "9101"]
    assert [child.env["TAILOR_INFERENCE_BASE_MODEL"] for child in children] == ["tailor-tiny", "org/model-b"]


def test_a_chosen_subset_of_bases_and_an_unknown_one() -> None:
    three = settings("a", "b", "c")
    assert served_base_models(three, " c, a ,") == ["c", "a"]
    with pytest.raises(SystemExit, match="not configured: z"):
        served_base_models(three, "a,z")


def test_make_up_needs_fixed_addresses() -> None:
    with pytest.raises(SystemExit, match="host:port"):
        inference_replicas(settings("a", inference_addr="dns:///inference-headless:50053"), ["a"])


def test_each_service_gets_only_the_secrets_it_uses() -> None:
    env = {
        "PATH": "/usr/bin",
        "TAILOR_DATA_DIR": "/d",
        "TAILOR_API_KEYS": "sk-secret=org-a",
        "TAILOR_GATEWAY_API_KEYS_FILE": "/keys",
        "TAILOR_OBJECT_STORE_ACCESS_KEY": "access",
        "TAILOR_OBJECT_STORE_SECRET_KEY": "s3cret",
        "TAILOR_TRAINER_DATABASE_URL": "postgresql://tailor:pw@db/tailor",
        "TAILOR_DATASET_DATABASE_URL": "postgresql://tailor:pw@db/dataset",
    }
    modules = ("gateway", "dataset", "trainer", "inference")
    seen = {module: service_environment(module, env) for module in modules}
    for module, environment in seen.items():
        assert environment["PATH"] == "/usr/bin" and environment["TAILOR_DATA_DIR"] == "/d", module
        assert ("TAILOR_API_KEYS" in environment) == (module == "gateway"), module
        assert ("TAILOR_GATEWAY_API_KEYS_FILE" in environment) == (module == "gateway"), module
        assert ("TAILOR_OBJECT_STORE_SECRET_KEY" in environment) == (module != "gateway"), module
        assert ("TAILOR_OBJECT_STORE_ACCESS_KEY" in environment) == (module != "gateway"), module
        assert ("TAILOR_TRAINER_DATABASE_URL" in environment) == (module == "trainer"), module
        assert ("TAILOR_DATASET_DATABASE_URL" in environment) == (module == "dataset"), module


def test_the_banner_says_where_the_key_is_not_what_it_is(tmp_path: Path) -> None:
    generated = key_banner(GatewaySettings(data_dir=tmp_path / "my data"))
    key_file = shlex.quote(str(tmp_path / "my data" / "local_api_key"))
    assert f"API key  : in {key_file}" in generated
    assert f"export OPENAI_API_KEY=$(cut -d= -f1 {key_file})" in generated
    configured = key_banner(GatewaySettings(data_dir=tmp_path, api_keys="sk-configured-1=org-a"))
    assert "sk-configured-1" not in configured
    assert 'export OPENAI_API_KEY="${TAILOR_API_KEYS%%=*}"' in configured


def crash_delays(policy: RestartPolicy, crashes: list[tuple[float, float | None]]) -> list[float | None]:
    """The restart delay after each crash, given as (when, healthy for how long before it)."""
    record = CrashRecord(policy)
    return [record.restart_delay(at=at, healthy_for=healthy_for) for at, healthy_for in crashes]


def test_restarts_back_off_from_one_second_doubling_and_the_fifth_crash_in_five_minutes_gives_up() -> None:
    default = RestartPolicy()
    assert crash_delays(default, [(t, None) for t in (0, 2, 5, 10, 19)]) == [1, 2, 4, 8, None]


def test_the_backoff_is_capped_at_thirty_seconds() -> None:
    patient = RestartPolicy(max_crashes=100)
    assert crash_delays(patient, [(t, None) for t in range(8)]) == [1, 2, 4, 8, 16, 30, 30, 30]


def test_a_service_that_stayed_healthy_a_while_starts_the_backoff_over() -> None:
    delays = crash_delays(RestartPolicy(), [(0, None), (2, 1.0), (70, 60.0), (72, 1.0)])
    assert delays == [1, 2, 1, 2]


def test_crashes_spread_wider_than_the_window_never_give_up() -> None:
    hourly = [(hour * 3600.0, None) for hour in range(10)]
    assert None not in crash_delays(RestartPolicy(max_crashes=2), hourly)


def test_an_exit_is_told_by_code_or_by_signal_name() -> None:
    assert (describe_exit(3), describe_exit(-9), describe_exit(-15)) == ("code 3", "signal SIGKILL", "signal SIGTERM")


def start_crashing(child: Child, starts: list[int]) -> None:
    """Starts a 'service' that exits with code 3 at once, never healthy; counts the starts."""
    child.process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    starts.append(child.process.pid)


def a_crashed_child(starts: list[int]) -> Child:
    """A child whose first run has already exited; its health URL is port 9 (discard), where nothing answers."""
    child = Child("flaky", "http://127.0.0.1:9/healthz")
    start_crashing(child, starts)
    child.process.wait()  # type: ignore[union-attr]
    return child


async def test_a_service_that_keeps_crashing_is_restarted_then_given_up_on_and_the_stack_stops(
    capsys: pytest.CaptureFixture[str],
) -> None:
    starts: list[int] = []
    child, stop = a_crashed_child(starts), asyncio.Event()
    quick = RestartPolicy(first_delay_s=0.01, max_crashes=3)
    supervisor = Supervisor(lambda c: start_crashing(c, starts), stop, startup_timeout_s=30, policy=quick)

    assert await asyncio.wait_for(supervisor.run([child]), timeout=60) == 1
    assert supervisor.gave_up == ["flaky"] and stop.is_set()
    assert len(starts) == 3, "started once, restarted after the first two crashes, not after the third"
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (
        "[tailor] flaky exited unexpectedly with code 3; restarting it in 0.01s "
        "(crashes in the last 300s: 1; at 3 the stack stops)"
    )
    assert lines[-1] == (
        "[tailor] flaky exited unexpectedly with code 3, 3 crashes in 300s; giving up on it and stopping the stack"
    )


async def test_stopping_during_a_backoff_restarts_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    starts: list[int] = []
    child, stop = a_crashed_child(starts), asyncio.Event()
    slow = RestartPolicy(first_delay_s=3600, max_delay_s=3600)
    supervisor = Supervisor(lambda c: start_crashing(c, starts), stop, startup_timeout_s=30, policy=slow)
    running = asyncio.create_task(supervisor.run([child]))

    async def the_backoff_began() -> None:
        said = ""
        while "restarting it in 3600s" not in said:
            await asyncio.sleep(0.05)
            said += capsys.readouterr().out

    await asyncio.wait_for(the_backoff_began(), timeout=30)
    stop.set()
    assert await asyncio.wait_for(running, timeout=30) == 0
    assert len(starts) == 1 and supervisor.gave_up == []
