"""What every ``tailor`` command shares: where the API is, the client, and how results are printed.

The API comes from ``--base-url``/``--api-key``, else the SDK's own ``OPENAI_BASE_URL`` /
``OPENAI_API_KEY``, else the local stack ``make up`` runs (its address, and the key it
wrote into the data directory) exactly as ``make demo`` finds it, so the command needs no
setup next to ``make up`` and works unchanged against any other deployment.

Output is text for people, or with ``--json`` the SDK objects' JSON for scripts (one
object; a list as OpenAI's ``{"object": "list", "data": [...]}``; a stream as one object
per line). An API error is one line on stderr with the API's message and HTTP status, and
a non-zero exit: a script checks the exit code, a person reads the line, nobody reads a
traceback.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import openai

from services.cli.endpoint import choose_endpoint, no_key_message

# Exit codes, also listed in docs/cli.md.
OK = 0
FAILED = 1  # an API error, a refused file, a failed job
USAGE = 2  # argparse's own code for a bad command line
CANCELLED = 3  # the followed job was cancelled
INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT


class CliError(Exception):
    """A failure the user can act on: printed as ``error: <message>``, exit code ``FAILED``."""


@dataclass
class Cli:
    """The parsed global options, the client made from them on first use, and the output streams."""

    base_url: str | None = None
    api_key: str | None = None
    json: bool = False
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    _client: openai.OpenAI | None = None

    @property
    def client(self) -> openai.OpenAI:
        if self._client is None:
            self._client = make_client(self.base_url, self.api_key)
        return self._client

    def print(self, text: str = "", *, end: str = "\n") -> None:
        self.out.write(text + end)
        self.out.flush()

    def note(self, text: str) -> None:
        """A line for the person, not the script: on stderr, so ``--json`` output stays pure JSON."""
        self.err.write(text + "\n")
        self.err.flush()

    def emit(self, obj: Any) -> None:
        """One SDK object (or plain dict) as JSON on one line."""
        self.print(json.dumps(to_plain(obj)))

    def emit_list(self, items: Iterable[Any]) -> None:
        """Objects as OpenAI's list envelope, the shape the API itself returns."""
        self.print(json.dumps({"object": "list", "data": [to_plain(item) for item in items]}))

    def table(self, rows: Sequence[Sequence[object]], headers: Sequence[str]) -> None:
        """Columns aligned to their widest cell; an empty cell for None."""
        cells = [[("" if value is None else str(value)) for value in row] for row in rows]
        widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(headers)]
        for row in [list(headers), *cells]:
            self.print("  ".join(value.ljust(widths[i]) for i, value in enumerate(row)).rstrip())


def to_plain(obj: Any) -> Any:
    """An SDK model as the JSON the API sent (fields it did not send left out)."""
    if isinstance(obj, openai.BaseModel):
        return obj.to_dict()
    return obj


def local_time(timestamp: float | None) -> str:
    """A Unix time as the user's local ``YYYY-MM-DD HH:MM``; empty when there is none."""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp)) if timestamp else ""


def make_client(base_url: str | None, api_key: str | None) -> openai.OpenAI:
    """The SDK's client for the chosen API (:mod:`.endpoint`); raises CliError when no key can be found."""
    endpoint = choose_endpoint(base_url, api_key)
    if not endpoint.api_key:
        raise CliError(no_key_message(endpoint))
    return openai.OpenAI(base_url=endpoint.base_url, api_key=endpoint.api_key)


def describe_api_error(error: openai.APIError, base_url: str) -> str:
    """One line for an API error: its message and HTTP status, or where the connection failed."""
    if isinstance(error, openai.APITimeoutError):
        return f"the request to {base_url} timed out"
    if isinstance(error, openai.APIConnectionError):
        cause = error.__cause__
        reason = f" ({cause})" if cause is not None and str(cause) else ""
        return (
            f"could not connect to {base_url}{reason}; is the API running there? "
            "(start Tailor with `make up`, or set OPENAI_BASE_URL / --base-url)"
        )
    body = error.body if isinstance(error.body, dict) else {}
    message = body.get("message") or error.message
    if isinstance(error, openai.APIStatusError):
        code = f", {error.code}" if error.code else ""
        return f"{message} (HTTP {error.status_code}{code})"
    return str(message)
