"""Both engines' text for a request that keeps special tokens (the tool-call markers of a request with tools).

The model's choice of tokens is scripted (the hf engine's sampler, vLLM's outputs) so that the
reply is exactly a Mistral tool call with a stray control token in it and an end of sequence:
the marker is text only when the request keeps it; no other special token is ever text.
"""

from __future__ import annotations

import asyncio
import sys
import types
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from services.inference.engine import ChoiceDelta, GenerationRequest
from services.inference.sampling import SamplingSettings
from services.inference.text_stream import SkippedTokens

KEEP = frozenset({"[TOOL_CALLS]"})
REPLY = 'Sure.[TOOL_CALLS] [{"name": "f", "arguments": {}}][INST]</s>'
WITH_MARKER = 'Sure.[TOOL_CALLS] [{"name": "f", "arguments": {}}]'
WITHOUT_MARKER = 'Sure. [{"name": "f", "arguments": {}}]'


def reply_tokens(tokenizer: Any, text: str = REPLY) -> list[int]:
    return tokenizer(text, add_special_tokens=False).input_ids


def request(keep: frozenset[str], *, max_tokens: int = 64, stop: tuple[str, ...] = ()) -> GenerationRequest:
    return GenerationRequest(
        request_id="cmpl-1",
        prompt_token_ids=(1, 3, 100, 4),
        sampling=SamplingSettings(max_tokens=max_tokens, temperature=0.0, stop=stop),
        keep_special_tokens=keep,
    )


def text_and_finish(deltas: list[ChoiceDelta]) -> tuple[str, list[str | None]]:
    return "".join(d.text for d in deltas), [d.finish_reason for d in deltas if d.finish_reason]


# -- the hf engine --


@pytest.fixture(scope="module")
def hf_engine(mistral_tokenizer: Any) -> Iterator[Any]:
    import torch
    from transformers import MistralConfig, MistralForCausalLM

    from services.inference.hf_engine import HFEngine

    torch.manual_seed(0)
    config = MistralConfig(
        vocab_size=len(mistral_tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=256,
        sliding_window=None,
        eos_token_id=mistral_tokenizer.eos_token_id,
    )
    model = MistralForCausalLM(config).eval()
    engine = HFEngine(
        model, mistral_tokenizer, max_batch_size=4, max_loras=1, max_lora_rank=8, max_model_len=256
    )
    yield engine
    asyncio.run(engine.close())


def hf_generate(
    engine: Any, tokens: list[int], generation: GenerationRequest, monkeypatch: Any
) -> list[ChoiceDelta]:
    script = iter(tokens)
    monkeypatch.setattr(
        "services.inference.hf_engine.sample_next_tokens",
        lambda logits, samplers: [next(script) for _ in samplers],
    )

    async def run() -> list[ChoiceDelta]:
        return [delta async for deltas in engine.generate(generation) for delta in deltas]

    return asyncio.run(run())


def test_hf_keeps_the_marker_only_for_a_request_that_keeps_it(
    hf_engine: Any, mistral_tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = reply_tokens(mistral_tokenizer)
    kept = hf_generate(hf_engine, tokens, request(KEEP), monkeypatch)
    assert text_and_finish(kept) == (WITH_MARKER, ["stop"])
    assert sum(d.token_count for d in kept) == len(tokens)
    plain = hf_generate(hf_engine, tokens, request(frozenset()), monkeypatch)
    assert text_and_finish(plain) == (WITHOUT_MARKER, ["stop"])


def test_hf_a_choice_cut_by_max_tokens_keeps_its_marker(
    hf_engine: Any, mistral_tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = reply_tokens(mistral_tokenizer, 'Sure.[TOOL_CALLS] [{"name"')
    deltas = hf_generate(hf_engine, tokens, request(KEEP, max_tokens=len(tokens)), monkeypatch)
    assert text_and_finish(deltas) == ('Sure.[TOOL_CALLS] [{"name"', ["length"])


# -- the vllm engine, with vLLM's AsyncLLM scripted --


class _FakeParams:
    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs


class _FakeLLM:
    """vLLM's AsyncLLM as the engine uses it: renders a prompt, streams DELTA outputs of one choice."""

    def __init__(self, outputs: list[dict[str, Any]]) -> None:
        self.outputs, self.params, self.closed = outputs, None, False
        self.renderer = types.SimpleNamespace(render_cmpl_async=self._render)

    @staticmethod
    async def _render(prompts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return prompts

    async def generate(
        self, engine_input: Any, params: Any, request_id: str, lora_request: Any
    ) -> AsyncIterator[Any]:
        self.params = params
        try:
            for output in self.outputs:
                fields = {"stop_reason": None, "finish_reason": None, **output}
                choice = types.SimpleNamespace(index=0, **fields)
                yield types.SimpleNamespace(outputs=[choice])
        finally:
            self.closed = True


def vllm_generate(
    tokenizer: Any, outputs: list[dict[str, Any]], generation: GenerationRequest, monkeypatch: Any
) -> tuple[list[ChoiceDelta], _FakeLLM]:
    from services.inference.vllm_engine import LoRAIds, VLLMEngine

    fake_vllm = types.ModuleType("vllm.sampling_params")
    fake_vllm.SamplingParams = _FakeParams  # type: ignore[attr-defined]
    fake_vllm.RequestOutputKind = types.SimpleNamespace(DELTA="delta")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", fake_vllm)
    engine = object.__new__(VLLMEngine)
    llm = _FakeLLM(outputs)
    engine._llm, engine._tokenizer = llm, tokenizer  # type: ignore[assignment]
    engine._skipped_tokens = SkippedTokens(tokenizer)
    engine._ids, engine._paths, engine._running, engine._waiting = LoRAIds(), {}, 0, 0

    async def run() -> list[ChoiceDelta]:
        return [delta async for deltas in engine.generate(generation) for delta in deltas]

    return asyncio.run(run()), llm


def one_token_per_output(tokenizer: Any, tokens: list[int], finish: dict[str, Any]) -> list[dict[str, Any]]:
    """vLLM's DELTA outputs, one token each, with its text as vLLM decodes it (special tokens skipped)."""
    outputs = [{"token_ids": [t], "text": tokenizer.decode([t], skip_special_tokens=True)} for t in tokens]
    outputs[-1].update(finish)
    return outputs


def test_vllm_keeps_the_marker_only_for_a_request_that_keeps_it(
    mistral_tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = reply_tokens(mistral_tokenizer)  # ends with </s>, which vLLM reports with the last output
    outputs = one_token_per_output(mistral_tokenizer, tokens, {"finish_reason": "stop"})
    kept, llm = vllm_generate(mistral_tokenizer, outputs, request(KEEP), monkeypatch)
    assert text_and_finish(kept) == (WITH_MARKER, ["stop"])
    assert sum(d.token_count for d in kept) == len(tokens)
    assert llm.params.kwargs["skip_special_tokens"] is False, "vLLM matches stop strings with the marker"
    plain, llm = vllm_generate(mistral_tokenizer, outputs, request(frozenset()), monkeypatch)
    assert llm.params.kwargs["skip_special_tokens"] is True
    assert text_and_finish(plain) == ("".join(o["text"] for o in outputs), ["stop"]), "vLLM's own text"


def test_vllm_a_stop_token_that_ends_the_choice_is_not_text(
    mistral_tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a stop token that is no special token: vLLM leaves it out of the text, and so does the engine
    tokens = reply_tokens(mistral_tokenizer, 'Sure.[TOOL_CALLS] [{"name": "f", "arguments": {}}]!')
    finish = {"finish_reason": "stop", "stop_reason": tokens[-1]}
    outputs = one_token_per_output(mistral_tokenizer, tokens, finish)
    deltas, _ = vllm_generate(mistral_tokenizer, outputs, request(KEEP), monkeypatch)
    assert text_and_finish(deltas) == (WITH_MARKER, ["stop"])


def test_vllm_a_stop_string_the_engine_matches_first_ends_the_choice_and_the_request(
    mistral_tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the fake vLLM matches no stop string: the engine's stream, which does, ends the choice
    tokens = reply_tokens(mistral_tokenizer)
    outputs = one_token_per_output(mistral_tokenizer, tokens, {"finish_reason": "stop"})
    generation = request(KEEP, stop=('"arguments"',))
    deltas, llm = vllm_generate(mistral_tokenizer, outputs, generation, monkeypatch)
    assert text_and_finish(deltas) == ('Sure.[TOOL_CALLS] [{"name": "f", ', ["stop"])
    assert llm.closed, "the stream was closed, which aborts the request in vLLM"
