"""``tailor models list | delete MODEL``: the models the organization can call, and removing a fine-tune.

The list is the API's: base models, fine-tuned models and their servable checkpoints,
each with its owner (the organization for its own fine-tunes), so what is shown is what
``chat`` accepts.
"""

from __future__ import annotations

import argparse

from services.cli.context import FAILED, OK, Cli, local_time


def register(resources: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    models = resources.add_parser("models", help="list models, delete a fine-tuned model")
    commands = models.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("list", help="list the models the organization can use").set_defaults(run=run_list)
    delete = commands.add_parser("delete", help="delete a fine-tuned model")
    delete.add_argument("model", help="the fine-tuned model (ft:...)")
    delete.set_defaults(run=run_delete)


def run_list(args: argparse.Namespace, cli: Cli) -> int:
    models = list(cli.client.models.list())
    if cli.json:
        cli.emit_list(models)
        return OK
    cli.table([(m.id, m.owned_by, local_time(m.created)) for m in models], ("ID", "OWNED BY", "CREATED"))
    return OK


def run_delete(args: argparse.Namespace, cli: Cli) -> int:
    deleted = cli.client.models.delete(args.model)
    if cli.json:
        cli.emit(deleted)
    else:
        cli.print(f"{deleted.id}: {'deleted' if deleted.deleted else 'not deleted'}")
    return OK if deleted.deleted else FAILED
