"""The Anthropic inbound translation of what Claude Code 2.1.x sends: ``role: "system"`` entries in ``messages``,
``anthropic-beta``, ``output_config`` and adaptive thinking, ``cache_control`` on tools, images and tool
results, and the signature carried inside a ``tool_use`` id (rendered, then read back)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from omnirelay.core.errors import GatewayError
from omnirelay.core.events import StreamStart, ToolCallArgs, ToolCallStart
from omnirelay.core.types import (
    ChatRequest,
    ChatResponse,
    Choice,
    ImagePart,
    Message,
    Reasoning,
    ResponseFormat,
    TextPart,
    ToolCall,
    Usage,
)
from omnirelay.protocols.anthropic_messages import PROTOCOL, split_tool_use_id, tool_use_id

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
EPHEMERAL = {"type": "ephemeral"}
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}}


def _parse(body: dict[str, Any], headers: dict[str, str] | None = None) -> ChatRequest:
    base: dict[str, Any] = {"model": "claude-opus-4-8", "max_tokens": 100}
    return PROTOCOL.parse_request(msgspec.json.encode({**base, **body}), headers or {})


def test_system_entries_in_messages_stay_in_place_block_by_block() -> None:
    req = _parse(
        {
            "system": "top",
            "messages": [
                {"role": "user", "content": "a"},
                {"role": "system", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]},
                {"role": "system", "content": "three"},
                {"role": "user", "content": "b"},
            ],
        }
    )
    assert [m.role for m in req.messages] == ["system", "user", "system", "system", "user"]
    assert req.messages[2].content == [TextPart(text="one"), TextPart(text="two")]
    assert req.messages[3].content == [TextPart(text="three")]


def test_a_system_entry_with_an_image_is_a_400_naming_the_block() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    with pytest.raises(GatewayError) as info:
        _parse({"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": [image]}]})
    assert info.value.status == 400 and info.value.param == "messages[1].content[0].type"


def test_betas_are_read_from_the_header() -> None:
    req = _parse(
        {"messages": [{"role": "user", "content": "a"}]},
        {"anthropic-beta": "claude-code-20250219, mid-conversation-system-2026-04-07"},
    )
    assert req.betas == ["claude-code-20250219", "mid-conversation-system-2026-04-07"]


@pytest.mark.parametrize(
    ("body", "reasoning"),
    [
        ({"thinking": {"type": "adaptive"}}, Reasoning(adaptive=True)),
        (
            {"thinking": {"type": "adaptive"}, "output_config": {"effort": "max"}},
            Reasoning(adaptive=True, effort="high"),
        ),
        ({"output_config": {"effort": "low"}}, Reasoning(effort="low")),
        ({"thinking": {"type": "enabled", "budget_tokens": 2000}}, Reasoning(budget_tokens=2000)),
        ({}, None),
    ],
)
def test_thinking_and_effort_map_to_canonical_reasoning(body: dict[str, Any], reasoning: Reasoning | None) -> None:
    req = _parse({"messages": [{"role": "user", "content": "a"}], **body})
    assert req.reasoning == reasoning


def test_output_config_format_is_the_response_format_and_stays_verbatim_in_extra() -> None:
    config = {"format": {"type": "json_schema", "schema": SCHEMA}, "effort": "high", "future_key": 1}
    req = _parse({"messages": [{"role": "user", "content": "a"}], "output_config": config})
    assert req.response_format == ResponseFormat(type="json_schema", schema=SCHEMA)
    assert req.extra["output_config"] == config


@pytest.mark.parametrize(
    ("config", "param"),
    [
        ({"effort": "extreme"}, "output_config.effort"),
        ({"format": {"type": "json_object"}}, "output_config.format"),
        ({"effort": 3}, "output_config.effort"),
    ],
)
def test_bad_output_config_is_a_400_naming_the_field(config: dict[str, Any], param: str) -> None:
    with pytest.raises(GatewayError) as info:
        _parse({"messages": [{"role": "user", "content": "a"}], "output_config": config})
    assert info.value.status == 400 and info.value.param == param


def test_cache_control_on_tools_images_and_tool_results_is_kept() -> None:
    tool = {"name": "Read", "input_schema": {"type": "object"}, "cache_control": EPHEMERAL}
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    result = {
        "type": "tool_result",
        "tool_use_id": "toolu_1",
        "content": [{**image, "cache_control": EPHEMERAL}],
        "cache_control": EPHEMERAL,
    }
    req = _parse(
        {
            "tools": [tool],
            "messages": [
                {"role": "user", "content": "a"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {}}]},
                {"role": "user", "content": [result]},
            ],
        }
    )
    assert req.tools[0].cache_control == EPHEMERAL
    tool_msg = req.messages[2]
    assert tool_msg.role == "tool" and tool_msg.cache_control == EPHEMERAL
    assert tool_msg.content == [ImagePart(data=PNG, media_type="image/png", cache_control=EPHEMERAL)]


@pytest.mark.parametrize("signature", ["CiQBjz1rX+/abc==", "sig-mock", "ü/é+", "a" * 3000])
def test_tool_use_id_carries_any_signature_and_splits_back(signature: str) -> None:
    packed = tool_use_id("call_1", signature)
    assert packed.replace("_", "").replace("-", "").isalnum()  # Anthropic's id pattern ^[a-zA-Z0-9_-]+$
    assert split_tool_use_id(packed) == ("call_1", signature)


@pytest.mark.parametrize("plain", ["toolu_01", "call_x__sig_", "__sig_abc", "a__sig_!!!"])
def test_ids_without_a_valid_signature_come_back_whole(plain: str) -> None:
    assert split_tool_use_id(plain) == (plain, None)
    assert tool_use_id(plain, None) == plain


def test_a_signed_call_is_rendered_in_its_id_and_read_back_from_the_history() -> None:
    call = ToolCall(id="fc-1", name="Read", arguments='{"file_path":"a"}', signature="c2ln")
    req = _parse({"messages": [{"role": "user", "content": "a"}]})
    resp = ChatResponse(
        id="gen-1",
        model="gemini-3-flash",
        created=0,
        choices=[Choice(index=0, message=Message(role="assistant", tool_calls=[call]), finish_reason="tool_calls")],
        usage=Usage(),
    )
    rendered = msgspec.json.decode(PROTOCOL.render_response(resp, req))
    block = rendered["content"][0]
    assert block["type"] == "tool_use" and block["id"] == tool_use_id("fc-1", "c2ln")
    history = _parse(
        {
            "messages": [
                {"role": "user", "content": "a"},
                {"role": "assistant", "content": [block]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block["id"], "content": "ok"}]},
            ]
        }
    )
    assert history.messages[1].tool_calls == [call]
    assert history.messages[2].tool_call_id == "fc-1" and history.messages[2].name == "Read"


def test_a_streamed_signed_call_carries_the_signature_in_its_id() -> None:
    req = _parse({"messages": [{"role": "user", "content": "a"}], "stream": True})
    encoder = PROTOCOL.stream_encoder(req)
    out = encoder.encode(StreamStart(id="gen-1", model="gemini-3-flash", created=0))
    out += encoder.encode(ToolCallStart(index=0, id="fc-1", name="Read", signature="c2ln"))
    out += encoder.encode(ToolCallArgs(index=0, arguments="{}"))
    assert tool_use_id("fc-1", "c2ln").encode() in out
