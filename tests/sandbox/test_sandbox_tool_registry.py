"""The registry is the one source of tool schemas; bad calls come back as results, never exceptions."""

from __future__ import annotations

import json

import jsonschema
import pytest

from sandbox.tools import TOOLS, ToolContext, ToolKind, call_tool, get_tool, tool_schemas

EXPECTED = {
    "execute_python": ToolKind.EXECUTE,
    "execute_bash": ToolKind.EXECUTE,
    "run_tests": ToolKind.EXECUTE,
    "debug_code": ToolKind.EXECUTE,
    "analyze_code": ToolKind.READ,
    "search_docs": ToolKind.READ,
    "read_file": ToolKind.READ,
    "list_files": ToolKind.READ,
    "search_code": ToolKind.READ,
    "write_file": ToolKind.WRITE,
    "apply_patch": ToolKind.WRITE,
}


def test_every_tool_has_a_valid_schema_and_a_kind():
    assert {name: tool.kind for name, tool in TOOLS.items()} == EXPECTED
    for schema in tool_schemas():
        assert set(schema) == {"name", "description", "parameters"}
        assert schema["description"] and get_tool(schema["name"]) is not None
        jsonschema.Draft202012Validator.check_schema(schema["parameters"])
        assert schema["parameters"]["type"] == "object"
        assert schema["parameters"]["additionalProperties"] is False
    json.dumps(tool_schemas())  # serialisable as is, for the chat format and the training data
    assert [s["name"] for s in tool_schemas((ToolKind.WRITE,))] == ["write_file", "apply_patch"]


@pytest.fixture
def ctx(sample_project):
    return ToolContext(project=sample_project)  # no sandbox: bad calls must not need one


@pytest.mark.parametrize(
    ("name", "arguments", "expected"),
    [
        ("rm_everything", {}, "unknown tool 'rm_everything'"),
        ("execute_python", {"code": 42}, "code: 42 is not of type 'string'"),
        ("execute_python", {}, "'code' is a required property"),
        ("execute_python", {"code": "1", "shell": True}, "Additional properties are not allowed"),
        ("execute_bash", {"command": "ls", "timeout": "soon"}, "timeout: 'soon' is not of type 'number'"),
        ("read_file", {"path": "README.md", "max_lines": 0}, "max_lines: 0 is less than the minimum of 1"),
        ("execute_python", "{not json", "arguments are not valid JSON"),
        ("execute_python", [1, 2], "is not of type 'object'"),
        ("analyze_code", {}, "{} should be non-empty"),
        ("analyze_code", {"code": "x = 1", "path": "calc"}, "give exactly one of 'code' or 'path'"),
        ("search_code", {"pattern": "("}, "invalid regular expression"),
        ("read_file", {"path": "../../etc/passwd"}, "is outside the project"),
        ("read_file", {"path": "/etc/passwd"}, "is outside the project"),
        ("read_file", {"path": "nope.txt"}, "nope.txt does not exist"),
        ("read_file", {"path": "calc"}, "calc is a directory"),
    ],
)
def test_bad_calls_return_a_structured_error(ctx, name, arguments, expected):
    result = call_tool(name, arguments, ctx)
    assert result.ok is False
    assert expected in result.error
    assert json.loads(result.to_json())["ok"] is False


def test_execution_without_a_sandbox_is_an_error_result_not_a_crash(ctx):
    result = call_tool("execute_python", {"code": "print(1)"}, ctx)
    assert not result.ok and "no sandbox in this session" in result.error


def test_unknown_tool_lists_the_known_ones(ctx):
    result = call_tool("nope", {}, ctx)
    assert result.data["known_tools"] == sorted(EXPECTED)
