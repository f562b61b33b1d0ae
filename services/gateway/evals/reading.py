"""How eval requests are read: OpenAI's unions by their ``type``, errors by their whole path.

The parts OpenAI makes a union (a data source config, a testing criterion, a run's data
source, its source and input messages) are taken as JSON objects and read by their
``type`` (:func:`type_of`), so that a type Tailor does not serve is a 400 naming exactly that
``type`` (``testing_criteria[1].type``) with the ones it does; a served type is then read
as its model (:func:`parsed`), so that a bad field is a 400 naming its full path
(``data_source.sampling_params.temperature``), through the same mapping as every other
validation failure (:func:`services.gateway.errors.from_validation_error`). /openapi.json
still shows each such part as the shapes served (:func:`documented_as`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, ValidationError

from services.common.errors import shown
from services.gateway.errors import from_validation_error, invalid_request

M = TypeVar("M", bound=BaseModel)


def parsed(model: type[M], raw: Any, *where: str | int) -> M:
    """``raw`` read as ``model``; a 400 naming the field by its whole path (``where`` then the field's)."""
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        problems = [{**problem, "loc": ("body", *where, *problem["loc"])} for problem in error.errors()]
        raise from_validation_error(RequestValidationError(problems)) from None


def param_of(*where: str | int) -> str:
    """``("testing_criteria", 1, "type")`` -> ``testing_criteria[1].type``."""
    param = ""
    for part in where:
        param += f"[{part}]" if isinstance(part, int) else (f".{part}" if param else part)
    return param


def type_of(raw: Any, served: tuple[str, ...], what: str, *where: str | int) -> str:
    """The ``type`` of the object ``raw`` at ``where``: 400 naming ``<where>.type`` unless it is served."""
    if not isinstance(raw, dict):
        raise invalid_request(
            f"Invalid value for '{param_of(*where)}': expected an object.",
            param=param_of(*where),
            code="invalid_type",
        )
    kind = raw.get("type")
    param = param_of(*where, "type")
    if kind is None:
        raise invalid_request(
            f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
        )
    if kind not in served:
        raise invalid_request(
            f"Tailor does not support {what} of type '{shown(str(kind))}'; supported: {', '.join(served)}.",
            param=param,
            code="unsupported_value",
        )
    return str(kind)


def _inlined(schema: Any, definitions: dict[str, Any]) -> Any:
    if isinstance(schema, list):
        return [_inlined(part, definitions) for part in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        return _inlined(definitions[schema["$ref"].rsplit("/", 1)[-1]], definitions)
    return {key: _inlined(value, definitions) for key, value in schema.items()}


def documented_as(*models: type[BaseModel]) -> Callable[[dict[str, Any]], None]:
    """A ``json_schema_extra`` that documents a field read by ``type`` (a JSON object here) as
    one of ``models``, inlined, so that /openapi.json shows the shapes served."""

    def document(schema: dict[str, Any]) -> None:
        shapes = []
        for model in models:
            shape = model.model_json_schema()
            shapes.append(_inlined(shape, shape.pop("$defs", {})))
        description = schema.get("description")
        schema.clear()
        schema.update(shapes[0] if len(shapes) == 1 else {"oneOf": shapes})
        if description:
            schema["description"] = description

    return document


class Closed(BaseModel):
    """A shape OpenAI defines whole: an unknown field is a 400 naming it."""

    model_config = ConfigDict(extra="forbid")
