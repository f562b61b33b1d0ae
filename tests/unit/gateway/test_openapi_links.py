"""The OpenAPI document's links and declared answers, which the stateful fuzz of tests/e2e relies on.

A link naming an operation or a parameter that does not exist is silently dropped by clients
(schemathesis's stateful phase would then walk less than it seems to); an answer the gateway
gives but the document does not declare fails schemathesis's status-code check.
"""

from __future__ import annotations

from typing import Any

import schemathesis

from services.gateway.app import create_app
from services.gateway.config import GatewaySettings


def _document() -> dict[str, Any]:
    return create_app(GatewaySettings(api_keys="sk-test-links-0001=org-a")).openapi()


def _operations(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        operation["operationId"]: operation
        for item in document["paths"].values()
        for operation in item.values()
    }


def test_every_link_names_an_operation_and_what_that_operation_takes() -> None:
    document = _document()
    operations = _operations(document)
    schemas = document["components"]["schemas"]
    walked = set()
    for operation in operations.values():
        for name, link in operation["responses"]["200"].get("links", {}).items():
            target = operations[link["operationId"]]
            walked.add(link["operationId"])
            path_parameters = {p["name"] for p in target.get("parameters", ()) if p["in"] == "path"}
            assert set(link.get("parameters", {})) <= path_parameters, name
            if "requestBody" in link:
                body = target["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                assert set(link["requestBody"]) <= set(schemas[body.rsplit("/", 1)[1]]["properties"]), name
    with_an_id = {
        operation_id
        for operation_id, operation in operations.items()
        if any(p["in"] == "path" for p in operation.get("parameters", ()))
    }
    assert with_an_id <= walked, with_an_id - walked  # every operation on one object is reachable


def test_schemathesis_walks_from_an_upload_to_its_deletion_and_to_a_job_on_it() -> None:
    machine = schemathesis.openapi.from_dict(_document()).as_state_machine()
    rules = [name for name in dir(machine) if name.startswith("POST_v1_files___200_")]
    assert any(rule.endswith("__DELETE_v1_files_file_id_") for rule in rules), rules
    assert any(rule.endswith("__POST_v1_fine_tuning_jobs") for rule in rules), rules


def test_refusing_to_delete_a_base_model_is_a_declared_answer() -> None:
    responses = _document()["paths"]["/v1/models/{model}"]["delete"]["responses"]
    assert responses["403"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorResponse"
    }
