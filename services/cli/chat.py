"""``tailor chat MODEL [PROMPT]``: talk to a base or fine-tuned model, the answer streamed as it comes.

Three ways in, chosen the way shell tools choose: a prompt on the command line is one
turn; no prompt with a terminal on stdin is a conversation (each turn keeps the ones
before, as a chat does; an empty line or Ctrl-D ends it); no prompt with a pipe reads the
whole of stdin as one prompt (``tailor chat M < question.txt``). Streaming is the point:
the first words of a slow model show up at once, which is also how one sees a fine-tune
does something.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from services.cli.context import FAILED, INTERRUPTED, OK, Cli, CliError


def register(resources: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    chat = resources.add_parser("chat", help="chat with a model, streamed")
    chat.add_argument("model", help="a base model, a fine-tuned model (ft:...) or a checkpoint")
    chat.add_argument("prompt", nargs="?", help="the user message; without it, read from stdin")
    chat.add_argument("--system", help="a system message first")
    chat.add_argument("--max-tokens", type=int, help="the longest answer, in tokens")
    chat.add_argument("--temperature", type=float, help="sampling temperature (0 answers greedily)")
    chat.set_defaults(run=run_chat)


def run_chat(args: argparse.Namespace, cli: Cli) -> int:
    messages: list[dict[str, str]] = [{"role": "system", "content": args.system}] if args.system else []
    if args.prompt is not None:
        return _turn(args, cli, [*messages, {"role": "user", "content": args.prompt}])[0]
    if sys.stdin.isatty() and not cli.json:
        return _converse(args, cli, messages)
    prompt = sys.stdin.read().strip()
    if not prompt:
        raise CliError("no prompt: give one as an argument or on stdin")
    return _turn(args, cli, [*messages, {"role": "user", "content": prompt}])[0]


def _converse(args: argparse.Namespace, cli: Cli, messages: list[dict[str, str]]) -> int:
    cli.note(f"Chatting with {args.model}; an empty line or Ctrl-D ends.")
    while True:
        try:
            prompt = input("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            cli.print()
            return OK
        if not prompt:
            return OK
        messages.append({"role": "user", "content": prompt})
        cli.print(f"{args.model}> ", end="")
        code, answer = _turn(args, cli, messages)
        if code != OK:
            return code
        messages.append({"role": "assistant", "content": answer})


def _turn(args: argparse.Namespace, cli: Cli, messages: list[dict[str, str]]) -> tuple[int, str]:
    """Stream one answer to stdout (or its chunks as JSON lines); the exit code and the answer."""
    options: dict[str, Any] = {}
    if args.max_tokens is not None:
        options["max_tokens"] = args.max_tokens
    if args.temperature is not None:
        options["temperature"] = args.temperature
    stream = cli.client.chat.completions.create(
        model=args.model, messages=messages, stream=True, **options  # type: ignore[arg-type]
    )
    parts: list[str] = []
    finish_reason = None
    try:
        for chunk in stream:
            if cli.json:
                cli.emit(chunk)
            for choice in chunk.choices:
                finish_reason = choice.finish_reason or finish_reason
                if choice.delta.content:
                    parts.append(choice.delta.content)
                    if not cli.json:
                        cli.print(choice.delta.content, end="")
    except KeyboardInterrupt:
        stream.close()
        cli.print()
        return INTERRUPTED, "".join(parts)
    if not cli.json:
        cli.print()
    if finish_reason == "content_filter":
        cli.note("error: the answer was stopped by a content filter")
        return FAILED, "".join(parts)
    return OK, "".join(parts)
