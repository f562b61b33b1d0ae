"""Checks of tools: the calls an assistant makes, and the function definitions an example offers.

Both OpenAI's current form (``tool_calls``, ``tools``) and its deprecated one (``function_call``,
``functions``) are accepted, as OpenAI's fine-tuning API accepts them; :mod:`.examples` turns
the deprecated form into the current one for the chat templates.

Each check first asks, in one expression, whether a call or definition is well formed, and
only formats its path (``messages[1].tool_calls[0].function``) to say what is wrong when it is
not: a tool example holds several, and formatting them all would cost about 5% of the
validation speed of such files.
"""

from __future__ import annotations

from typing import Any, NoReturn

from services.common.training_format.problems import check_keys, fail, json_type, shorten

_TOOL_CALL_KEYS = frozenset({"id", "type", "function"})
_FUNCTION_CALL_KEYS = frozenset({"name", "arguments"})


def check_tool_calls(calls: Any, path: str, index: int) -> None:
    """``{path}[{index}].tool_calls``: a non-empty list of function calls with ids."""
    if type(calls) is not list or not calls:
        fail(
            "invalid_tool_calls",
            f"{path}[{index}].tool_calls must be a non-empty list, got {json_type(calls)}",
        )
    for number, call in enumerate(calls):
        if not (
            type(call) is dict
            and _TOOL_CALL_KEYS.issuperset(call)
            and type(call.get("id")) is str
            and call.get("type") == "function"
        ):
            _fail_tool_call(call, f"{path}[{index}].tool_calls[{number}]")
        function = call.get("function")
        if not _is_function_call(function):
            _fail_function_call(function, f"{path}[{index}].tool_calls[{number}].function")


def check_function_call(call: Any, path: str, index: int) -> None:
    """``{path}[{index}].function_call``: OpenAI's deprecated single call."""
    if not _is_function_call(call):
        _fail_function_call(call, f"{path}[{index}].function_call")


def _is_function_call(call: Any) -> bool:
    if type(call) is not dict or not _FUNCTION_CALL_KEYS.issuperset(call):
        return False
    name = call.get("name")
    # OpenAI's arguments are the JSON text the model writes, not an object: training keeps its bytes.
    return type(name) is str and bool(name) and type(call.get("arguments")) is str


def _fail_tool_call(call: Any, at: str) -> NoReturn:
    if type(call) is not dict:
        fail("invalid_tool_calls", f"{at} must be an object, got {json_type(call)}")
    check_keys(call, _TOOL_CALL_KEYS, at)
    if type(call.get("id")) is not str:
        fail("invalid_tool_calls", f"{at}.id must be a string")
    fail("invalid_tool_calls", f'{at}.type must be "function", got {shorten(call.get("type"))}')


def _fail_function_call(call: Any, where: str) -> NoReturn:
    if type(call) is not dict:
        fail(
            "invalid_tool_calls",
            f"{where} must be an object with name and arguments, got {json_type(call)}",
        )
    check_keys(call, _FUNCTION_CALL_KEYS, where)
    name = call.get("name")
    if type(name) is not str or not name:
        fail("invalid_tool_calls", f"{where}.name must be a non-empty string")
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
            if not (type(tool) is dict and tool.get("type") == "function" and _TOOL_KEYS.issuperset(tool)):
                at = f"{prefix}tools[{index}]"
                if type(tool) is not dict or tool.get("type") != "function":
                    fail("invalid_tools", f'{at} must be an object with type "function"')
                check_keys(tool, _TOOL_KEYS, at)
            function = tool.get("function")
            if not _is_function_definition(function):
                _fail_function_definition(function, f"{prefix}tools[{index}].function")
    if "functions" in holder:
        functions = holder["functions"]
        if type(functions) is not list:
            fail("invalid_tools", f"{prefix}functions must be a list, got {json_type(functions)}")
        for index, function in enumerate(functions):
            if not _is_function_definition(function):
                _fail_function_definition(function, f"{prefix}functions[{index}]")
    if "parallel_tool_calls" in holder and type(holder["parallel_tool_calls"]) is not bool:
        fail("invalid_tools", f"{prefix}parallel_tool_calls must be true or false")


def _is_function_definition(function: Any) -> bool:
    if type(function) is not dict or not _FUNCTION_KEYS.issuperset(function):
        return False
    name = function.get("name")
    return (
        type(name) is str
        and bool(name)
        and ("description" not in function or type(function["description"]) is str)
        and ("parameters" not in function or type(function["parameters"]) is dict)
        and ("strict" not in function or type(function["strict"]) is bool)
    )


def _fail_function_definition(function: Any, where: str) -> NoReturn:
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
    fail("invalid_tools", f"{where}.strict must be true or false")
