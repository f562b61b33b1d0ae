"""Log lines for people at a terminal, JSON for everything else, and routine calls kept out of sight.

What a user of ``make up`` sees: the format each service picks for its stdout
(``TAILOR_LOG_FORMAT``, ``auto`` by default), how a line reads in each, and which access
lines (internal gRPC calls, gateway requests) stay at debug, below the default level.
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator

import grpc
import pytest
import structlog

from services.common.grpc_interceptors import access_log_level as rpc_level
from services.common.logging import chosen_format, configure_logging
from services.common.settings import CommonSettings
from services.gateway.middleware import access_log_level as http_level


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """configure_logging changes process-wide state: put it back for the other tests."""
    root = logging.getLogger()
    handlers, level, config = root.handlers[:], root.level, structlog.get_config()
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.configure(**config)
    structlog.contextvars.clear_contextvars()


@pytest.fixture
def terminal() -> Iterator[io.TextIOWrapper]:
    """A real terminal (a pseudo-terminal's device end), as `make up`'s stdout is when run by hand."""
    leader, follower = os.openpty()
    stream = open(follower, "w", closefd=True)  # noqa: SIM115 - closed below
    try:
        yield stream
    finally:
        stream.close()
        os.close(leader)


def test_auto_is_console_on_a_terminal_and_json_on_a_pipe(terminal: io.TextIOWrapper) -> None:
    read_end, write_end = os.pipe()
    with open(write_end, "w") as pipe:
        assert chosen_format("auto", terminal) == "console"
        assert chosen_format("auto", pipe) == "json"
    os.close(read_end)


def test_an_explicit_format_wins_over_the_terminal(terminal: io.TextIOWrapper) -> None:
    assert chosen_format("json", terminal) == "json"
    assert chosen_format("console", io.StringIO()) == "console"


def test_auto_is_the_default_and_an_unknown_format_is_refused() -> None:
    assert CommonSettings().log_format == "auto"
    with pytest.raises(ValueError, match="unknown log format 'yaml'"):
        chosen_format("yaml", io.StringIO())


def test_a_console_line_reads_as_text_with_its_fields(restored_logging: None) -> None:
    out = io.StringIO()
    configure_logging("trainer", fmt="console", stream=out)

    structlog.get_logger("tailor.test").warning("disk almost full", free_gib=3)

    line = out.getvalue()
    assert "disk almost full" in line and "free_gib=3" in line and "service=trainer" in line
    assert "warn" in line
    assert not line.lstrip().startswith("{")


def test_a_json_line_is_one_object_with_level_service_and_fields(restored_logging: None) -> None:
    out = io.StringIO()
    configure_logging("gateway", fmt="auto", stream=out)  # a StringIO is no terminal: JSON

    structlog.get_logger("tailor.test").info("request", status="200")

    record = json.loads(out.getvalue())
    assert record["event"] == "request" and record["status"] == "200"
    assert record["level"] == "info" and record["service"] == "gateway" and "timestamp" in record


def test_debug_lines_stay_out_at_the_default_level(restored_logging: None) -> None:
    out = io.StringIO()
    configure_logging("inference", fmt="json", stream=out)

    structlog.get_logger("tailor.test").log(rpc_level(grpc.StatusCode.OK), "rpc")

    assert out.getvalue() == ""


@pytest.mark.parametrize(
    ("code", "level"),
    [
        (grpc.StatusCode.OK, logging.DEBUG),
        (grpc.StatusCode.CANCELLED, logging.DEBUG),
        (grpc.StatusCode.NOT_FOUND, logging.INFO),
        (grpc.StatusCode.INVALID_ARGUMENT, logging.INFO),
        (grpc.StatusCode.FAILED_PRECONDITION, logging.INFO),
        (grpc.StatusCode.INTERNAL, logging.WARNING),
        (grpc.StatusCode.UNAVAILABLE, logging.WARNING),
    ],
)
def test_an_internal_call_is_logged_above_debug_only_when_it_went_wrong(
    code: grpc.StatusCode, level: int
) -> None:
    assert rpc_level(code) == level


@pytest.mark.parametrize(
    ("method", "path", "status", "level"),
    [
        ("GET", "/v1/fine_tuning/jobs/ftjob-1/events", 200, logging.DEBUG),  # a poll
        ("GET", "/healthz", 200, logging.DEBUG),
        ("GET", "/readyz", 503, logging.DEBUG),  # a probe, every few seconds
        ("POST", "/v1/fine_tuning/jobs", 200, logging.INFO),  # changes something
        ("DELETE", "/v1/models/ft:x", 200, logging.INFO),
        ("GET", "/v1/models/nope", 404, logging.INFO),  # refused: the user's to see
        ("POST", "/v1/chat/completions", 500, logging.WARNING),
        ("GET", "/v1/files/file-1/content", None, logging.INFO),  # the client left mid-response
    ],
)
def test_a_gateway_request_is_logged_above_debug_unless_it_is_a_routine_read(
    method: str, path: str, status: int | None, level: int
) -> None:
    assert http_level(method, path, status) == level
