"""TAILOR_API_KEYS parsing: `key=organization,key=organization`, refused with the entry named."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.gateway.config import GatewaySettings, parse_api_keys


def test_keys_map_to_organizations() -> None:
    assert parse_api_keys("sk-aaaaaaaa=org-a, sk-bbbbbbbb=org-b,") == {
        "sk-aaaaaaaa": "org-a",
        "sk-bbbbbbbb": "org-b",
    }
    assert parse_api_keys("") == {}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("sk-aaaaaaaa", "entry 1 .* not 'key=organization'"),
        ("sk-aaaaaaaa=org-a,=org-b", "entry 2"),
        ("short=org-a", "entry 1 .* 8-256"),
        ("sk-aaaaaaaa=org-a,sk-aaaaaaaa=org-b", "entry 2 .* repeats"),
        ("sk-aaaaaaaa=../org", "organization id"),
    ],
)
def test_malformed_keys_are_refused(spec: str, message: str) -> None:
    with pytest.raises(Exception, match=message):
        parse_api_keys(spec)


def test_settings_refuse_malformed_keys_without_echoing_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAILOR_API_KEYS", "sk-secretvalue")
    with pytest.raises(ValidationError) as caught:
        GatewaySettings()
    assert "entry 1" in str(caught.value)
    assert "sk-secretvalue" not in str(caught.value)
