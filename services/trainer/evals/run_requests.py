"""Checks of a run request's own fields: its input (templates or an item reference) and sampling parameters.

Input templates may refer to ``item.`` only (the sample does not exist yet when they are
rendered); an item reference names the item field holding each item's chat messages. Whether
each item resolves them is checked with the items (:mod:`.items`).
"""

from __future__ import annotations

import math
from typing import Any

from services.common.errors import InvalidArgument, shown
from services.trainer.conversions import set_fields
from services.trainer.evals.items import ITEM_PREFIX, MESSAGE_ROLES
from services.trainer.evals.templates import TemplateError, references
from tailor.trainer.v1 import eval_service_pb2 as eval_pb2

TEMPLATE_PARAM = "data_source.input_messages.template"
ITEM_REFERENCE_PARAM = "data_source.input_messages.item_reference"
SAMPLING_PARAM = "data_source.sampling_params"


def check_input(request: eval_pb2.CreateEvalRunRequest) -> tuple[list[dict[str, str]], str]:
    """The run's input templates (role, content) or item reference, checked."""
    if bool(request.input_messages) == bool(request.item_reference):
        raise InvalidArgument(
            "data_source.input_messages must be either a template or an item_reference.",
            param="data_source.input_messages",
        )
    if request.item_reference:
        reference = request.item_reference.strip()
        try:
            references("{{" + reference + "}}")
        except TemplateError as error:
            raise InvalidArgument(
                f"{ITEM_REFERENCE_PARAM}: {shown(str(error))}", param=ITEM_REFERENCE_PARAM
            ) from error
        if not reference.startswith(ITEM_PREFIX):
            raise InvalidArgument(
                f"{ITEM_REFERENCE_PARAM} must name a field of the item, like `item.input`.",
                param=ITEM_REFERENCE_PARAM,
            )
        return [], reference
    templates = []
    for index, message in enumerate(request.input_messages):
        if message.role not in MESSAGE_ROLES:
            raise InvalidArgument(
                f"{TEMPLATE_PARAM}[{index}].role must be one of {', '.join(MESSAGE_ROLES)}.",
                param=f"{TEMPLATE_PARAM}[{index}].role",
            )
        param = f"{TEMPLATE_PARAM}[{index}].content"
        try:
            found = references(message.content)
        except TemplateError as error:
            raise InvalidArgument(f"{param}: {shown(str(error))}", param=param) from error
        foreign = [reference for reference in found if not reference.startswith(ITEM_PREFIX)]
        if foreign:
            raise InvalidArgument(
                f"{param}: `{shown(foreign[0])}` is not an item field; "
                "input templates may refer to `item.` only.",
                param=param,
            )
        templates.append({"role": message.role, "content": message.content})
    return templates, ""


def check_sampling(params: eval_pb2.EvalSamplingParams) -> dict[str, Any]:
    """The sampling parameters that are set, each in OpenAI's range."""
    checks = {
        "temperature": (lambda v: math.isfinite(v) and 0 <= v <= 2, "a number from 0 to 2"),
        "top_p": (lambda v: math.isfinite(v) and 0 < v <= 1, "a number greater than 0 and at most 1"),
        "max_completion_tokens": (lambda v: v >= 1, "at least 1"),
    }
    fields = set_fields(params)
    for name, (valid, expected) in checks.items():
        if name in fields and not valid(fields[name]):
            param = f"{SAMPLING_PARAM}.{name}"
            raise InvalidArgument(f"{param} must be {expected}.", param=param)
    return fields
