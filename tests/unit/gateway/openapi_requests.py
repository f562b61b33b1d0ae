"""Requests drawn from an OpenAPI document with Hypothesis, and the check that no answer is a 5xx.

The fast fuzz of the gateway over fake services (test_openapi_fuzz.py); the real stack is
fuzzed by schemathesis (tests/e2e/test_api_fuzzing.py). This one adds what schemathesis does
not send: malformed multipart bodies. Every documented
operation; path parameters with ':', '/', '%' and unicode; query parameters and JSON bodies
from the declared schemas, mostly well-formed and sometimes with values of the wrong type or
out of range; multipart uploads with parts in any order, possibly unterminated; with a valid
key or none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from hypothesis import strategies as st

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
ANY_JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
PATH_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cc", "Cs"), exclude_characters="?#"),
    min_size=1,
    max_size=24,
) | st.sampled_from(["ft:tailor-tiny:org-a::abc", "tailor/tiny-2", "tailor%2Ftiny-2", "..", "%00", "file-x"])
MULTIPART_BOUNDARY = "fuzzboundary"


@dataclass
class DrawnRequest:
    method: str
    path: str
    params: dict[str, Any]
    headers: dict[str, str]
    content: bytes | None


def from_schema(schema: dict[str, Any], components: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """Values for a JSON schema; at random, a value of any type instead (validation must answer 400)."""
    if "$ref" in schema:
        return from_schema(components[schema["$ref"].rsplit("/", 1)[1]], components, depth)
    if depth > 4:
        return JSON_SCALARS
    options = schema.get("anyOf") or schema.get("oneOf")
    if options:
        shaped = st.one_of([from_schema(option, components, depth + 1) for option in options])
    elif "const" in schema:
        shaped = st.just(schema["const"])
    elif "enum" in schema:
        shaped = st.sampled_from(schema["enum"])
    else:
        shaped = _typed(schema, components, depth)
    return st.one_of(shaped, shaped, shaped, ANY_JSON)  # mostly well-formed


def _typed(schema: dict[str, Any], components: dict[str, Any], depth: int) -> st.SearchStrategy[Any]:
    kind = schema.get("type")
    if kind == "string":
        return st.text(max_size=schema.get("maxLength", 16) + 2)
    if kind == "integer":
        return st.integers(schema.get("minimum", -5) - 1, schema.get("maximum", 300) + 1)
    if kind == "number":
        return st.floats(schema.get("minimum", -3.0) - 1, schema.get("maximum", 3.0) + 1, allow_nan=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {}), components, depth + 1), max_size=3)
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        required = set(schema.get("required", ()))
        return st.fixed_dictionaries(
            {
                name: from_schema(sub, components, depth + 1)
                for name, sub in properties.items()
                if name in required
            },
            optional={
                name: from_schema(sub, components, depth + 1)
                for name, sub in properties.items()
                if name not in required
            },
        )
    return ANY_JSON


def _multipart_body(data: st.DataObject) -> bytes:
    parts = data.draw(
        st.lists(
            st.tuples(
                st.sampled_from(
                    ["file", "purpose", "expires_after[anchor]", "expires_after[seconds]", "other"]
                ),
                st.none() | st.sampled_from(["t.jsonl", "x.csv", ""]),
                st.binary(max_size=64)
                | st.sampled_from([b"fine-tune", b"batch", b'{"messages": []}\n', b"3600"]),
            ),
            max_size=4,
        ),
        label="multipart parts",
    )
    body = b""
    for name, filename, value in parts:
        disposition = f'form-data; name="{name}"' + (
            f'; filename="{filename}"' if filename is not None else ""
        )
        body += (
            f"--{MULTIPART_BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"
        )
    if data.draw(st.booleans(), label="closing boundary"):
        body += f"--{MULTIPART_BOUNDARY}--\r\n".encode()
    return body


def draw_request(data: st.DataObject, document: dict[str, Any], key: str) -> DrawnRequest:
    """One request to one of ``document``'s operations."""
    components = document.get("components", {}).get("schemas", {})
    operations = [(path, method) for path, item in document["paths"].items() for method in item]
    path, method = data.draw(st.sampled_from(operations), label="operation")
    operation = document["paths"][path][method]
    params: dict[str, Any] = {}
    for parameter in operation.get("parameters", ()):
        if parameter["in"] == "path":
            path = path.replace("{" + parameter["name"] + "}", data.draw(PATH_TEXT, label=parameter["name"]))
        elif parameter["in"] == "query" and data.draw(st.booleans()):
            value = data.draw(from_schema(parameter.get("schema", {}), components), label=parameter["name"])
            if isinstance(value, str | int | float | bool):
                params[parameter["name"]] = value
    headers = {"Authorization": f"Bearer {key}"} if data.draw(st.integers(0, 9), label="keyed") else {}
    content = None
    body = operation.get("requestBody", {}).get("content", {})
    if "application/json" in body:
        payload = data.draw(from_schema(body["application/json"]["schema"], components), label="body")
        content = httpx.Request("POST", "http://x", json=payload).content
        headers["content-type"] = "application/json"
    elif "multipart/form-data" in body:
        content = _multipart_body(data)
        headers["content-type"] = f"multipart/form-data; boundary={MULTIPART_BOUNDARY}"
    return DrawnRequest(method.upper(), path, params, headers, content)


def send_and_check(base_url: str, request: DrawnRequest) -> httpx.Response:
    """Sends the request; asserts no 5xx, a request id, and OpenAI's envelope on errors."""
    response = httpx.request(
        request.method,
        base_url + request.path,
        params=request.params,
        content=request.content,
        headers=request.headers,
        timeout=60,
    )
    assert response.status_code < 500, (request, response.text)
    assert response.headers.get("x-request-id")
    if response.status_code >= 400:
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}, response.text
    return response
