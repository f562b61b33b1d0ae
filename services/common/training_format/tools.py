"""Checks of tools: the calls an assistant makes, and the function definitions an example offers.

Both OpenAI's current form (``tool_calls``, ``tools``) and its deprecated one (``function_call``,
``functions``) are accepted, as OpenAI's fine-tuning API accepts them; :mod:`.examples` turns
the deprecated form into the current one for the chat templates.
"""

from __future__ import annotations

from typing import Any

from services.common.training_format.problems import check_keys, fail, json_type, shorten

_TOOL_CALL_KEYS = frozenset({"id", "type", "function"})
_FUNCTION_CALL_KEYS = frozenset({"name", "arguments"})


def check_tool_calls(calls: Any, where: str) -> None:
    if type(calls) is not list or not calls:
        fail("invalid_tool_calls", f"{where} must be a non-empty list, got {json_type(calls)}")
    for index, call in enumerate(calls):
        at = f"{where}[{index}]"
        if type(call) is not dict:
            fail("invalid_tool_calls", f"{at} must be an object, got {json_type(call)}")
        check_keys(call, _TOOL_CALL_KEYS, at)
        if type(call.get("id")) is not str:
            fail("invalid_tool_calls", f"{at}.id must be a string")
        if call.get("type") != "function":
            fail("invalid_tool_calls", f'{at}.type must be "function", got {shorten(call.get("type"))}')
        check_function_call(call.get("function"), f"{at}.function")


def check_function_call(call: Any, where: str) -> None:
    if type(call) is not dict:
        fail(
            "invalid_tool_calls",
            f"{where} must be an object with name and arguments, got {json_type(call)}",
        )
    check_keys(call, _FUNCTION_CALL_KEYS, where)
    name = call.get("name")
    if type(name) is not str or not name:
        fail("invalid_tool_calls", f"{where}.name must be a non-empty string")
    # OpenAI's arguments are the JSON text the model writes, not an object: training keeps its bytes.
    if type(call.get("arguments")) is not str:
        fail("invalid_tool_calls", f"{where}.arguments must be a string (the arguments' JSON text)")


_TOOL_KEYS = frozenset({"type", "function"})
_FUNCTION_KEYS = frozenset({"name", "description", "parameters", "strict"})


def check_tool_settings(holder: dict[str, Any], prefix: str) -> None:
    """``tools``, ``functions`` and ``parallel_tool_calls`` of an example (or of a preference input)."""
    if "tools" in holder:
        tools = holder["tools"]
        if type(tools) is not list:
            fail("invalid_tools", f"{prefix}tools must be a list, got {json_type(tools)}")
        for index, tool in enumerate(tools):
            at = f"{prefix}tools[{index}]"
            if type(tool) is not dict or tool.get("type") != "function":
                fail("invalid_tools", f'{at} must be an object with type "function"')
            check_keys(tool, _TOOL_KEYS, at)
            _check_function_definition(tool.get("function"), f"{at}.function")
    if "functions" in holder:
        functions = holder["functions"]
        if type(functions) is not list:
            fail("invalid_tools", f"{prefix}functions must be a list, got {json_type(functions)}")
        for index, function in enumerate(functions):
            _check_function_definition(function, f"{prefix}functions[{index}]")
    if "parallel_tool_calls" in holder and type(holder["parallel_tool_calls"]) is not bool:
        fail("invalid_tools", f"{prefix}parallel_tool_calls must be true or false")


def _check_function_definition(function: Any, where: str) -> None:
    if type(function) is not dict:
        fail("invalid_tools", f"{where} must be an object, got {json_type(function)}")
    check_keys(function, _FUNCTION_KEYS, where)
    name = function.get("name")
    if type(name) is not str or not name:
        fail("invalid_tools", f"{where}.name must be a non-empty string")
    if "description" in function and type(function["description"]) is not str:
        fail("invalid_tools", f"{where}.description must be a string")
    if "parameters" in function and type(function["parameters"]) is not dict:
        fail("invalid_tools", f"{where}.parameters must be a JSON Schema object")
    if "strict" in function and type(function["strict"]) is not bool:
        fail("invalid_tools", f"{where}.strict must be true or false")
