"""What the local-model tests check JSON replies with: a minimal JSON Schema validator for the subset the tests'
schemas use (type, enum, const, properties, required, additionalProperties, items, minItems, maxItems), and
the prefix check from the product (``JsonPrefix``, unit-tested against ``json.loads`` in tests/unit)."""

from __future__ import annotations

import re
from typing import Any

from omnirelay.providers.local_json import JsonPrefix

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}
_KNOWN = {
    "type",
    "enum",
    "const",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "minItems",
    "maxItems",
    "description",
    "title",
}


def _is_type(value: Any, name: str) -> bool:
    if isinstance(value, bool) and name in ("integer", "number"):
        return False  # JSON Schema: true is not a number
    return isinstance(value, _TYPES[name])


def schema_errors(value: Any, schema: dict[str, Any], path: str = "$") -> list[str]:
    """Every way ``value`` breaks ``schema`` (empty when it validates). A keyword outside the subset is an error,
    so a test cannot believe it checked something it did not."""
    unknown = set(schema) - _KNOWN
    if unknown:
        return [f"{path}: schema keywords not supported by this checker: {sorted(unknown)}"]
    errors: list[str] = []
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(value, t) for t in types):
            return [f"{path}: {value!r} is not of type {schema['type']}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} is not one of {schema['enum']}")
    if "const" in schema and value != schema["const"]:
        errors.append(f"{path}: {value!r} is not {schema['const']!r}")
    if isinstance(value, dict):
        props: dict[str, Any] = schema.get("properties", {})
        errors += [f"{path}: missing required {key!r}" for key in schema.get("required", []) if key not in value]
        for key, item in value.items():
            if key in props:
                errors += schema_errors(item, props[key], f"{path}.{key}")
            elif schema.get("additionalProperties") is False:
                errors.append(f"{path}: unexpected property {key!r}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            errors.append(f"{path}: fewer than {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(f"{path}: more than {schema['maxItems']} items")
        if "items" in schema:
            for i, item in enumerate(value):
                errors += schema_errors(item, schema["items"], f"{path}[{i}]")
    return errors


def is_json_prefix(text: str) -> bool:
    """Whether ``text`` is the start of some JSON document (so a reply cut at max_tokens is still well-formed)."""
    return JsonPrefix().feed(text)


def is_whole_json(text: str) -> bool:
    scanner = JsonPrefix()
    return scanner.feed(text) and scanner.complete


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def longest_blank_run(text: str) -> int:
    """The longest run of whitespace between the tokens of a JSON text (inside strings does not count)."""
    return max((len(run) for run in re.findall(r"\s+", _STRING.sub('""', text))), default=0)


def nesting_depth(value: Any) -> int:
    """How deep objects and arrays nest in a parsed JSON value (a scalar is 0, ``{}`` is 1)."""
    if isinstance(value, dict):
        return 1 + max((nesting_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((nesting_depth(v) for v in value), default=0)
    return 0
