"""``tailor``: the command line for Tailor, or any OpenAI-compatible fine-tuning API.

Built on the official ``openai`` SDK alone (no Tailor-only endpoint), so what works here
works in a user's own script, against a local ``make up`` or a remote deployment. One
module per resource (:mod:`.files`, :mod:`.jobs`, :mod:`.chat`, :mod:`.models`), the
pure drawing of a job's progress in :mod:`.progress`, and what every command shares (the
client, ``--json``, API errors as one readable line) in :mod:`.context`;
:mod:`.main` builds the parser. docs/cli.md is the user's guide.
"""
