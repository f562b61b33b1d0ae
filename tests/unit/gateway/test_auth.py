"""API keys map to organizations (plain or hashed), compared in constant time, never logged; rate limit."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import openai
import pytest

from services.gateway.auth import ApiKeys, Quota, RateLimiter, format_duration, key_digest, parse_hashed_keys
from tests.unit.gateway.conftest import KEY_A, Gateway, GatewayFactory
from tests.unit.gateway.fakes import BASE_MODEL


async def test_missing_and_wrong_keys_are_401_invalid_api_key(gateway: Gateway) -> None:
    for key in ("sk-not-a-key-at-all", KEY_A + "x"):
        with pytest.raises(openai.AuthenticationError) as caught:
            await gateway.sdk(key).models.list()
        assert caught.value.code == "invalid_api_key"
        assert key not in caught.value.message
    async with gateway.http(key=None) as http:
        response = await http.get("/v1/models")
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_api_key"
        assert "Authorization" in response.json()["error"]["message"]
        basic = await http.get("/v1/models", headers={"Authorization": f"Basic {KEY_A}"})
        assert basic.status_code == 401


def test_hashed_key_file(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"# rotated 2026-01\n\n{key_digest('sk-from-a-secret')}=org-k8s\n")
    keys = ApiKeys({"sk-plain-key-1": "org-local"}, path)
    assert keys.organization_of("sk-from-a-secret") == ("org-k8s", key_digest("sk-from-a-secret"))
    assert keys.organization_of("sk-plain-key-1") is not None
    assert keys.organization_of(key_digest("sk-from-a-secret")) is None  # the digest itself is no key
    assert key_digest("abc") == hashlib.sha256(b"abc").hexdigest()


@pytest.mark.parametrize("line", ["sk-plain-key-pasted=org", "abcd=org", f"{'a' * 64}=../etc"])
def test_malformed_key_file_lines_are_refused_without_echoing_them(line: str) -> None:
    with pytest.raises(Exception, match="line 1") as caught:
        parse_hashed_keys(line, "keys")
    assert "sk-plain" not in str(caught.value)


def test_every_configured_key_is_compared(monkeypatch: pytest.MonkeyPatch) -> None:
    """No early exit on a match: the time taken does not tell which key matched."""
    compared: list[str] = []
    real_compare = hmac.compare_digest

    def counting_compare(a: str, b: str) -> bool:
        compared.append(b)
        return real_compare(a, b)

    monkeypatch.setattr("services.gateway.auth.hmac.compare_digest", counting_compare)
    keys = ApiKeys({f"sk-key-number-{i}": f"org-{i}" for i in range(5)})
    assert keys.organization_of("sk-key-number-0") is not None
    assert len(compared) == 5


async def test_a_hashed_key_file_works_end_to_end(gateway_with: GatewayFactory, tmp_path: Path) -> None:
    path = tmp_path / "hashed"
    path.write_text(f"{key_digest('sk-mounted-secret-key')}=org-z\n")
    async with gateway_with(gateway_api_keys_file=path) as gateway:
        models = await gateway.sdk("sk-mounted-secret-key").models.list()
        assert models.data


def test_token_bucket_refills_at_the_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(per_minute=2, clock=lambda: now[0])
    assert limiter.acquire("k") == Quota(limit=2, remaining=1, reset_s=30.0, retry_after_s=0.0)
    assert limiter.acquire("k") == Quota(limit=2, remaining=0, reset_s=60.0, retry_after_s=0.0)
    refused = limiter.acquire("k")
    assert refused is not None and refused.retry_after_s == pytest.approx(30.0)  # one token every 30 s
    assert refused.remaining == 0
    assert limiter.acquire("other") == Quota(2, 1, 30.0, 0.0)  # per key
    now[0] += 30
    granted = limiter.acquire("k")
    assert granted is not None and granted.retry_after_s == 0 and granted.reset_s == pytest.approx(60.0)
    assert RateLimiter(per_minute=0).acquire("k") is None  # disabled


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.0004, "0s"), (0.012, "12ms"), (0.1, "100ms"), (1, "1s"), (8.64, "8.64s"),
     (60, "1m0s"), (360, "6m0s"), (90.5, "1m30.5s"), (3723.25, "1h2m3.25s")],
)
def test_reset_durations_are_written_as_openai_writes_them(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


async def test_over_the_rate_is_429_with_retry_after(gateway_with: GatewayFactory) -> None:
    async with gateway_with(gateway_rate_limit_per_minute=2) as gateway:
        client = gateway.sdk()
        await client.models.list()
        await client.models.list()
        with pytest.raises(openai.RateLimitError) as caught:
            await client.models.list()
        assert caught.value.code == "rate_limit_exceeded"
        headers = caught.value.response.headers
        assert headers["retry-after"] == "30"
        assert headers["x-ratelimit-limit-requests"] == "2"
        assert headers["x-ratelimit-remaining-requests"] == "0"
        assert headers["x-ratelimit-reset-requests"].endswith("s")
        other = await gateway.sdk("sk-test-org-b-0002").models.list()  # another key has its own bucket
        assert other.data


async def test_authenticated_answers_carry_the_keys_rate_limit_headers(gateway_with: GatewayFactory) -> None:
    async with gateway_with(gateway_rate_limit_per_minute=60) as gateway, gateway.http() as http:
        success = await http.get("/v1/models")
        assert success.status_code == 200
        assert success.headers["x-ratelimit-limit-requests"] == "60"
        assert success.headers["x-ratelimit-remaining-requests"] == "59"
        assert success.headers["x-ratelimit-reset-requests"] == "1s"  # one token back a second
        missing = await http.get("/v1/files/file-nope")
        assert missing.status_code == 404
        assert missing.headers["x-ratelimit-remaining-requests"] == "58"
        body = {"model": BASE_MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}
        async with http.stream("POST", "/v1/chat/completions", json=body) as stream:
            assert stream.status_code == 200
            assert stream.headers["x-ratelimit-remaining-requests"] == "57"
            assert [line async for line in stream.aiter_lines()][-2:] == ["data: [DONE]", ""]
        async with gateway.http(key="sk-not-a-key-at-all") as stranger:
            refused = await stranger.get("/v1/models")
            assert refused.status_code == 401 and "x-ratelimit-limit-requests" not in refused.headers


async def test_without_a_rate_limit_no_rate_limit_headers_are_sent(gateway_with: GatewayFactory) -> None:
    async with gateway_with(gateway_rate_limit_per_minute=0) as gateway, gateway.http() as http:
        response = await http.get("/v1/models")
        assert response.status_code == 200
        assert not [name for name in response.headers if name.startswith("x-ratelimit")]


async def test_keys_never_reach_the_logs(gateway: Gateway, capsys: pytest.CaptureFixture[str]) -> None:
    await gateway.sdk().models.list()
    with pytest.raises(openai.AuthenticationError):
        await gateway.sdk("sk-wrong-secret-key").models.list()
    output = capsys.readouterr().out
    assert KEY_A not in output and "sk-wrong-secret-key" not in output
    assert "org-a" in output  # the access line names the organization instead


def test_the_hash_key_helper_writes_lines_the_gateway_accepts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    from services.gateway.auth import main

    monkeypatch.setattr("sys.stdin", io.StringIO("sk-one\n\nsk-two\n"))
    assert main(["hash-key", "acme"]) == 0
    lines = capsys.readouterr().out
    assert "sk-one" not in lines and "sk-two" not in lines
    key_file = tmp_path / "api-keys.sha256"
    key_file.write_text(lines)
    keys = ApiKeys({}, key_file)
    assert len(keys) == 2
    assert keys.organization_of("sk-one") == ("acme", key_digest("sk-one"))

    assert main(["new-key", "acme"]) == 0
    made = capsys.readouterr()
    key = made.err.strip()
    assert key.startswith("sk-tailor-") and key not in made.out
    assert parse_hashed_keys(made.out, "out") == {key_digest(key): "acme"}
    with pytest.raises(SystemExit):
        main(["new-key", "not an org"])
