"""structlog configuration: JSON lines for machines, aligned text for a person at a terminal.

Every log line carries the service name and, inside a request, the request id and
organization bound by the gRPC interceptor (or the gateway's middleware) through
structlog's contextvars, so a request can be followed across services.

The format is ``TAILOR_LOG_FORMAT``: ``json`` (one object per line, what a log collector
reads), ``console`` (structlog's ConsoleRenderer: time, level, message, then key=value),
or ``auto``, the default, which picks ``console`` when stdout is a terminal and ``json``
otherwise. So ``make up`` in a terminal reads like a program's output, while the same
processes under Kubernetes, a pipe or a test harness write JSON, without anyone setting
anything. Each service decides for its own stdout; ``make up``'s children share the
launcher's terminal, so they all decide alike.

What is logged at which level is decided where the line is written; the rule for the
terminal is that routine traffic (every internal call, every successful read through the
gateway) is ``debug``, and what a person wants to see is ``info`` or above: a job's
progress and its end (:mod:`services.trainer.events`), requests that change something,
and every error.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal, TextIO

import structlog

LogFormat = Literal["auto", "json", "console"]


def chosen_format(fmt: LogFormat | str, stream: TextIO) -> Literal["json", "console"]:
    """The format to write to ``stream``: ``auto`` is ``console`` on a terminal, ``json`` elsewhere."""
    if fmt == "json" or fmt == "console":
        return fmt
    if fmt != "auto":
        raise ValueError(f"unknown log format {fmt!r}: use auto, json or console")
    return "console" if _is_terminal(stream) else "json"


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty())


def _renderers(fmt: Literal["json", "console"], *, colors: bool) -> list[structlog.types.Processor]:
    """The last processors of a line: its time stamp and how it is written."""
    if fmt == "json":
        return [
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ]
    return [
        # a person reads local wall-clock time; the machine format keeps UTC
        structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=False),
        # plain tracebacks: the default rich one prints local variables, which may hold secrets
        structlog.dev.ConsoleRenderer(colors=colors, exception_formatter=structlog.dev.plain_traceback),
    ]


def configure_logging(
    service: str, *, level: str = "info", fmt: LogFormat | str = "auto", stream: TextIO | None = None
) -> None:
    """Configures structlog and routes the standard library's loggers (grpc, uvicorn) through it.

    ``stream`` is where lines go (stdout when None); ``fmt`` as :func:`chosen_format` reads it.
    """
    stream = stream if stream is not None else sys.stdout
    chosen = chosen_format(fmt, stream)
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.StackInfoRenderer(),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *_renderers(chosen, colors=_is_terminal(stream)),
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)
