"""Penalties, logit_bias and logprobs as an OpenAI SDK user sees them: the real gateway over a real replica.

The replica (each engine) serves its real ``InferenceServicer`` on a loopback port and the
gateway (the real app, with the gateway tests' fakes for the registry) routes to it. What a
user gets must be the reference's reply (:func:`test_sampling_controls.reference`), with log
probabilities that spell out the reply, in the shapes the SDK parses.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import openai
import pytest

from services.common.grpc_server import GrpcServer, ServiceRegistration
from services.common.settings import CommonSettings
from services.inference.server import SERVICE_NAME, InferenceServicer
from tailor.inference.v1 import inference_service_pb2_grpc as pb_grpc
from tests.integration.inference.conftest import Replica
from tests.integration.inference.test_sampling_controls import reference
from tests.unit.gateway.conftest import Gateway, running_gateway

pytestmark = pytest.mark.asyncio(loop_scope="session")

HELLO = [{"role": "user", "content": "hello"}]
MAX_TOKENS = 24


@contextlib.asynccontextmanager
async def gateway_over(replica: Replica, tmp_path: Path) -> AsyncIterator[Gateway]:
    server = GrpcServer(
        CommonSettings(grpc_shutdown_grace_s=0.5, grpc_reflection=False),
        "127.0.0.1:0",
        [
            ServiceRegistration(
                SERVICE_NAME,
                pb_grpc.add_InferenceServiceServicer_to_server,
                InferenceServicer(replica.runtime.service),
            )
        ],
    )
    port = await server.start()
    try:
        async with running_gateway(
            tmp_path, inference_addr=f"127.0.0.1:{port}", gateway_inference_refresh_interval_s=3600.0
        ) as gateway:
            yield gateway
    finally:
        await server.stop()


async def test_penalties_and_logprobs_through_the_api(
    replica: Replica, tailor_tiny_dir: Path, tmp_path: Path
) -> None:
    async with gateway_over(replica, tmp_path) as gateway:
        client = gateway.sdk()
        plain = await client.chat.completions.create(
            model="tailor-tiny", messages=HELLO, max_tokens=MAX_TOKENS, temperature=0
        )
        penalized = await client.chat.completions.create(
            model="tailor-tiny",
            messages=HELLO,
            max_tokens=MAX_TOKENS,
            temperature=0,
            frequency_penalty=2.0,
            logprobs=True,
            top_logprobs=2,
        )
        expected, steps = reference(tailor_tiny_dir, "hello", frequency_penalty=2.0)
        choice = penalized.choices[0]
        assert choice.message.content == expected != plain.choices[0].message.content
        assert plain.choices[0].logprobs is None
        assert choice.logprobs is not None and choice.logprobs.content is not None
        content = choice.logprobs.content
        assert len(content) == len(steps) == penalized.usage.completion_tokens
        assert "".join(t.token for t in content) == expected, "the tokens spell the reply"
        assert all(len(t.top_logprobs) == 2 and t.logprob <= 0 for t in content)
        assert content[0].top_logprobs[0].logprob >= content[0].top_logprobs[1].logprob

        completion = await client.completions.create(
            model="tailor-tiny", prompt="Once upon a time", max_tokens=8, temperature=0, logprobs=3
        )
        logprobs = completion.choices[0].logprobs
        assert logprobs is not None and logprobs.tokens is not None and logprobs.text_offset is not None
        assert "".join(logprobs.tokens) == completion.choices[0].text
        assert logprobs.text_offset == [len("".join(logprobs.tokens[:i])) for i in range(len(logprobs.tokens))]
        assert all(token in top for token, top in zip(logprobs.tokens, logprobs.top_logprobs or [], strict=True))

        from transformers import AutoTokenizer

        orders = AutoTokenizer.from_pretrained(tailor_tiny_dir).convert_tokens_to_ids("Ġorders")
        forced = await client.chat.completions.create(
            model="tailor-tiny", messages=HELLO, max_tokens=3, logit_bias={str(orders): 100}
        )
        assert forced.choices[0].message.content == " orders" * 3

        with pytest.raises(openai.BadRequestError) as caught:
            vocab_size = replica.runtime.engine.vocab_size
            await client.chat.completions.create(
                model="tailor-tiny", messages=HELLO, logit_bias={str(vocab_size): 5}
            )
        assert caught.value.param == "logit_bias"
