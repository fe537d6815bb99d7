"""The test-support schema checker the local-model tests rely on: it must reject what it claims to check."""

from __future__ import annotations

from typing import Any

from tests.json_checks import is_json_prefix, is_whole_json, longest_blank_run, nesting_depth, schema_errors

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "answer": {"type": "string", "enum": ["yes", "no"]},
        "score": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
    },
    "required": ["answer"],
    "additionalProperties": False,
}


def test_a_valid_value_has_no_errors() -> None:
    assert schema_errors({"answer": "yes", "score": 3, "tags": ["a"]}, SCHEMA) == []


def test_each_kind_of_violation_is_reported() -> None:
    assert schema_errors([], SCHEMA)  # wrong type
    assert schema_errors({}, SCHEMA)  # missing required
    assert schema_errors({"answer": "maybe"}, SCHEMA)  # not in enum
    assert schema_errors({"answer": "no", "extra": 1}, SCHEMA)  # additional property
    assert schema_errors({"answer": "no", "score": True}, SCHEMA)  # a boolean is not an integer
    assert schema_errors({"answer": "no", "score": 1.5}, SCHEMA)
    assert schema_errors({"answer": "no", "tags": ["a", "b", "c"]}, SCHEMA)  # maxItems
    assert schema_errors({"answer": "no", "tags": [1]}, SCHEMA)  # items


def test_an_unsupported_keyword_is_an_error_not_a_pass() -> None:
    assert schema_errors("x", {"type": "string", "pattern": "^y$"})


def test_prefix_and_whole_document() -> None:
    assert is_json_prefix('{"a": [1, {"b": "c') and not is_whole_json('{"a": [1, {"b": "c')
    assert is_whole_json('{"a": 1} ') and not is_json_prefix('{"a": 1}}')


def test_blank_runs_are_measured_outside_strings_only() -> None:
    assert longest_blank_run('{"a": "x    y",\n"b": 1}') == 1
    assert longest_blank_run('{\n  "a": 1}') == 3
    assert longest_blank_run('{"a\\"   ":1}') == 0  # an escaped quote does not end the string
    assert longest_blank_run("{}") == 0


def test_nesting_depth() -> None:
    values: list[Any] = [1, {}, [], {"a": [1]}, [[{"b": {}}]], {"a": 1, "b": {"c": []}}]
    assert [nesting_depth(v) for v in values] == [0, 1, 1, 2, 4, 3]
