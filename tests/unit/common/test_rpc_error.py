"""rpc_error: how a failed internal call reads to its caller."""

from __future__ import annotations

import grpc

from services.common.grpc_client import rpc_error


def _error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


def test_a_client_stream_cut_under_a_write_reads_as_unavailable() -> None:
    # grpc.aio's own status when the peer ended the call, or died, while the client wrote
    decoded = rpc_error(_error(grpc.StatusCode.INTERNAL, "Internal error from Core"))
    assert decoded.status == grpc.StatusCode.UNAVAILABLE


def test_any_other_internal_error_stays_internal() -> None:
    decoded = rpc_error(_error(grpc.StatusCode.INTERNAL, "boom"))
    assert (decoded.status, decoded.message) == (grpc.StatusCode.INTERNAL, "boom")
