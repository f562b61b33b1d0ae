"""Identifiers with OpenAI's prefixes (``file-``, ``ftjob-``, ``ftevent-``, ``ftckpt-``, ``chatcmpl-``)."""

from __future__ import annotations

import secrets
import string

_ALPHABET = string.ascii_letters + string.digits


def random_token(length: int) -> str:
    """A random alphanumeric string; 24 characters carry about 143 bits."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def new_id(prefix: str, length: int = 24) -> str:
    """A new unique id such as ``file-3fZ...``; ``prefix`` is given without the dash."""
    return f"{prefix}-{random_token(length)}"


def new_model_suffix() -> str:
    """The 8-character id segment that ends a fine-tuned model name, as OpenAI's."""
    return random_token(8)
