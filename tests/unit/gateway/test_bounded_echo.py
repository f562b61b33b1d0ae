"""A made-up name or value quoted in a 400 is cut (services.common.errors.shown), never echoed whole.

Each case once answered with the client's 10 KB string in ``message`` (and some in ``param``):
an unknown field, a ``metadata`` key, a content part's type, a file's ``purpose`` and filename.
"""

from __future__ import annotations

from typing import Any

import pytest

from services.common.errors import MAX_SHOWN_CHARS
from tests.unit.gateway.conftest import Gateway

LONG = "k" * 10_000
CHAT = {"model": "tailor-tiny", "messages": [{"role": "user", "content": "Hi"}]}


def _assert_bounded(body: dict[str, Any], param: str) -> None:
    error = body["error"]
    assert error["param"] == param, error["param"][:200]
    assert len(error["message"]) < 2 * MAX_SHOWN_CHARS + 200, len(error["message"])


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/chat/completions", {**CHAT, LONG: 1}, LONG[: MAX_SHOWN_CHARS - 3] + "..."),
        (
            "/v1/fine_tuning/jobs",
            {"model": "tailor-tiny", "training_file": "file-x", "metadata": {LONG: 1}},
            "metadata." + LONG[: MAX_SHOWN_CHARS - 3] + "...",
        ),
        (
            "/v1/chat/completions",
            {**CHAT, "messages": [{"role": "user", "content": [{"type": LONG}]}]},
            "messages[0].content[0]",
        ),
    ],
    ids=["unknown field", "metadata key", "content part type"],
)
async def test_a_long_made_up_name_in_a_json_body_is_cut_in_the_error(
    gateway: Gateway, path: str, body: dict[str, Any], param: str
) -> None:
    async with gateway.http() as http:
        response = await http.post(path, json=body)
    assert response.status_code == 400
    _assert_bounded(response.json(), param)


async def test_a_long_purpose_is_cut_in_the_error_of_a_listing_and_of_an_upload(gateway: Gateway) -> None:
    async with gateway.http() as http:
        listed = await http.get("/v1/files", params={"purpose": LONG})
        uploaded = await http.post("/v1/files", data={"purpose": LONG}, files={"file": ("a.jsonl", b"{}")})
    assert listed.status_code == uploaded.status_code == 400
    _assert_bounded(listed.json(), "purpose")
    _assert_bounded(uploaded.json(), "purpose")


async def test_a_long_filename_is_cut_in_the_error_of_a_fine_tune_upload(gateway: Gateway) -> None:
    async with gateway.http() as http:
        response = await http.post(
            "/v1/files", data={"purpose": "fine-tune"}, files={"file": (f"{LONG}.txt", b"{}")}
        )
    assert response.status_code == 400
    _assert_bounded(response.json(), "file")


async def test_a_long_unknown_path_is_cut_in_the_404_and_the_405(gateway: Gateway) -> None:
    async with gateway.http() as http:
        unknown = await http.get(f"/v1/{LONG}")
        wrong_method = await http.put(f"/v1/files/{LONG}")
    for answer, status in ((unknown, 404), (wrong_method, 405)):
        assert answer.status_code == status
        message = answer.json()["error"]["message"]
        assert LONG[: MAX_SHOWN_CHARS // 2] in message and len(message) < 2 * MAX_SHOWN_CHARS
