"""Ids: OpenAI's prefixes, the requested length, every character of the alphabet in use."""

from __future__ import annotations

import string

from services.common.ids import new_id, new_model_suffix, random_token


def test_tokens_have_the_requested_length_and_only_letters_and_digits() -> None:
    for length in (0, 1, 8, 24, 100):
        token = random_token(length)
        assert len(token) == length
        assert set(token) <= set(string.ascii_letters + string.digits)


def test_every_character_is_drawn() -> None:
    # 480,000 draws of 62 characters: each is expected about 7,700 times; none may be missing
    drawn = set("".join(random_token(24) for _ in range(20_000)))
    assert drawn == set(string.ascii_letters + string.digits)


def test_ids_carry_their_prefix() -> None:
    assert new_id("file").startswith("file-") and len(new_id("file")) == len("file-") + 24
    assert len(new_model_suffix()) == 8
