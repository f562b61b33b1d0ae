"""The floor under the gateway's cost: the least a Python HTTP-to-gRPC streaming proxy does.

A bare ASGI application on the gateway's server stack (uvicorn with uvloop and httptools),
answering ``POST /v1/chat/completions`` for bench/gateway_overhead.py: it parses the JSON
body, starts the same ``GenerateCompletion`` stream on the same upstream with the same
signed token, and writes each message's deltas as ``data:`` chunks encoded by msgspec, then
``[DONE]``. No API key, registry, routing, validation, logging, metrics or disconnect
handling: what is left is the HTTP server, one gRPC stream and the encoding, which no
gateway on this stack can do without. Its CPU per request, measured in the same run as the
gateway's, is the figure the gateway's own work adds to.

    python bench/gateway_floor.py --port P --upstream HOST:PORT --key PRIVATE_KEY.pem
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import grpc  # noqa: E402
import msgspec  # noqa: E402
import uvicorn  # noqa: E402

from services.common.internal_auth.keys import load_private_key  # noqa: E402
from services.common.internal_auth.tokens import TokenMinter  # noqa: E402
from tailor.inference.v1 import inference_service_pb2 as pb  # noqa: E402
from tailor.inference.v1 import inference_service_pb2_grpc as pb_grpc  # noqa: E402

ORGANIZATION = "bench"  # bench/gateway_overhead.py's
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode
_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


def floor_app(upstream: str, minter: TokenMinter, adapter: pb.AdapterRef) -> Any:
    """The ASGI application; the channel opens with the lifespan."""
    state: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()  # startup
            state["channel"] = grpc.aio.insecure_channel(upstream)
            state["stub"] = pb_grpc.InferenceServiceStub(state["channel"])
            await send({"type": "lifespan.startup.complete"})
            await receive()  # shutdown
            await state["channel"].close()
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["method"] == "GET":  # the benchmark's readiness poll
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        asked = _decode(body)
        request = pb.GenerateCompletionRequest(
            base_model=adapter.base_model,
            adapter=adapter,
            chat=pb.ChatInput(messages=[pb.ChatMessage(**m) for m in asked["messages"]]),
            sampling=pb.SamplingParams(max_tokens=asked["max_tokens"], temperature=asked["temperature"]),
        )
        metadata = (("authorization", f"Bearer {minter.token('inference', ORGANIZATION)}"),)
        await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
        head = {"id": "chatcmpl-floor", "object": "chat.completion.chunk", "model": asked["model"]}
        async for response in state["stub"].GenerateCompletion(request, metadata=metadata, timeout=60):
            choices = [{"index": d.index, "delta": {"content": d.text}} for d in response.deltas]
            if choices:
                chunk = b"data: " + _encode({**head, "choices": choices}) + b"\n\n"
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the canned inference server, HOST:PORT")
    parser.add_argument("--key", required=True, help="the private key the gateway signs with")
    parser.add_argument("--adapter", required=True, help="the fine-tuned model the chat asks for")
    parser.add_argument("--base-model", required=True)
    args = parser.parse_args()
    minter = TokenMinter("gateway", load_private_key(Path(args.key)))
    adapter = pb.AdapterRef(name=args.adapter, base_model=args.base_model)
    uvicorn.run(
        floor_app(args.upstream, minter, adapter),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
