"""Generation over gRPC on each engine: mixed-adapter batches, streaming, determinism, parameters."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from services.common.base_models import BaseModelSpec
from services.common.grpc_client import rpc_error
from tailor.inference.v1 import inference_service_pb2 as pb
from tests.integration.inference.adapter_factory import reference_greedy
from tests.integration.inference.conftest import (
    ALPHA_REPLY,
    BRAVO_REPLY,
    AdmissionGate,
    Replica,
    chat_request,
    complete,
    expect_error,
)
from tests.support.grpc_services import as_organization

# One event loop for the session: replicas on the vLLM engine share an engine, whose output task lives on it.
pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_two_adapters_and_the_base_in_one_batch_each_answer_their_own(
    replica: Replica, trained_adapters: dict[str, Path], tailor_tiny_dir: Path
) -> None:
    alpha = await replica.upload("ft:tailor-tiny:org-a::alpha", trained_adapters[ALPHA_REPLY])
    bravo = await replica.upload("ft:tailor-tiny:org-a::bravo", trained_adapters[BRAVO_REPLY])
    gate = AdmissionGate(replica.runtime.engine)
    await gate.shut()
    calls = [
        asyncio.create_task(
            complete(replica.stub, chat_request("hello there", adapter=alpha, max_tokens=12))
        ),
        asyncio.create_task(
            complete(replica.stub, chat_request("hello there", adapter=bravo, max_tokens=12))
        ),
        asyncio.create_task(complete(replica.stub, chat_request("hello there", max_tokens=12))),
    ]
    # All three queue (the adapters load meanwhile), then join the batch in the same step.
    await gate.open_when_waiting(3)
    alpha_out, bravo_out, base_out = await asyncio.gather(*calls)

    assert alpha_out.text == ALPHA_REPLY
    assert bravo_out.text == BRAVO_REPLY
    assert base_out.text == reference_greedy(tailor_tiny_dir, "hello there", 12)
    assert alpha_out.finish_reasons == {0: pb.FINISH_REASON_STOP}
    assert base_out.finish_reasons == {0: pb.FINISH_REASON_LENGTH}
    assert base_out.usage.completion_tokens == 12


async def test_greedy_stream_equals_transformers_generate(
    replica: Replica, trained_adapters: dict[str, Path], tailor_tiny_dir: Path
) -> None:
    alpha = await replica.upload("ft:tailor-tiny:org-a::alpha", trained_adapters[ALPHA_REPLY])
    for adapter, adapter_dir in [(None, None), (alpha, trained_adapters[ALPHA_REPLY])]:
        streamed = await complete(
            replica.stub, chat_request("what is the time?", adapter=adapter, max_tokens=40)
        )
        assert streamed.messages > 2, "the text should arrive over several messages"
        assert streamed.text == reference_greedy(tailor_tiny_dir, "what is the time?", 40, adapter_dir)


async def test_requests_joining_a_running_batch_leave_its_greedy_outputs_unchanged(
    replica: Replica, trained_adapters: dict[str, Path]
) -> None:
    # Compared as text, which is what a user sees: logits differ in the last float32 bits
    # between batch shapes (padding columns, a different matmul blocking), never enough
    # here to change a greedy choice.
    alpha = await replica.upload("ft:tailor-tiny:org-a::alpha", trained_adapters[ALPHA_REPLY])
    bravo = await replica.upload("ft:tailor-tiny:org-a::bravo", trained_adapters[BRAVO_REPLY])
    long_request = chat_request("tell me a long story", max_tokens=80)
    alone = await complete(replica.stub, long_request)

    async def joined_mid_stream() -> str:
        text, joiners = "", []
        with as_organization("org-a"):
            async for response in replica.stub.GenerateCompletion(long_request):
                text += "".join(delta.text for delta in response.deltas)
                if len(text) > 10 and not joiners:  # well into decoding: others join now
                    joiners = [
                        asyncio.create_task(complete(replica.stub, chat_request("hi", adapter=alpha))),
                        asyncio.create_task(
                            complete(
                                replica.stub,
                                chat_request("a much longer question, please", adapter=bravo, n=2),
                            )
                        ),
                        asyncio.create_task(
                            complete(replica.stub, chat_request("another one", max_tokens=30))
                        ),
                    ]
        results = await asyncio.gather(*joiners)
        assert results[0].text == ALPHA_REPLY and results[1].texts == {0: BRAVO_REPLY, 1: BRAVO_REPLY}
        return text

    assert alone.finish_reasons == {0: pb.FINISH_REASON_LENGTH}
    assert await joined_mid_stream() == alone.text


async def test_stop_strings_are_cut_and_never_half_streamed(
    replica: Replica, trained_adapters: dict[str, Path]
) -> None:
    alpha = await replica.upload("ft:tailor-tiny:org-a::alpha", trained_adapters[ALPHA_REPLY])
    streamed_texts = []
    with as_organization("org-a"):
        async for response in replica.stub.GenerateCompletion(
            chat_request("hey", adapter=alpha, stop=["says h"])
        ):
            streamed_texts += [delta.text for delta in response.deltas if delta.text]
            final = response
    assert "".join(streamed_texts) == "Alpha "
    assert not any("says" in text for text in streamed_texts)
    assert final.usage.completion_tokens >= 2


async def test_n_choices_with_a_seed_are_reproducible(replica: Replica) -> None:
    request = chat_request("pick some words", temperature=1.0, top_p=0.9, seed=1234, n=3, max_tokens=8)
    first = await complete(replica.stub, request)
    second = await complete(replica.stub, request)
    assert first.texts == second.texts and len(first.texts) == 3
    assert len(set(first.texts.values())) > 1, "each choice samples on its own"
    assert first.usage.completion_tokens == 3 * 8
    assert first.finish_reasons == {
        0: pb.FINISH_REASON_LENGTH,
        1: pb.FINISH_REASON_LENGTH,
        2: pb.FINISH_REASON_LENGTH,
    }


async def test_a_raw_prompt_is_continued(replica: Replica) -> None:
    request = pb.GenerateCompletionRequest(
        base_model="tailor-tiny",
        prompt="Once upon a time",
        sampling=pb.SamplingParams(temperature=0.0, max_tokens=5),
    )
    completion = await complete(replica.stub, request)
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens == 5


async def test_unknown_base_model_and_bad_parameters_are_invalid_arguments(replica: Replica) -> None:
    cases = [
        (chat_request("hi", base_model="llama-70b"), "model"),
        (chat_request("hi", temperature=2.5), "temperature"),
        (chat_request("hi", top_p=0.0), "top_p"),
        (chat_request("hi", max_tokens=0), "max_tokens"),
        (chat_request("hi", max_tokens=100_000), "max_tokens"),
        (chat_request("hi", n=129), "n"),
        (chat_request("hi", stop=["a", "b", "c", "d", "e"]), "stop"),
        (chat_request("hi", stop=[""]), "stop"),
        (pb.GenerateCompletionRequest(base_model="tailor-tiny"), "messages"),
    ]
    for request, param in cases:
        error = await expect_error(complete(replica.stub, request))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (param, error.details())
        assert rpc_error(error).param == param
    assert replica.runtime.engine.load().running == 0


@pytest.fixture(scope="session")
def tiny_mistral_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from services.common.tiny_models import TINY_MODELS

    return TINY_MODELS["tiny-mistral"].ensure(tmp_path_factory.mktemp("sliding-window-models"))


async def test_sliding_window_rows_joining_a_running_batch_answer_as_alone(
    replica_factory: Callable[..., Any], tiny_mistral_dir: Path
) -> None:
    # tiny-mistral's layers all slide over a 64-token window. A request decodes past it; then one
    # whose prompt alone is longer joins, and a short one (two choices) that crosses it later: the
    # batch pads each on the left of the others, and every answer must stay the reference's.
    story = "Tell me a story about a lighthouse keeper"
    notes = (
        "Here are my notes from the trip, please read them all and then say what you think: we left "
        "early on Monday, drove along the coast for three hours, stopped at a small town with a "
        "harbour and a market, ate fish by the water, and walked up the hill to the old church "
        "before the rain came in from the sea."
    )

    def request(prompt: str, max_tokens: int, n: int = 1) -> pb.GenerateCompletionRequest:
        return chat_request(prompt, base_model="tiny-mistral", max_tokens=max_tokens, n=n)

    def reference(prompt: str, max_tokens: int) -> str:
        # An untrained base may end on part of a UTF-8 character, which engines never stream.
        return reference_greedy(tiny_mistral_dir, prompt, max_tokens).rstrip("\ufffd")

    overrides = {
        "base_models": {"tiny-mistral": BaseModelSpec(source=str(tiny_mistral_dir))},
        "inference_base_model": "tiny-mistral",
    }
    async with replica_factory(**overrides) as replica:
        text, messages, joiners = "", 0, []
        with as_organization("org-a"):
            async for response in replica.stub.GenerateCompletion(request(story, 80)):
                text += "".join(delta.text for delta in response.deltas)
                messages += 1
                if messages == 50:  # a message a step or more: 65+ tokens, past the window
                    joiners = [
                        asyncio.create_task(complete(replica.stub, request(notes, 16))),
                        asyncio.create_task(complete(replica.stub, request("hi", 70, n=2))),
                    ]
        assert joiners, "the first request ended before the others joined"
        long_prompt, short_prompt = await asyncio.gather(*joiners)
        assert long_prompt.usage.prompt_tokens > 64
        assert short_prompt.usage.prompt_tokens + 70 > 64

    assert text == reference(story, 80)
    assert long_prompt.text == reference(notes, 16)
    assert short_prompt.texts == {0: reference("hi", 70), 1: reference("hi", 70)}
