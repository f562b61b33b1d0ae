"""Trims OpenAI's published OpenAPI document to the response schemas of what Tailor serves.

The full document (``openapi.json`` of github.com/openai/openai-openapi, ~3.4 MB) describes
every OpenAI product; the tests need only the answers of the operations Tailor implements,
the error envelope, and every schema those reach through ``$ref``. This script writes that
subset, with the commit it came from, to ``schemas.json`` next to it (how to refresh:
README.md in this folder).

Only documentation is dropped (descriptions, examples, ``x-oai*``/``x-stainless*`` hints),
and the OpenAPI-only ``discriminator`` (JSON Schema ignores it, and its mapping would name
schemas the subset does not carry); every validation keyword stays exactly as published,
so a diff of ``schemas.json`` after a refresh shows what OpenAI changed. The OpenAPI 3.0
``nullable`` the document still uses in places is translated when the schemas are loaded
(:mod:`tests.support.openai_schemas`), not here.

    python -m tests.support.openai_spec.extract /path/to/openapi.json --commit <sha>
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
OUTPUT = HERE / "schemas.json"
REPOSITORY = "openai/openai-openapi"
SOURCE_PATH = "openapi.json"

# The operations Tailor serves, by OpenAI's operationId (method and path as published).
OPERATIONS = (
    "createFile",
    "listFiles",
    "retrieveFile",
    "deleteFile",
    "downloadFile",
    "createFineTuningJob",
    "listPaginatedFineTuningJobs",
    "retrieveFineTuningJob",
    "cancelFineTuningJob",
    "pauseFineTuningJob",
    "resumeFineTuningJob",
    "listFineTuningEvents",
    "listFineTuningJobCheckpoints",
    "listModels",
    "retrieveModel",
    "deleteModel",
    "createChatCompletion",
    "createCompletion",
    "createEval",
    "listEvals",
    "getEval",
    "updateEval",
    "deleteEval",
    "createEvalRun",
    "getEvalRuns",
    "getEvalRun",
    "cancelEvalRun",
    "deleteEvalRun",
    "getEvalRunOutputItems",
    "getEvalRunOutputItem",
)
# Schemas no operation names but every answer may be: the error envelope.
EXTRA_SCHEMAS = ("ErrorResponse",)

# Keywords that only document; everything else is kept as published.
_DOCUMENTATION = {"description", "example", "examples", "discriminator", "externalDocs"}
# Keywords whose value maps names to schemas (the names are not keywords).
_SCHEMA_MAPS = {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"}
_REF_PREFIX = "#/components/schemas/"


def _is_documentation(key: str) -> bool:
    return key in _DOCUMENTATION or key.startswith("x-")


def _clean(schema: Any, refs: set[str]) -> Any:
    """``schema`` without its documentation; every schema name it references is added to ``refs``."""
    if isinstance(schema, list):
        return [_clean(item, refs) for item in schema]
    if not isinstance(schema, dict):
        return schema
    cleaned: dict[str, Any] = {}
    for key, value in schema.items():
        if _is_documentation(key):
            continue
        if key == "$ref":
            if not value.startswith(_REF_PREFIX):
                raise ValueError(f"unexpected $ref {value!r}: only component schemas are followed")
            refs.add(value.removeprefix(_REF_PREFIX))
            cleaned[key] = value
        elif key in _SCHEMA_MAPS and isinstance(value, dict):
            cleaned[key] = {name: _clean(sub, refs) for name, sub in value.items()}
        elif key in ("enum", "const", "default", "required"):
            cleaned[key] = value  # values, not schemas
        else:
            cleaned[key] = _clean(value, refs)
    return cleaned


def _responses(document: dict[str, Any], operation: dict[str, Any], refs: set[str]) -> dict[str, Any]:
    """``{status: {media type: schema}}`` of an operation's documented answers that have a body."""
    answers: dict[str, Any] = {}
    for status, response in operation.get("responses", {}).items():
        if "$ref" in response:  # a shared response (429): follow it once
            response = document["components"]["responses"][response["$ref"].rsplit("/", 1)[-1]]
        content = {
            media: _clean(body["schema"], refs)
            for media, body in response.get("content", {}).items()
            if "schema" in body
        }
        if content:
            answers[status] = content
    return answers


def trim(document: dict[str, Any], commit: str) -> dict[str, Any]:
    """The subset the tests validate against (see the module docstring)."""
    by_id = {
        operation["operationId"]: (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if isinstance(operation, dict) and "operationId" in operation
    }
    missing = [name for name in OPERATIONS if name not in by_id]
    if missing:
        raise SystemExit(f"the document has no operation {missing}: did OpenAI rename them?")
    refs: set[str] = set(EXTRA_SCHEMAS)
    operations = {}
    for name in OPERATIONS:
        method, path, operation = by_id[name]
        responses = _responses(document, operation, refs)
        operations[name] = {"method": method.upper(), "path": path, "responses": responses}
    published = document["components"]["schemas"]
    schemas: dict[str, Any] = {}
    pending = sorted(refs)
    while pending:
        name = pending.pop()
        if name in schemas:
            continue
        found: set[str] = set()
        schemas[name] = _clean(published[name], found)
        pending.extend(sorted(found - schemas.keys()))
    return {
        "source": {
            "repository": REPOSITORY,
            "commit": commit,
            "path": SOURCE_PATH,
            "openapi": document["openapi"],
            "info_version": document["info"]["version"],
        },
        "operations": operations,
        "components": {"schemas": dict(sorted(schemas.items()))},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("document", type=Path, help=f"{SOURCE_PATH} of {REPOSITORY}")
    parser.add_argument("--commit", required=True, help="the commit the document was taken from")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    arguments = parser.parse_args()
    trimmed = trim(json.loads(arguments.document.read_text()), arguments.commit)
    arguments.output.write_text(json.dumps(trimmed, indent=1, sort_keys=False) + "\n")
    print(
        f"{arguments.output}: {len(trimmed['operations'])} operations, "
        f"{len(trimmed['components']['schemas'])} schemas from {REPOSITORY}@{arguments.commit[:12]}"
    )


if __name__ == "__main__":
    main()
