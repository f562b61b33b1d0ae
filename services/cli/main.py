"""The ``tailor`` command's entry point: the parser, global options, and errors turned into exit codes.

Each resource module registers its own subcommands (``register``) and handlers
(``run(args, cli) -> exit code``); this module only parses, builds the shared
:class:`Cli`, and catches what must never reach the user as a traceback: API errors,
an unreachable API, a missing key, Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import openai

from services.cli import chat, files, jobs, models
from services.cli.context import FAILED, INTERRUPTED, Cli, CliError, describe_api_error

EPILOG = """\
The API is --base-url/--api-key, else OPENAI_BASE_URL/OPENAI_API_KEY, else the local `make up`.
Exit codes: 0 success, 1 an error or a failed job, 2 a bad command line, 3 a cancelled job.
See docs/cli.md."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tailor",
        description="Fine-tune and chat with models through Tailor's (or any) OpenAI-compatible API.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_global_options(parser)
    resources = parser.add_subparsers(dest="resource", required=True, metavar="RESOURCE")
    for module in (files, jobs, chat, models):
        module.register(resources)
    _add_to_every_command(parser)
    return parser


def add_global_options(parser: argparse.ArgumentParser) -> None:
    """--base-url, --api-key and --json; one left out sets nothing, so it keeps a value given earlier."""
    parser.add_argument(
        "--base-url", default=argparse.SUPPRESS, help="the API's /v1 URL (env OPENAI_BASE_URL)"
    )
    parser.add_argument("--api-key", default=argparse.SUPPRESS, help="the API key (env OPENAI_API_KEY)")
    parser.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print the API's JSON, for scripts"
    )


def _add_to_every_command(parser: argparse.ArgumentParser) -> None:
    """The global options after the subcommand too (``tailor files list --json``), where scripts put them."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in set(action.choices.values()):
                if any(isinstance(a, argparse._SubParsersAction) for a in command._actions):
                    _add_to_every_command(command)
                else:
                    add_global_options(command)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cli = Cli(
        base_url=getattr(args, "base_url", None),
        api_key=getattr(args, "api_key", None),
        json=getattr(args, "json", False),
    )
    try:
        return int(args.run(args, cli))
    except CliError as error:
        cli.note(f"error: {error}")
    except openai.APIError as error:
        cli.note(f"error: {describe_api_error(error, str(cli.client.base_url))}")
    except KeyboardInterrupt:
        cli.note("interrupted")
        return INTERRUPTED
    except BrokenPipeError:
        # `tailor ... | head`: the reader left. Python's recipe: point stdout at /dev/null so
        # that the flush at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return FAILED


if __name__ == "__main__":
    sys.exit(main())
