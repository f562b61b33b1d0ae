"""Each tiny model of a real family, served with a fine-tune on both engines, answers as transformers + peft.

For every family (services/common/tiny_models/) a fixed-reply LoRA is trained on the spot
(:func:`train_fixed_reply_adapter`, which checks it against the reference first) and served by
a replica whose only base model is that family's, once per engine. Greedy answers with the
adapter and without it must equal :func:`reference_greedy` (transformers + peft on the same
files), on short chats and on ones longer than a sliding window (:data:`LONG_CASES`), so the
two engines equal each other too. A family whose architecture an engine gets
wrong (soft-capping, sliding windows, q/k/v biases, fused projections, untied or tied
embeddings, end tokens) answers differently here.

vLLM engines are expensive (15-50 s to start, ~2.7 GiB): each family's test releases the
shared engine of the other tests first and its own afterwards, so one runs at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from services.common.base_models import BaseModelSpec
from services.common.model_families import family_of
from services.common.tiny_models import TINY_MODELS
from tailor.inference.v1 import inference_service_pb2 as pb
from tests.integration.inference.adapter_factory import reference_greedy, train_fixed_reply_adapter
from tests.integration.inference.conftest import ORG, VLLMEngines, chat_request, complete

pytestmark = pytest.mark.asyncio(loop_scope="session")

NAMES = sorted(TINY_MODELS)
REPLY = "Alpha says hello"
PROMPTS = ("hi", "hello there", "question 7")
MAX_TOKENS = 16
INCOMPLETE_CHARACTER = "\ufffd"
# Conversations longer than tiny-gemma2's and tiny-mistral's sliding window (64 tokens), as
# (prompt, max tokens): the first crosses the window while decoding, the second in its prompt.
LONG_CASES = (
    ("Tell me a story about a lighthouse keeper", 56),
    (
        "Here are my notes from the trip, please read them all and then say what you think: we left "
        "early on Monday, drove along the coast for three hours, stopped at a small town with a "
        "harbour and a market, ate fish by the water, and walked up the hill to the old church "
        "before the rain came in from the sea.",
        16,
    ),
)


@dataclass(frozen=True)
class FamilyFixture:
    """A family's base model, its fixed-reply adapter, and the reference's greedy answers."""

    name: str
    base_dir: Path
    adapter_dir: Path
    base_answers: dict[str, str]
    adapter_answers: dict[str, str]
    long_base_answers: dict[str, str]
    long_adapter_answers: dict[str, str]


class Families:
    """Builds a family's fixture on first use and keeps it for the session (both engines use it)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._built: dict[str, FamilyFixture] = {}

    def get(self, name: str) -> FamilyFixture:
        if name not in self._built:
            base_dir = TINY_MODELS[name].ensure(self.root / "models")
            adapter_dir = train_fixed_reply_adapter(base_dir, REPLY, self.root / "adapters" / name, seed=0)
            self._built[name] = FamilyFixture(
                name,
                base_dir,
                adapter_dir,
                {prompt: reference_greedy(base_dir, prompt, MAX_TOKENS) for prompt in PROMPTS},
                {prompt: reference_greedy(base_dir, prompt, MAX_TOKENS, adapter_dir) for prompt in PROMPTS},
                {prompt: reference_greedy(base_dir, prompt, n) for prompt, n in LONG_CASES},
                {prompt: reference_greedy(base_dir, prompt, n, adapter_dir) for prompt, n in LONG_CASES},
            )
        return self._built[name]


@pytest.fixture(scope="session")
def families(tmp_path_factory: pytest.TempPathFactory) -> Families:
    return Families(tmp_path_factory.mktemp("families"))


@pytest.fixture
def one_vllm_engine_at_a_time(vllm_engines: VLLMEngines, engine_kind: str) -> Iterator[None]:
    if engine_kind == "vllm":
        vllm_engines.release()  # the other tests' engine, on tailor-tiny
    yield
    if engine_kind == "vllm":
        vllm_engines.release()  # this family's


@pytest.mark.parametrize("name", NAMES)
async def test_family_fine_tune_is_served_as_the_reference_answers(
    name: str,
    engine_kind: str,
    families: Families,
    replica_factory: Callable[..., Any],
    one_vllm_engine_at_a_time: None,
) -> None:
    family = families.get(name)
    assert all(answer == REPLY for answer in family.adapter_answers.values())
    overrides = {
        "base_models": {name: BaseModelSpec(source=str(family.base_dir))},
        "inference_base_model": name,
    }
    async with replica_factory(**overrides) as replica:
        adapter = await replica.upload(
            f"ft:{name}:{ORG}::alpha",
            family.adapter_dir,
            lora_rank=8,
            target_modules=tuple(family_of(_model_type(family.base_dir)).lora_target_modules),
        )
        for prompt in PROMPTS:
            tuned = await complete(
                replica.stub, chat_request(prompt, adapter=adapter, base_model=name, max_tokens=MAX_TOKENS)
            )
            base = await complete(replica.stub, chat_request(prompt, base_model=name, max_tokens=MAX_TOKENS))
            assert (prompt, tuned.text) == (prompt, family.adapter_answers[prompt])
            assert tuned.finish_reasons == {0: pb.FINISH_REASON_STOP}
            # An untrained base may end on bytes that are not a whole UTF-8 character: the
            # reference decodes them to U+FFFD, the engines (as vLLM's detokenizer) never
            # stream an incomplete character, so the stream ends before them.
            assert (prompt, base.text) == (prompt, family.base_answers[prompt].rstrip(INCOMPLETE_CHARACTER))
        window = _config(family.base_dir).get("sliding_window") or 0
        for prompt, tokens in LONG_CASES:
            tuned = await complete(
                replica.stub, chat_request(prompt, adapter=adapter, base_model=name, max_tokens=tokens)
            )
            base = await complete(replica.stub, chat_request(prompt, base_model=name, max_tokens=tokens))
            long_answers = (family.long_adapter_answers[prompt], family.long_base_answers[prompt])
            for completion, answer in zip((tuned, base), long_answers, strict=True):
                assert (prompt, completion.text) == (prompt, answer.rstrip(INCOMPLETE_CHARACTER))
            assert base.usage.prompt_tokens + base.usage.completion_tokens > window


def _model_type(base_dir: Path) -> str:
    return str(_config(base_dir)["model_type"])


def _config(base_dir: Path) -> dict[str, Any]:
    import json

    return dict(json.loads((base_dir / "config.json").read_text()))
