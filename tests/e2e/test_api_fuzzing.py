"""schemathesis over every operation of the real gateway: no 5xx, OpenAI's error envelope, declared shapes.

What a hostile or careless client can send is far more than the hand-written cases of
test_api_behaviour.py: schemathesis draws requests from the gateway's OpenAPI document, valid
and invalid (positive and negative modes, with its coverage phase's boundary values), against
``python -m services.local_stack`` with the hf engine. Its stateful phase follows the document's
OpenAPI links (``LINKS`` in services/gateway/app.py): an upload to its retrieve, content, delete
and a job on it; a job to its events, checkpoints, pause, resume and cancel; a model to its
retrieve and delete. A file and a job are made first, so that the walks from the listings reach
real objects. A last test sends every name and value the document has, each in turn 10 KB
long: schemathesis draws short strings, and an error must never quote a value whole.

Every answer is below 500; every non-2xx answer is OpenAI's envelope
``{"error": {"message", "type", "param", "code"}}`` with a message of at most
:data:`MESSAGE_LIMIT` characters; every answer matches the schema the document declares for it,
and schemathesis's other checks hold (see :data:`CHECKS`). The run is bounded: derandomized,
a fixed number of examples per operation and of stateful scenarios (about a minute on two
cores). The stack's rate limit is far above the run's pace, so that the run measures the API
rather than the token bucket. The totals (requests by status class and by operation) are printed after the module.

The tests are made at collection from the document as the gateway builds it (schemathesis's
``from_fixture`` loader needs ``Node._nodeid``, which pytest 9.2 no longer has); the first test
checks that the served ``/openapi.json`` is that document.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import hypothesis
import openai
import pytest
import schemathesis
from schemathesis.checks import (
    allow_header_conformance,
    content_type_conformance,
    ensure_resource_availability,
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
    use_after_free,
)

from services.gateway.app import create_app
from services.gateway.config import GatewaySettings
from tests.support.local_stack import running_stack

pytestmark = pytest.mark.slow

FUZZ_KEY = "sk-fuzz-org-0001"
SEED = 16
EXAMPLES_PER_OPERATION = 100
STATEFUL_SCENARIOS = 60
STATEFUL_STEPS = 8
MESSAGE_LIMIT = 2000
# far above what the run sends (a few thousand requests a minute), so that no answer is a 429,
# while the limiter (and its headers) stays in the path as in production
RATE_LIMIT_PER_MINUTE = 1_000_000
ENVELOPE_FIELDS = {"message", "type", "param", "code"}


@schemathesis.check
def openai_error_envelope(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> None:
    """A non-2xx answer is OpenAI's error envelope, its message bounded."""
    if response.status_code < 400:
        return None
    try:
        body = json.loads(response.content)
    except ValueError:
        raise AssertionError(f"{response.status_code} without JSON: {response.content[:200]!r}") from None
    error = body.get("error") if isinstance(body, dict) else None
    assert isinstance(error, dict) and set(error) == ENVELOPE_FIELDS, f"not OpenAI's envelope: {body!r:.300}"
    assert isinstance(error["message"], str) and 0 < len(error["message"]) <= MESSAGE_LIMIT, (
        f"message of {len(str(error['message']))} characters"
    )
    assert isinstance(error["type"], str) and error["type"], f"no error type: {error!r:.300}"
    return None


# Every check schemathesis has, but one: positive_data_acceptance expects any schema-valid request
# to succeed, and a request may be schema-valid yet name a model or file that does not exist, for
# which OpenAI's answer (and Tailor's) is 400 or 404.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    missing_required_header,
    unsupported_method,
    allow_header_conformance,
    use_after_free,
    ensure_resource_availability,
    ignored_auth,
    openai_error_envelope,
]


class Tally:
    """Every answer the run got, by operation and status: the figures the note quotes."""

    def __init__(self) -> None:
        self.by_operation: Counter[tuple[str, int]] = Counter()

    def add(self, operation: str, status: int) -> None:
        self.by_operation[operation, status] += 1

    def report(self) -> list[str]:
        classes: Counter[str] = Counter()
        for (_, status), n in self.by_operation.items():
            classes[f"{status // 100}xx"] += n
        by_class = ", ".join(f"{kind}: {n}" for kind, n in sorted(classes.items()))
        lines = [f"schemathesis: {sum(classes.values())} requests; {by_class}"]
        operations = sorted({operation for operation, _ in self.by_operation})
        for operation in operations:
            statuses = {s: n for (o, s), n in sorted(self.by_operation.items()) if o == operation}
            lines.append(f"  {operation}: " + ", ".join(f"{s} x{n}" for s, n in statuses.items()))
        return lines


TRAINING_EXAMPLE = {
    "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Ahoy!"}]
}


@pytest.fixture(scope="module")
def gateway_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The stack, with one processed training file and one job in it, so that the walks from
    ``GET /v1/files`` and ``GET /v1/fine_tuning/jobs`` reach real objects (drawn ids are 404s)."""
    data_dir = tmp_path_factory.mktemp("fuzz") / "data"
    with running_stack(
        data_dir, TAILOR_API_KEYS=f"{FUZZ_KEY}=org-fuzz", TAILOR_GATEWAY_RATE_LIMIT_PER_MINUTE=str(RATE_LIMIT_PER_MINUTE)
    ) as platform:
        client = openai.OpenAI(base_url=f"{platform.url}/v1", api_key=FUZZ_KEY)
        lines = "\n".join(json.dumps(TRAINING_EXAMPLE) for _ in range(10)).encode()
        training = client.files.create(file=("seed.jsonl", lines), purpose="fine-tune")
        client.files.wait_for_processing(training.id, poll_interval=0.2)
        client.fine_tuning.jobs.create(
            model="tailor-tiny", training_file=training.id, hyperparameters={"n_epochs": 1}
        )
        yield platform.url


def _document() -> dict[str, Any]:
    """The gateway's OpenAPI document, built as the gateway builds it (the tests are made from it
    at collection, before any stack runs; the first test checks the served one is the same)."""
    return create_app(GatewaySettings(api_keys=f"{FUZZ_KEY}=org-fuzz")).openapi()


schema = schemathesis.openapi.from_dict(
    _document(),
    config=schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "headers": {"Authorization": f"Bearer {FUZZ_KEY}"},
            "generation": {"mode": "all", "max-examples": EXAMPLES_PER_OPERATION, "deterministic": True},
            "checks": {"enabled": False},
        }
    ),
)
TALLY = Tally()


@schema.hook
def after_call(
    context: schemathesis.HookContext, case: schemathesis.Case, response: schemathesis.Response
) -> None:
    TALLY.add(case.operation.label, response.status_code)


@pytest.fixture(scope="module", autouse=True)
def _print_the_totals(request: pytest.FixtureRequest) -> Iterator[None]:
    """The totals on the terminal after the module, whatever pytest's capture (the note quotes them)."""
    yield
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print("\n" + "\n".join(TALLY.report()))


def test_the_served_document_is_the_one_fuzzed(gateway_url: str) -> None:
    assert httpx.get(f"{gateway_url}/openapi.json").json() == json.loads(json.dumps(_document()))


@schema.parametrize()
def test_no_operation_answers_a_5xx_or_leaves_openai_shapes(
    case: schemathesis.Case, gateway_url: str
) -> None:
    case.call_and_validate(base_url=gateway_url, checks=CHECKS)


def test_no_walk_along_the_documented_links_answers_a_5xx(gateway_url: str) -> None:
    class Walk(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            return {"base_url": gateway_url}

        def validate_response(self, response: Any, case: schemathesis.Case, **kwargs: Any) -> None:
            case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs)

    Walk.run(
        settings=hypothesis.settings(
            max_examples=STATEFUL_SCENARIOS,
            stateful_step_count=STATEFUL_STEPS,
            derandomize=True,
            deadline=None,
            suppress_health_check=list(hypothesis.HealthCheck),
        )
    )


LONG = "k" * 10_000  # far past any name or value an error may quote whole
# A valid body per JSON operation, so that a long value reaches the field's own validation
# (max_tokens 1: a request that is accepted generates one token, not two thousand).
BASE_BODIES: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {
        "model": "tailor-tiny",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 1,
    },
    "/v1/completions": {"model": "tailor-tiny", "prompt": "Hi", "max_tokens": 1},
    "/v1/fine_tuning/jobs": {"model": "tailor-tiny", "training_file": "file-missing"},
    "/v1/webhook_endpoints": {
        "name": "fuzz",
        "url": "http://127.0.0.1:9/",
        "event_types": ["fine_tuning.job.cancelled"],
    },
    "/v1/webhook_endpoints/{webhook_endpoint_id}": {},
    "/v1/evals": {
        "data_source_config": {"type": "custom", "item_schema": {"type": "object"}},
        "testing_criteria": [
            {"type": "string_check", "name": "s", "input": "{{sample.output_text}}", "reference": "a", "operation": "eq"}
        ],
    },
    "/v1/evals/{eval_id}": {},
    "/v1/evals/{eval_id}/runs": {
        "data_source": {
            "type": "completions",
            "model": "tailor-tiny",
            "source": {"type": "file_content", "content": [{"item": {}}]},
            "input_messages": {"type": "template", "template": [{"role": "user", "content": "Hi"}]},
            "sampling_params": {"max_completion_tokens": 1},
        }
    },
}


def _long_value_requests(document: dict[str, Any]) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    """(method, path template, path, httpx arguments): every path and query parameter, top-level
    string field, key of a top-level map, unknown field name, upload purpose and filename of the
    document, each in turn 10 KB long."""
    for template, item in document["paths"].items():
        for method, operation in item.items():
            parameters = operation.get("parameters", ())
            path = template
            for parameter in (p for p in parameters if p["in"] == "path"):
                path = path.replace("{" + parameter["name"] + "}", "x")
            for parameter in (p for p in parameters if p["in"] == "path"):
                yield method, template, template.replace("{" + parameter["name"] + "}", LONG), {}
            for parameter in (p for p in parameters if p["in"] == "query"):
                yield method, template, path, {"params": {parameter["name"]: LONG}}
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                base = BASE_BODIES[template]
                name = content["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
                properties = document["components"]["schemas"][name]["properties"]
                for field, schema in properties.items():
                    if "string" in json.dumps(schema):
                        yield method, template, path, {"json": {**base, field: LONG}}
                    if "additionalProperties" in json.dumps(schema):  # a map: metadata, logit_bias
                        yield method, template, path, {"json": {**base, field: {LONG: "1"}}}
                yield method, template, path, {"json": {**base, LONG: 1}}
            if "multipart/form-data" in content:
                small_file = {"file": ("a.jsonl", b"{}")}
                yield method, template, path, {"data": {"purpose": LONG}, "files": small_file}
                long_name = {"file": (LONG + ".txt", b"{}")}
                yield method, template, path, {"data": {"purpose": "fine-tune"}, "files": long_name}


def test_a_10_kb_name_or_value_anywhere_is_answered_without_echoing_it(gateway_url: str) -> None:
    headers = {"Authorization": f"Bearer {FUZZ_KEY}"}
    problems = []
    with httpx.Client(base_url=gateway_url, headers=headers, timeout=60) as client:
        for method, template, path, arguments in _long_value_requests(_document()):
            response = client.request(method.upper(), path, **arguments)
            TALLY.add(f"{method.upper()} {template} (10 KB values)", response.status_code)
            sent = f"{method.upper()} {path[:70]} {str(arguments)[:100]}"
            if response.status_code >= 500:
                problems.append(f"{sent}: {response.status_code}")
            elif response.status_code >= 400:
                error = response.json().get("error") or {}
                if set(error) != ENVELOPE_FIELDS:
                    problems.append(f"{sent}: not the envelope: {response.text[:200]}")
                elif len(error["message"]) > MESSAGE_LIMIT or len(error["param"] or "") > 200:
                    quoted = f"{len(error['message'])} characters, param {error['param']!r:.60}"
                    problems.append(f"{sent}: echoed ({quoted})")
    assert not problems, "\n".join(problems)
