"""How build_plan maps response_format for the local model (pure: no model is loaded)."""

from __future__ import annotations

from typing import Any

from omnirelay.core.types import ChatRequest, Message, ResponseFormat, TextPart
from omnirelay.providers.local import build_plan

SCHEMA: dict[str, Any] = {"type": "object", "properties": {"a": {"type": "integer"}}}


def _plan(fmt: ResponseFormat | None) -> Any:
    req = ChatRequest(model="m", messages=[Message(role="user", content=[TextPart(text="hi")])], response_format=fmt)
    return build_plan(req, {})


def test_json_object_uses_the_gateway_grammar_not_llama_cpps() -> None:
    plan = _plan(ResponseFormat(type="json_object"))
    assert plan.json_object and "response_format" not in plan.kwargs


def test_json_schema_hands_the_schema_to_llama_cpp() -> None:
    plan = _plan(ResponseFormat(type="json_schema", name="x", schema=SCHEMA))
    assert not plan.json_object
    assert plan.kwargs["response_format"] == {"type": "json_object", "schema": SCHEMA}


def test_json_schema_without_a_schema_is_a_json_object() -> None:
    plan = _plan(ResponseFormat(type="json_schema", name="x"))
    assert plan.json_object and "response_format" not in plan.kwargs


def test_text_is_unconstrained() -> None:
    for fmt in (None, ResponseFormat(type="text")):
        plan = _plan(fmt)
        assert not plan.json_object and "response_format" not in plan.kwargs
