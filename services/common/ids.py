"""Identifiers with OpenAI's prefixes (``file-``, ``ftjob-``, ``ftevent-``, ``ftckpt-``, ``chatcmpl-``)."""

from __future__ import annotations

import secrets
import string

_ALPHABET = string.ascii_letters + string.digits
# Random bytes below this map evenly onto the alphabet (4 x 62); the others are drawn again.
_EVEN_BELOW = 256 - 256 % len(_ALPHABET)


def random_token(length: int) -> str:
    """A random alphanumeric string; 24 characters carry about 143 bits.

    One draw of random bytes per token rather than ``secrets.choice`` per character (ten
    times cheaper; the gateway makes an id per completion), each byte kept only when it maps
    evenly onto the alphabet.
    """
    chars: list[str] = []
    while len(chars) < length:
        chars.extend(_ALPHABET[b % len(_ALPHABET)] for b in secrets.token_bytes(length) if b < _EVEN_BELOW)
    return "".join(chars[:length])


def new_id(prefix: str, length: int = 24) -> str:
    """A new unique id such as ``file-3fZ...``; ``prefix`` is given without the dash."""
    return f"{prefix}-{random_token(length)}"


def new_model_suffix() -> str:
    """The 8-character id segment that ends a fine-tuned model name, as OpenAI's."""
    return random_token(8)
