"""Strict Kubernetes schema validation with kubernetes-validate's bundled schemas, cached.

``kubernetes_validate.validate`` re-reads the multi-megabyte definitions file on every
call; rendering three trees and four components validates a few hundred objects, so the
validator per (version, kind) is built once here from the same schema files and the same
rules (strict: unknown fields are errors).
"""

from __future__ import annotations

import functools
import re
from typing import Any

import jsonschema
import kubernetes_validate
from kubernetes_validate import utils
from referencing import Registry, Resource


@functools.cache
def _schema_version(desired: str) -> str:
    """The newest bundled schema version not newer than ``desired`` (as the library picks it)."""
    return [v for v in utils.all_versions() if utils.major_minor(v) <= utils.major_minor(desired)][-1]


@functools.cache
def _validator(desired: str, kind: str, api_version: str) -> jsonschema.protocols.Validator:
    version = _schema_version(desired)
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    directory = f"kubernetes-json-schema/v{version}-local-strict"
    try:
        schema = utils.schema_contents(f"{directory}/{kind.lower()}-{group_version}.json", desired)
    except FileNotFoundError:
        raise kubernetes_validate.SchemaNotFoundError(
            version=utils.major_minor(desired), kind=kind, api_version=api_version
        ) from None
    definitions = utils.schema_contents(f"{directory}/_definitions.json", desired)
    registry: Registry[Any] = Resource.from_contents(definitions) @ (
        Resource.from_contents(schema) @ Registry()
    )
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


def validate_strict(obj: dict[str, Any], version: str) -> list[str]:
    """Every schema violation of ``obj`` in Kubernetes ``version``, as 'path: message'."""
    validator = _validator(version, obj["kind"], obj["apiVersion"])
    return [
        f"{'/'.join(str(p) for p in error.absolute_path)}: {error.message}"
        for error in validator.iter_errors(obj)
    ]
