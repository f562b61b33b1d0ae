"""A base model named by a Hugging Face id, loaded offline from a pre-populated hub cache.

Real deployments configure ``{"source": "Qwen/Qwen2.5-0.5B-Instruct"}`` and mount a hub cache
(``HF_HOME``) with ``HF_HUB_OFFLINE=1``. Here the cache is written by
:func:`tests.support.hub_cache.populate_hub_cache` from tailor-tiny as ``tailor-test/tiny-hub``,
and the platform is started the way ``make up`` starts it with that id as its base model: the
trainer, its worker and the inference service (hf engine, then vLLM on the same data
directory) all load it through the id. Through the ``openai`` SDK a file is uploaded, a job
fine-tunes the base, and the result answers a chat. An id configured but not cached is
refused at job creation, 400 naming ``model`` (by the gateway, as no replica serves it, and by
the trainer's own check behind a gateway that does not know the entry).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest
from openai.types.fine_tuning import FineTuningJob

from services.common.tailor_tiny import ensure_tailor_tiny
from tests.e2e.conftest import _wait_healthy
from tests.e2e.jobs import wait_until_succeeded
from tests.support.hub_cache import populate_hub_cache
from tests.support.local_stack import assert_served_by_vllm, running_stack
from tests.support.processes import OutputWatchedProcess, free_port

pytestmark = pytest.mark.slow

KEY = "sk-e2e-hub-0001"
REPO_ID = "tailor-test/tiny-hub"
MISSING_ID = "tailor-test/not-in-the-cache"
EXAMPLES = [
    {
        "messages": [
            {"role": "user", "content": f"Greet sailor number {i}."},
            {"role": "assistant", "content": f"Ahoy, sailor {i}!"},
        ]
    }
    for i in range(10)
]
BASE_MODELS = {
    # tailor-tiny's own defaults (a tiny random model wants a high rate); the family is read
    # from the cached config.json (llama).
    REPO_ID: {"source": REPO_ID, "lora_learning_rate": 2e-3, "lora_rank": 8, "max_seq_length": 512},
    "not-cached": {"source": MISSING_ID},
}


@dataclass
class HubRun:
    data_dir: Path
    settings: dict[str, str]
    job: FineTuningJob
    events: list[str]
    answer: str
    gateway_refusal: openai.BadRequestError
    trainer_refusal: openai.BadRequestError


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)


@pytest.fixture(scope="module")
def hub_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubRun]:
    root = tmp_path_factory.mktemp("hub-id")
    hf_home = root / "hf-home"
    populate_hub_cache(ensure_tailor_tiny(root / "built"), REPO_ID, hf_home)
    data_dir = root / "data"
    settings = {
        "TAILOR_API_KEYS": f"{KEY}=org-a",
        "TAILOR_BASE_MODELS": json.dumps(BASE_MODELS),
        "TAILOR_INFERENCE_BASE_MODEL": REPO_ID,
        # a launcher that starts one replica per configured base starts none for the uncached one
        "TAILOR_LOCAL_STACK_BASE_MODELS": REPO_ID,
        "HF_HOME": str(hf_home),
        "HF_HUB_OFFLINE": "1",
    }
    with running_stack(data_dir, **settings) as platform:
        client = _client(platform.url)
        content = "\n".join(json.dumps(example) for example in EXAMPLES).encode()
        uploaded = client.files.create(file=("sailors.jsonl", content), purpose="fine-tune")
        assert client.files.wait_for_processing(uploaded.id, poll_interval=0.5).status == "processed"

        with pytest.raises(openai.BadRequestError) as refused_by_gateway:
            client.fine_tuning.jobs.create(model="not-cached", training_file=uploaded.id)
        # A gateway that does not know the entry (configured apart from the trainer) asks the
        # trainer, whose own check refuses it.
        port = free_port()
        gateway = OutputWatchedProcess(
            [sys.executable, "-m", "services.gateway"],
            {
                **platform.service_environment("gateway"),
                "TAILOR_GATEWAY_PORT": str(port),
                "TAILOR_BASE_MODELS": json.dumps({REPO_ID: BASE_MODELS[REPO_ID]}),
            },
        )
        try:
            _wait_healthy(f"http://127.0.0.1:{port}")
            with pytest.raises(openai.BadRequestError) as refused_by_trainer:
                _client(f"http://127.0.0.1:{port}").fine_tuning.jobs.create(
                    model="not-cached", training_file=uploaded.id
                )
        finally:
            gateway.stop()

        job = client.fine_tuning.jobs.create(
            model=REPO_ID,
            training_file=uploaded.id,
            suffix="hub",
            seed=5,
            hyperparameters={"n_epochs": 3, "batch_size": 2},
        )
        job = wait_until_succeeded(client, job)
        events = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=100).data]
        reply = client.chat.completions.create(
            model=job.fine_tuned_model or "",
            messages=[{"role": "user", "content": "Greet sailor number 3."}],
            temperature=0,
            max_tokens=8,
        )
        yield HubRun(
            data_dir,
            settings,
            job,
            events,
            reply.choices[0].message.content or "",
            refused_by_gateway.value,
            refused_by_trainer.value,
        )


def test_a_job_fine_tunes_the_hub_id_and_its_model_answers(hub_run: HubRun) -> None:
    job = hub_run.job
    assert job.model == REPO_ID
    assert job.fine_tuned_model is not None and job.fine_tuned_model.startswith(f"ft:{REPO_ID}:org-a:hub:")
    assert hub_run.answer  # served by a replica that loaded the base through the id
    # the family was read from the cached config.json, and its target modules were trained
    (summary,) = [message for message in hub_run.events if message.startswith(f"Base model {REPO_ID}")]
    assert "family llama" in summary
    assert "down_proj, gate_proj, k_proj, o_proj, q_proj, up_proj, v_proj" in summary


def test_an_id_that_is_not_cached_is_refused_at_job_creation_naming_model(hub_run: HubRun) -> None:
    # no replica can serve it (one on that base would not start), which the gateway knows
    assert (hub_run.gateway_refusal.status_code, hub_run.gateway_refusal.param) == (400, "model")
    # and the trainer refuses it by itself, saying why
    error = hub_run.trainer_refusal
    assert (error.status_code, error.param, error.code) == (400, "model", "model_not_available")
    assert MISSING_ID in error.message and "HF_HUB_OFFLINE" in error.message


def test_vllm_serves_the_fine_tune_of_the_hub_id_from_the_same_cache(hub_run: HubRun) -> None:
    with running_stack(
        hub_run.data_dir,
        TAILOR_INFERENCE_ENGINE="vllm",
        TAILOR_INFERENCE_VLLM_CPU_THREADS="1",
        **hub_run.settings,
    ) as platform:
        assert_served_by_vllm(platform.launcher.output)
        reply = _client(platform.url).chat.completions.create(
            model=hub_run.job.fine_tuned_model or "",
            messages=[{"role": "user", "content": "Greet sailor number 3."}],
            temperature=0,
            max_tokens=8,
        )
    # greedy on float32 weights: both engines give the same answer
    assert reply.choices[0].message.content == hub_run.answer
