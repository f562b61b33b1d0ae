"""Several base models in one deployment, through the official SDK: one inference replica per base.

One stack (``make up``'s launcher, hf engine) configures three base models, all built from
the built-in tailor-tiny under different names, and runs replicas for two of them
(``TAILOR_LOCAL_STACK_BASE_MODELS``): the third is configured but served by no replica.
The tests ask the replicas themselves (``GetReplicaInfo``, ``ListAdapters``) to prove where
the gateway sent each request. One job is trained on the second base (about 20 s).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import openai
import pytest

from tailor.inference.v1 import inference_service_pb2 as pb
from tailor.inference.v1 import inference_service_pb2_grpc as pb_grpc
from tests.e2e.jobs import wait_until_succeeded
from tests.support.local_stack import RunningStack, running_stack

pytestmark = pytest.mark.slow

KEY = "sk-e2e-two-bases-0001"
ORGANIZATION = "org-a"
FIRST, SECOND, UNSERVED = "tailor-tiny", "tailor-tiny-b", "tailor-tiny-c"
# tailor-tiny's own defaults (TAILOR_BASE_MODELS replaces the default list as a whole)
TINY = {"source": "builtin:tailor-tiny", "lora_learning_rate": 2e-3, "lora_rank": 8, "max_seq_length": 512}
EXAMPLES = [
    {
        "messages": [
            {"role": "user", "content": f"Greet sailor number {i}."},
            {"role": "assistant", "content": f"Ahoy, sailor {i}!"},
        ]
    }
    for i in range(10)
]
HI = [{"role": "user", "content": "Hi"}]


@dataclass
class TwoBases:
    url: str
    replicas: dict[str, str]  # base model -> the address of its replica
    platform: RunningStack

    def client(self, **options: object) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=KEY, **options)  # type: ignore[arg-type]

    def adapters_on(self, base_model: str) -> list[str]:
        """The organization's adapters the replica of ``base_model`` holds (asked directly)."""
        with grpc.insecure_channel(self.replicas[base_model]) as channel:
            response = pb_grpc.InferenceServiceStub(channel).ListAdapters(
                pb.ListAdaptersRequest(), metadata=self.platform.metadata("inference", ORGANIZATION), timeout=10
            )
        return [adapter.adapter.name for adapter in response.adapters]


@pytest.fixture(scope="module")
def two_bases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoBases]:
    data_dir: Path = tmp_path_factory.mktemp("two-bases") / "data"
    with running_stack(
        data_dir,
        inference_replicas=2,
        TAILOR_API_KEYS=f"{KEY}={ORGANIZATION}",
        TAILOR_BASE_MODELS=json.dumps({FIRST: TINY, SECOND: TINY, UNSERVED: TINY}),
        TAILOR_LOCAL_STACK_BASE_MODELS=f"{FIRST},{SECOND}",
    ) as platform:
        addresses = platform.environment["TAILOR_INFERENCE_ADDR"].split(",")
        # the replicas take the listed addresses in the order of the bases
        replicas = dict(zip((FIRST, SECOND), addresses, strict=True))
        for base_model, address in replicas.items():
            with grpc.insecure_channel(address) as channel:
                # no organization: what a replica serves is no tenant's data
                info = pb_grpc.InferenceServiceStub(channel).GetReplicaInfo(
                    pb.GetReplicaInfoRequest(), metadata=platform.metadata("inference"), timeout=10
                )
            assert (info.base_model, info.engine) == (base_model, "hf")
        yield TwoBases(platform.url, replicas, platform)


def test_models_lists_every_configured_base(two_bases: TwoBases) -> None:
    ids = [model.id for model in two_bases.client().models.list().data]
    assert ids[:3] == sorted([FIRST, SECOND, UNSERVED])


def test_chat_with_each_served_base_answers(two_bases: TwoBases) -> None:
    client = two_bases.client()
    for base_model in (FIRST, SECOND):
        answer = client.chat.completions.create(model=base_model, messages=HI, max_tokens=4)  # type: ignore[arg-type]
        assert answer.model == base_model and answer.choices[0].finish_reason in ("stop", "length")


def test_a_base_without_a_replica_is_a_503_and_refuses_jobs(two_bases: TwoBases) -> None:
    client = two_bases.client(max_retries=0)
    with pytest.raises(openai.InternalServerError) as unavailable:
        client.chat.completions.create(model=UNSERVED, messages=HI, max_tokens=4)  # type: ignore[arg-type]
    assert unavailable.value.status_code == 503
    assert int(unavailable.value.response.headers["retry-after"]) >= 1
    assert f"`{UNSERVED}`" in unavailable.value.message
    uploaded = client.files.create(file=("t.jsonl", _training_data()), purpose="fine-tune")
    with pytest.raises(openai.BadRequestError) as refused:
        client.fine_tuning.jobs.create(model=UNSERVED, training_file=uploaded.id)
    assert refused.value.param == "model"  # type: ignore[attr-defined]
    assert (
        f"`{UNSERVED}`" in refused.value.message
        and "no inference replica serves" in refused.value.message.lower()
    )
    assert client.fine_tuning.jobs.list().data == []  # nothing was created


def test_a_model_fine_tuned_on_the_second_base_is_served_by_its_replica(two_bases: TwoBases) -> None:
    client = two_bases.client()
    uploaded = client.files.create(file=("pirate.jsonl", _training_data()), purpose="fine-tune")
    assert client.files.wait_for_processing(uploaded.id, poll_interval=0.5).status == "processed"
    job = client.fine_tuning.jobs.create(
        model=SECOND,
        training_file=uploaded.id,
        suffix="pirate",
        seed=7,
        hyperparameters={"n_epochs": 1, "batch_size": 4},
    )
    job = wait_until_succeeded(client, job)
    model = job.fine_tuned_model
    assert model is not None and model.startswith(f"ft:{SECOND}:{ORGANIZATION}:pirate:")

    answer = client.chat.completions.create(model=model, messages=HI, max_tokens=4)  # type: ignore[arg-type]
    assert answer.model == model
    # the adapter was loaded by the second base's replica, and only there
    assert model in two_bases.adapters_on(SECOND)
    assert model not in two_bases.adapters_on(FIRST)

    # deleting it unloads it from its base's replica
    assert client.models.delete(model).deleted
    assert model not in two_bases.adapters_on(SECOND)
    with httpx.Client(base_url=two_bases.url, headers={"Authorization": f"Bearer {KEY}"}) as http:
        assert http.get(f"/v1/models/{model}").status_code == 404


def _training_data() -> bytes:
    return "\n".join(json.dumps(example) for example in EXAMPLES).encode()
