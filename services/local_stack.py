"""``python -m services.local_stack`` (``make up``): the whole platform on one machine.

Starts the dataset, trainer, inference and gateway services as child processes on
loopback with the embedded defaults (filesystem object store and SQLite under the
data directory, the built-in ``tailor-tiny`` model, CPU), waits until each answers
its health check, prints the base URL and the API key, restarts a service that crashes
(with backoff, saying so; :mod:`services.local_supervisor`), and on Ctrl-C or SIGTERM
stops them all. The key itself is never printed: the banner says where it is (the
generated ``.tailor/local_api_key``, or ``TAILOR_API_KEYS``), so it stays out of logs and
terminal scrollback. Children die with the launcher even when it is killed outright
(``PR_SET_PDEATHSIG``, see :mod:`services.common.die_with_parent`), so nothing is left running.

Each inference replica serves one base model, so the launcher starts one replica per
base model configured in ``TAILOR_BASE_MODELS`` (each with its own
``TAILOR_INFERENCE_BASE_MODEL`` and port), and gives the gateway all their addresses.
The first listens on ``TAILOR_INFERENCE_ADDR`` (``127.0.0.1:50053``); the others on the
further entries of that setting when it lists several ``host:port``, else on the next
ports up. ``TAILOR_LOCAL_STACK_BASE_MODELS`` (a comma list of configured names) starts
replicas for those bases only: a configured base without a replica is listed by
``/v1/models`` but answers 503, and fine-tuning jobs on it are refused. With the default
configuration (only ``tailor-tiny``) this is one replica on 127.0.0.1:50053, as before.

Each child gets only the secrets it uses (:func:`service_environment`): the API keys go to
the gateway alone, the object store's keys to the services that open the store, each
database URL to its own service.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from services.common.base_models import resolve_base_model
from services.common.die_with_parent import dying_with
from services.common.internal_auth.keys import LocalKeySet
from services.common.settings import load_settings
from services.gateway.config import GatewaySettings
from services.local_supervisor import Child, Supervisor, say, stop_children

STARTUP_TIMEOUT_S = 180.0
LOCAL_ORGANIZATION = "local"
API_KEY_FILE = "local_api_key"
# Which configured base models get an inference replica (comma list); empty: every one.
SERVED_BASE_MODELS_VARIABLE = "TAILOR_LOCAL_STACK_BASE_MODELS"
INTERNAL_AUTH_DIR = "internal-auth"  # under the data directory: services' key pairs

# Secret settings and the services (by module) that use them; every other child starts
# without them. The training worker's environment is the trainer's executors' to build
# from an allow-list (services/trainer/executors/local.py).
_OBJECT_STORE_USERS = frozenset({"dataset", "trainer", "inference"})
SECRET_VARIABLES: dict[str, frozenset[str]] = {
    "TAILOR_API_KEYS": frozenset({"gateway"}),
    "TAILOR_GATEWAY_API_KEYS_FILE": frozenset({"gateway"}),
    "TAILOR_OBJECT_STORE_ACCESS_KEY": _OBJECT_STORE_USERS,
    "TAILOR_OBJECT_STORE_SECRET_KEY": _OBJECT_STORE_USERS,
    "TAILOR_TRAINER_DATABASE_URL": frozenset({"trainer"}),
    "TAILOR_DATASET_DATABASE_URL": frozenset({"dataset"}),
}


@dataclass(frozen=True)
class InferenceReplica:
    """One inference replica of the local stack: the base model it serves and its address."""

    base_model: str
    address: str


def served_base_models(settings: GatewaySettings, wanted: str) -> list[str]:
    """The base models to start replicas for: ``wanted`` (comma list) or every configured one.

    Raises SystemExit naming a wanted base that is not configured.
    """
    names = [name.strip() for name in wanted.split(",") if name.strip()]
    if not names:
        return list(settings.base_models)
    unknown = [name for name in names if name not in settings.base_models]
    if unknown:
        configured = ", ".join(settings.base_models)
        raise SystemExit(
            f"{SERVED_BASE_MODELS_VARIABLE} names base models that are not configured: "
            f"{', '.join(unknown)} (configured: {configured})"
        )
    return list(dict.fromkeys(names))


def inference_replicas(settings: GatewaySettings, base_models: list[str]) -> list[InferenceReplica]:
    """One replica per base model, on the addresses ``TAILOR_INFERENCE_ADDR`` lists, then the next ports up."""
    listed = [entry.strip() for entry in settings.inference_addr.split(",") if entry.strip()]
    host, _, port = listed[-1].rpartition(":")
    if not host or not port.isdigit() or any(entry.startswith("dns:") for entry in listed):
        raise SystemExit(
            f"TAILOR_INFERENCE_ADDR must be host:port entries for make up, not {settings.inference_addr!r}"
        )
    addresses = listed + [
        f"{host}:{int(port) + step}" for step in range(1, len(base_models) - len(listed) + 1)
    ]
    return [InferenceReplica(base, address) for base, address in zip(base_models, addresses, strict=False)]


def inference_child(replica: InferenceReplica, index: int, *, several: bool, env: dict[str, str]) -> Child:
    """The child process of one replica. With several, each keeps its adapters in a directory of its own."""
    own = {
        "TAILOR_INFERENCE_BASE_MODEL": replica.base_model,
        "TAILOR_INFERENCE_LISTEN": replica.address,
    }
    if not several:
        return Child("inference", replica.address, module="inference", env=own)
    data_dir = Path(env["TAILOR_DATA_DIR"])
    cache_root = Path(env.get("TAILOR_INFERENCE_ADAPTER_CACHE_DIR") or data_dir / "adapter-cache")
    own["TAILOR_INFERENCE_ADAPTER_CACHE_DIR"] = str(cache_root / _safe(replica.base_model))
    metrics_port = int(env.get("TAILOR_INFERENCE_METRICS_PORT") or 0)
    if metrics_port:
        own["TAILOR_INFERENCE_METRICS_PORT"] = str(metrics_port + index)
    return Child(f"inference ({replica.base_model})", replica.address, module="inference", env=own)


def _safe(name: str) -> str:
    """A base model name as one directory name (names may hold ``/``)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def existing_api_keys(settings: GatewaySettings) -> str:
    """The keys ``make up`` gives the gateway, without making one (``make demo`` and ``tailor`` read
    them here): TAILOR_API_KEYS when set, else the key kept in the data directory, else empty."""
    if settings.api_keys.get_secret_value():
        return settings.api_keys.get_secret_value()
    path = settings.data_dir / API_KEY_FILE
    return path.read_text().strip() if path.exists() else ""


def local_api_key(settings: GatewaySettings) -> str:
    """The configured keys, or one generated once and kept (mode 0600) in the data directory."""
    if keys := existing_api_keys(settings):
        return keys
    path = settings.data_dir / API_KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"sk-tailor-{secrets.token_urlsafe(24)}={LOCAL_ORGANIZATION}\n")
    return path.read_text().strip()


def service_environment(module: str, env: dict[str, str]) -> dict[str, str]:
    """``env`` less the secrets the service ``module`` does not use (:data:`SECRET_VARIABLES`)."""
    return {name: value for name, value in env.items() if module in SECRET_VARIABLES.get(name, (module,))}


def start_child(child: Child, env: dict[str, str]) -> None:
    module = child.module or child.name
    child.process = subprocess.Popen(
        dying_with(os.getpid(), [sys.executable, "-m", f"services.{module}"]),
        env=service_environment(module, {**env, **child.env}),
    )


def key_banner(settings: GatewaySettings) -> str:
    """Where the API key is and how to export it, without the key itself."""
    if settings.api_keys.get_secret_value():
        where, export = "the first entry of TAILOR_API_KEYS", '"${TAILOR_API_KEYS%%=*}"'
    else:
        path = shlex.quote(str((settings.data_dir / API_KEY_FILE).resolve()))
        where, export = f"in {path}", f"$(cut -d= -f1 {path})"
    return (
        f"\n  base URL : {settings.base_url}\n  API key  : {where}\n\n"
        f"  export OPENAI_BASE_URL={settings.base_url}\n  export OPENAI_API_KEY={export}\n\n"
        "  Ctrl-C stops everything.\n"
    )


async def run(settings: GatewaySettings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    for name, spec in settings.base_models.items():
        if spec.is_builtin:
            say(f"preparing base model {name}")
            await asyncio.to_thread(resolve_base_model, name, settings)

    api_keys = local_api_key(settings)
    replicas = inference_replicas(
        settings, served_base_models(settings, os.environ.get(SERVED_BASE_MODELS_VARIABLE, ""))
    )
    # Children inherit this environment (the user's TAILOR_* settings included), plus what
    # makes the processes agree: one data directory, one key list, listen = address (the
    # trainer's also where inference resolves model names), and the gateway's list of every
    # inference replica; start_child strips the secrets a child does not use.
    env = dict(os.environ)
    env.update(
        TAILOR_DATA_DIR=str(settings.data_dir.resolve()),
        TAILOR_API_KEYS=api_keys,
        TAILOR_DATASET_LISTEN=settings.dataset_addr,
        TAILOR_TRAINER_LISTEN=settings.trainer_addr,
        TAILOR_TRAINER_ADDR=settings.trainer_addr,
        TAILOR_INFERENCE_ADDR=",".join(replica.address for replica in replicas),
        TAILOR_GATEWAY_HOST=settings.gateway_host,
        TAILOR_GATEWAY_PORT=str(settings.gateway_port),
        PYTHONUNBUFFERED="1",
    )
    several = len(replicas) > 1
    inference = [inference_child(r, i, several=several, env=env) for i, r in enumerate(replicas)]
    children = [
        Child("dataset", settings.dataset_addr),
        Child("trainer", settings.trainer_addr),
        *inference,
        Child("gateway", f"http://{settings.gateway_host}:{settings.gateway_port}/healthz"),
    ]
    # Internal auth: key pairs made on first start; each service gets its own private key only.
    key_set = LocalKeySet(settings.data_dir.resolve() / INTERNAL_AUTH_DIR).ensure()
    for child in children:
        child.env.update(key_set.environment(child.module or child.name))
    upstreams, gateway = children[:-1], children[-1]
    supervisor = Supervisor(lambda child: start_child(child, env), stop, startup_timeout_s=STARTUP_TIMEOUT_S)
    try:
        # The gateway starts once the services it calls answer, so that its first
        # readiness check already finds them.
        if not await supervisor.start_all(upstreams) or not await supervisor.start_all([gateway]):
            return 0 if stop.is_set() else 1
        if several or set(settings.base_models) - {r.base_model for r in replicas}:
            for name in settings.base_models:
                serving = [r.address for r in replicas if r.base_model == name]
                say(
                    f"base model {name}: "
                    + (f"inference on {serving[0]}" if serving else "no inference replica")
                )
        say("all services are up")
        print(key_banner(settings), flush=True)
        code = await supervisor.run(children)
        if not supervisor.gave_up:
            say("stopping")
        return code
    finally:
        stop_children(children, grace_s=settings.grpc_shutdown_grace_s + 5)
        say("stopped")


def main() -> None:
    settings = load_settings(GatewaySettings)
    sys.exit(asyncio.run(run(settings)))


if __name__ == "__main__":
    main()
