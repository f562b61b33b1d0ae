"""What the SDK relies on beyond the happy path, against the real services: pages, errors, limits, no 5xx."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.e2e.conftest import KEY_A, KEY_B, RATE_LIMITED_PER_MINUTE, Stack

pytestmark = pytest.mark.slow

EXAMPLE = json.dumps(
    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Ahoy!"}]}
)


def test_auto_pagination_walks_several_pages_and_ends(stack: Stack) -> None:
    client = stack.client(KEY_B)
    uploaded = [
        client.files.create(file=(f"notes-{i}.txt", b"note"), purpose="user_data").id for i in range(5)
    ]
    walked = [f.id for f in client.files.list(purpose="user_data", limit=2)]
    assert walked[:5] == uploaded[::-1]
    first_page = client.files.list(purpose="user_data", limit=2)
    assert first_page.has_more is True and len(first_page.data) == 2

    training = client.files.create(file=("t.jsonl", "\n".join([EXAMPLE] * 10).encode()), purpose="fine-tune")
    jobs = []
    for i in range(3):
        job = client.fine_tuning.jobs.create(
            model="tailor-tiny", training_file=training.id, suffix=f"page{i}", hyperparameters={"n_epochs": 1}
        )
        jobs.append(job.id)
        cancelled = client.fine_tuning.jobs.cancel(job.id)  # cancel: no CPU spent on training them
        assert cancelled.status == "cancelled"
    listed = [j.id for j in client.fine_tuning.jobs.list(limit=1)]
    assert listed[:3] == jobs[::-1]
    with pytest.raises(openai.BadRequestError):  # cancelling a finished job: 400, never a retried 409
        client.fine_tuning.jobs.cancel(jobs[0])


def test_a_training_file_with_bad_json_on_line_3_is_refused_naming_line_3(stack: Stack) -> None:
    client = stack.client()
    lines = [EXAMPLE, EXAMPLE, '{"messages": [{"role": "user"', *[EXAMPLE] * 9]
    uploaded = client.files.create(file=("broken.jsonl", "\n".join(lines).encode()), purpose="fine-tune")
    uploaded = client.files.wait_for_processing(uploaded.id, poll_interval=0.5)
    assert uploaded.status == "error"
    with pytest.raises(openai.BadRequestError) as caught:
        client.fine_tuning.jobs.create(model="tailor-tiny", training_file=uploaded.id)
    assert "line 3" in caught.value.message
    assert caught.value.param == "training_file"


def test_missing_objects_are_not_found(stack: Stack) -> None:
    client = stack.client()
    for attempt in (
        lambda: client.files.retrieve("file-doesnotexist"),
        lambda: client.fine_tuning.jobs.retrieve("ftjob-doesnotexist"),
        lambda: client.models.retrieve("ft:tailor-tiny:org-a::nothing"),
        lambda: client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}]),
    ):
        with pytest.raises(openai.NotFoundError):
            attempt()


def test_a_wrong_key_is_an_authentication_error(stack: Stack) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        stack.client("sk-not-a-real-key").models.list()
    assert caught.value.code == "invalid_api_key"


def test_over_the_rate_limit_is_a_rate_limit_error(stack: Stack) -> None:
    client = openai.OpenAI(base_url=f"{stack.rate_limited_url}/v1", api_key=KEY_A, max_retries=0)
    for _ in range(RATE_LIMITED_PER_MINUTE):
        client.models.list()
    with pytest.raises(openai.RateLimitError) as caught:
        client.models.list()
    assert int(caught.value.response.headers["retry-after"]) >= 1


def test_readiness_and_the_openapi_document(stack: Stack) -> None:
    ready = httpx.get(f"{stack.url}/readyz")
    assert ready.status_code == 200
    assert ready.json()["upstreams"] == {"dataset": "SERVING", "trainer": "SERVING", "inference": "SERVING"}
    assert "/v1/chat/completions" in httpx.get(f"{stack.url}/openapi.json").json()["paths"]


HUGE = 2**63  # beyond every integer a contract carries
LONG = "x" * 10_000


@pytest.mark.parametrize(
    ("method", "path", "body", "param"),
    [
        ("POST", "/v1/chat/completions", {"max_tokens": 2**31}, "max_tokens"),
        ("POST", "/v1/chat/completions", {"max_completion_tokens": 2**31}, "max_completion_tokens"),
        ("POST", "/v1/chat/completions", {"seed": HUGE}, "seed"),
        ("POST", "/v1/chat/completions", {"seed": 10**30}, "seed"),
        ("POST", "/v1/completions", {"prompt": "Hi", "max_tokens": 2**31}, "max_tokens"),
        (
            "POST",
            "/v1/fine_tuning/jobs",
            {"hyperparameters": {"n_epochs": 2**31}},
            "hyperparameters.n_epochs",
        ),
        (
            "POST",
            "/v1/fine_tuning/jobs",
            {"method": {"type": "supervised", "supervised": {"hyperparameters": {"batch_size": 2**31}}}},
            "method.supervised.hyperparameters.batch_size",
        ),
        ("POST", "/v1/fine_tuning/jobs", {"model": LONG}, "model"),
        ("POST", "/v1/fine_tuning/jobs", {"training_file": LONG}, "training_file"),
        ("GET", f"/v1/fine_tuning/jobs?after={LONG}", None, "after"),
        ("GET", f"/v1/fine_tuning/jobs/{LONG}", None, "fine_tuning_job_id"),
        ("GET", f"/v1/files?after={LONG}", None, "after"),
    ],
)
def test_out_of_range_integers_and_huge_values_are_a_4xx_naming_the_field_never_a_5xx(
    stack: Stack, method: str, path: str, body: dict[str, object] | None, param: str
) -> None:
    # Each once was a 500: an int past the contract's int32/int64, or a 10 KB value echoed
    # in an error message larger than gRPC passes on as a status.
    defaults = {
        "/v1/chat/completions": {"model": "tailor-tiny", "messages": [{"role": "user", "content": "Hi"}]},
        "/v1/completions": {"model": "tailor-tiny"},
        "/v1/fine_tuning/jobs": {"model": "tailor-tiny", "training_file": "file-missing"},
    }
    payload = {**defaults.get(path, {}), **(body or {})} if method == "POST" else None
    response = httpx.request(
        method, f"{stack.url}{path}", json=payload, headers={"Authorization": f"Bearer {KEY_A}"}, timeout=30
    )
    assert 400 <= response.status_code < 500, response.text
    error = response.json()["error"]
    assert error["param"] == param and len(error["message"]) < 500, error
