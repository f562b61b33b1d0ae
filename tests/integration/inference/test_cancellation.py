"""A client that goes away (cancel, deadline) stops its generation and frees its batch slot."""

from __future__ import annotations

import grpc
import pytest

from tailor.inference.v1 import inference_service_pb2 as pb
from tests.integration.inference.conftest import Replica, chat_request, complete
from tests.support.grpc_services import as_organization

# One event loop for the session: replicas on the vLLM engine share an engine, whose output task lives on it.
pytestmark = pytest.mark.asyncio(loop_scope="session")

# Long enough that it is still generating when the client leaves (tailor-tiny's base model
# does not stop on its own within this many tokens for this prompt).
ENDLESS = chat_request("tell me a long story", max_tokens=1500)


async def test_cancelling_mid_stream_frees_the_slot(replica: Replica) -> None:
    engine = replica.runtime.engine
    with as_organization("org-a"):
        call = replica.stub.GenerateCompletion(ENDLESS)
        received = 0
        async for _ in call:
            received += 1
            if received == 3:
                call.cancel()
                break
    assert call.cancelled()
    await replica.wait_until(lambda: engine.load().running == 0 and engine.load().waiting == 0)
    after = await complete(replica.stub, chat_request("hi", max_tokens=4))
    assert after.usage.completion_tokens == 4


async def test_a_passed_deadline_stops_generation(replica: Replica) -> None:
    engine = replica.runtime.engine
    with as_organization("org-a"):
        call = replica.stub.GenerateCompletion(ENDLESS, timeout=0.5)
        try:
            async for _ in call:
                pass
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        else:
            raise AssertionError("the call should have run out of time")
    await replica.wait_until(lambda: engine.load().running == 0)
    assert replica.runtime.service.tracker.snapshot().running == 0


async def test_only_the_cancelled_request_stops(replica: Replica) -> None:
    engine = replica.runtime.engine
    with as_organization("org-a"):
        keeps_going = replica.stub.GenerateCompletion(chat_request("tell me a long story", max_tokens=60))
        cancelled = replica.stub.GenerateCompletion(ENDLESS)
        async for _ in cancelled:
            break
        cancelled.cancel()
        text = ""
        finish = None
        async for response in keeps_going:
            for delta in response.deltas:
                text += delta.text
                finish = delta.finish_reason or finish
    assert finish == pb.FINISH_REASON_LENGTH and text
    await replica.wait_until(lambda: engine.load().running == 0)
