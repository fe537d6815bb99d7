"""The providers' request builders on what Claude Code sends: system messages in place and block by block,
images inside tool results, ``is_error``, per-call thought signatures, adaptive reasoning and effort,
``cache_control`` and ``anthropic-beta`` (pure: ChatRequest in, upstream body out)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from omnirelay.config import UpstreamConfig
from omnirelay.core.events import ToolCallStart
from omnirelay.core.types import (
    ChatRequest,
    ImagePart,
    Message,
    Reasoning,
    ReasoningPart,
    TextPart,
    Tool,
    ToolCall,
)
from omnirelay.providers.anthropic import AnthropicProvider
from omnirelay.providers.gemini import GeminiProvider, build_body, is_gemini_3
from omnirelay.providers.openai import OpenAIProvider

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
EPHEMERAL = {"type": "ephemeral"}


def _text(role: Any, *texts: str) -> Message:
    return Message(role=role, content=[TextPart(text=t) for t in texts])


def _tool_loop(result: Message, signature: str | None = None) -> list[Message]:
    call = ToolCall(id="fc-1", name="Read", arguments='{"file_path": "a.png"}', signature=signature)
    return [_text("user", "look"), Message(role="assistant", tool_calls=[call]), result]


def _image_result(is_error: bool = False) -> Message:
    return Message(
        role="tool",
        tool_call_id="fc-1",
        name="Read",
        is_error=is_error,
        content=[TextPart(text="a.png"), ImagePart(data=PNG, media_type="image/png")],
    )


def _openai(preset: str = "openai") -> OpenAIProvider:
    return OpenAIProvider(UpstreamConfig(name="o", provider="openai", preset=preset, api_key="k"))


def _body(req: ChatRequest, provider: Any, model: str) -> dict[str, Any]:
    result: dict[str, Any] = msgspec.json.decode(provider.build_request(req, model).body)
    return result


# --- OpenAI-format upstreams ------------------------------------------------------------------------------


def test_openai_system_blocks_are_parts_or_joined_by_a_blank_line() -> None:
    req = ChatRequest(model="m", messages=[_text("system", "Part one.", "Part two."), _text("user", "hi")])
    assert _openai().build_body(req, "gpt-4.1")["messages"][0]["content"] == [
        {"type": "text", "text": "Part one."},
        {"type": "text", "text": "Part two."},
    ]
    assert _openai("deepseek").build_body(req, "deepseek-chat")["messages"][0]["content"] == "Part one.\n\nPart two."


def test_openai_tool_result_media_follow_the_run_of_tool_messages() -> None:
    other = Message(role="tool", tool_call_id="fc-2", name="Bash", content=[TextPart(text="ok")])
    calls = [ToolCall(id="fc-1", name="Read", arguments="{}"), ToolCall(id="fc-2", name="Bash", arguments="{}")]
    messages = [_text("user", "go"), Message(role="assistant", tool_calls=calls), _image_result(), other]
    sent = _openai().build_body(ChatRequest(model="m", messages=messages), "gpt-4.1")["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "tool", "user"]
    assert sent[2]["content"] == "a.png"
    assert sent[4]["content"][1] == {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}


def test_openai_tool_result_pdf_becomes_a_file_part_and_errors_are_marked() -> None:
    result = Message(
        role="tool",
        tool_call_id="fc-1",
        is_error=True,
        content=[TextPart(text="partial"), ImagePart(data="JVBERi0=", media_type="application/pdf")],
    )
    sent = _openai().build_body(ChatRequest(model="m", messages=_tool_loop(result)), "gpt-4.1")["messages"]
    assert sent[2]["content"] == "Error: partial"
    assert sent[3]["content"][1] == {
        "type": "file",
        "file": {"filename": "document.pdf", "file_data": "data:application/pdf;base64,JVBERi0="},
    }


def test_openai_text_only_server_gets_a_note_instead_of_the_image() -> None:
    sent = _openai("deepseek").build_body(ChatRequest(model="m", messages=_tool_loop(_image_result())), "deepseek-chat")
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "tool"]
    assert sent["messages"][2]["content"].startswith("a.png\n[images omitted")


@pytest.mark.parametrize(
    ("reasoning", "expected"),
    [
        (Reasoning(adaptive=True), None),
        (Reasoning(adaptive=True, effort="low"), "low"),
        (Reasoning(effort="high"), "high"),
    ],
)
def test_openai_adaptive_reasoning_is_the_model_default_unless_an_effort_is_given(
    reasoning: Reasoning, expected: str | None
) -> None:
    req = ChatRequest(model="m", messages=[_text("user", "x")], reasoning=reasoning)
    assert _openai().build_body(req, "o3-mini").get("reasoning_effort") == expected


# --- Gemini ---------------------------------------------------------------------------------------------------


def test_gemini_model_generations() -> None:
    assert is_gemini_3("gemini-3-pro-preview") and is_gemini_3("models/gemini-3.1-flash")
    assert not is_gemini_3("gemini-2.5-pro") and not is_gemini_3("gemma-3-27b")


def test_gemini_every_call_keeps_its_own_signature() -> None:
    calls = [
        ToolCall(id="a1", name="Read", arguments="{}", signature="s1"),
        ToolCall(id="a2", name="Bash", arguments="{}"),
    ]
    reasoning = [ReasoningPart(text="", signature="s-text")]
    msgs = [_text("user", "go"), Message(role="assistant", tool_calls=calls, reasoning=reasoning)]
    parts = build_body(ChatRequest(model="m", messages=msgs), "gemini-3-flash").contents[1].parts
    assert [p.thought_signature for p in parts] == ["s1", None]


def test_gemini_reasoning_signature_still_lands_on_the_first_call_of_old_history() -> None:
    call = ToolCall(id="a1", name="Read", arguments="{}")
    msgs = [_text("user", "go"), Message(role="assistant", tool_calls=[call], reasoning=[ReasoningPart(signature="s")])]
    parts = build_body(ChatRequest(model="m", messages=msgs), "gemini-2.5-pro").contents[1].parts
    assert parts[0].thought_signature == "s"


def test_gemini_signature_is_parsed_onto_each_call_without_reasoning_asked() -> None:
    provider = GeminiProvider(UpstreamConfig(name="g", provider="gemini", api_key="k"))
    req = ChatRequest(model="gemini-3-flash", messages=[_text("user", "go")], stream=True)
    frame = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [{"functionCall": {"name": "Read", "args": {}, "id": "x"}, "thoughtSignature": "s9"}],
                },
                "finishReason": "STOP",
            }
        ]
    }
    events = provider.stream_parser(req).feed(b"data: " + msgspec.json.encode(frame) + b"\r\n\r\n")
    starts = [e for e in events if isinstance(e, ToolCallStart)]
    assert starts == [ToolCallStart(index=0, id="x", name="Read", signature="s9")]
    full = provider.parse_response(msgspec.json.encode(frame), msgspec.structs.replace(req, stream=False))
    assert full.choices[0].message.tool_calls[0].signature == "s9"


def test_gemini_late_system_message_is_folded_in_place() -> None:
    msgs = [
        _text("system", "top"),
        _text("user", "a"),
        _text("assistant", "b"),
        _text("system", "late"),
        _text("user", "c"),
    ]
    body = build_body(ChatRequest(model="m", messages=msgs), "gemini-2.5-pro")
    assert body.system_instruction is not None and [p.text for p in body.system_instruction.parts] == ["top"]
    assert [p.text for p in body.contents[2].parts] == ["[system]\nlate", "c"]


@pytest.mark.parametrize(
    ("model", "reasoning", "expected"),
    [
        ("gemini-2.5-flash", Reasoning(adaptive=True), {"thinkingBudget": -1, "includeThoughts": True}),
        ("gemini-2.5-flash", Reasoning(adaptive=True, effort="low"), {"thinkingBudget": 2048, "includeThoughts": True}),
        ("gemini-3-flash", Reasoning(adaptive=True), {"includeThoughts": True}),
        ("gemini-3-flash", Reasoning(effort="medium"), {"thinkingLevel": "medium", "includeThoughts": True}),
        ("gemini-3-pro-preview", Reasoning(effort="medium"), {"thinkingLevel": "high", "includeThoughts": True}),
        ("gemini-3-flash", Reasoning(enabled=False), {"thinkingLevel": "minimal"}),
    ],
)
def test_gemini_thinking_config(model: str, reasoning: Reasoning, expected: dict[str, Any]) -> None:
    body = build_body(ChatRequest(model="m", messages=[_text("user", "x")], reasoning=reasoning), model)
    raw = msgspec.to_builtins(body)
    assert raw["generationConfig"]["thinkingConfig"] == expected


# --- Anthropic ------------------------------------------------------------------------------------------------


def _anthropic(headers: dict[str, str] | None = None, **options: Any) -> AnthropicProvider:
    config = UpstreamConfig(name="a", provider="anthropic", api_key="k", headers=headers or {}, options=options)
    return AnthropicProvider(config)


def test_anthropic_system_in_place_only_with_the_beta_and_betas_merged_into_the_header() -> None:
    msgs = [_text("system", "top"), _text("user", "a"), _text("system", "late"), _text("user", "b")]
    beta = "mid-conversation-system-2026-04-07"
    provider = _anthropic({"anthropic-beta": "configured-1"})
    with_beta = ChatRequest(model="m", messages=msgs, betas=[beta], inbound_protocol="anthropic")
    upstream = provider.build_request(with_beta, "claude-opus-4-8")
    assert upstream.headers["anthropic-beta"] == f"configured-1,{beta}"
    body = msgspec.json.decode(upstream.body)
    assert [m["role"] for m in body["messages"]] == ["user", "system", "user"]
    hoisted = _body(ChatRequest(model="m", messages=msgs), provider, "claude-opus-4-8")
    assert [b["text"] for b in hoisted["system"]] == ["top", "late"]
    assert "anthropic-beta" not in _anthropic().build_request(ChatRequest(model="m", messages=msgs), "c").headers
    # A Messages-compatible third party without Anthropic's betas: no header, system hoisted.
    third_party = _anthropic(forward_betas=False).build_request(with_beta, "deepseek-chat")
    assert "anthropic-beta" not in third_party.headers
    third_body = msgspec.json.decode(third_party.body)
    assert [m["role"] for m in third_body["messages"]] == ["user"]  # both user texts merged into one turn
    assert [b["text"] for b in third_body["system"]] == ["top", "late"]


def test_anthropic_cache_control_on_tools_images_and_tool_results() -> None:
    result = Message(
        role="tool",
        tool_call_id="fc-1",
        cache_control=EPHEMERAL,
        content=[ImagePart(data=PNG, media_type="image/png", cache_control=EPHEMERAL)],
    )
    tool = Tool(name="Read", parameters={"type": "object"}, cache_control=EPHEMERAL)
    body = _body(ChatRequest(model="m", messages=_tool_loop(result), tools=[tool]), _anthropic(), "claude-opus-4-8")
    assert body["tools"][0]["cache_control"] == EPHEMERAL
    block = body["messages"][2]["content"][0]
    assert block["cache_control"] == EPHEMERAL and block["content"][0]["cache_control"] == EPHEMERAL


def test_anthropic_adaptive_thinking_and_native_effort() -> None:
    req = ChatRequest(
        model="m",
        messages=[_text("user", "x")],
        reasoning=Reasoning(adaptive=True, effort="high"),
        inbound_protocol="anthropic",
        extra={"output_config": {"effort": "high"}},
        temperature=0.5,
    )
    body = _body(req, _anthropic(), "claude-opus-4-8")
    assert body["thinking"] == {"type": "adaptive"} and body["output_config"] == {"effort": "high"}
    assert "temperature" not in body
    effort_only = msgspec.structs.replace(req, reasoning=Reasoning(effort="high"))
    assert "thinking" not in _body(effort_only, _anthropic(), "claude-opus-4-8")  # effort is not a budget


def test_openai_compatible_gemini_signatures_are_read_and_sent_back_only_where_understood() -> None:
    reply: dict[str, Any] = {
        "id": "x",
        "object": "chat.completion",
        "created": 1,
        "model": "gemini-3-flash",
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "Read", "arguments": "{}"},
                            "extra_content": {"google": {"thought_signature": "s7"}},
                        }
                    ],
                },
            }
        ],
    }
    req = ChatRequest(model="gemini-3-flash", messages=[_text("user", "go")])
    parsed = _openai("gemini-openai").parse_response(msgspec.json.encode(reply), req)
    call = parsed.choices[0].message.tool_calls[0]
    assert call.signature == "s7"
    history = ChatRequest(model="m", messages=[_text("user", "go"), Message(role="assistant", tool_calls=[call])])
    sent = _openai("gemini-openai").build_body(history, "gemini-3-flash")["messages"][1]["tool_calls"][0]
    assert sent["extra_content"] == {"google": {"thought_signature": "s7"}}
    assert "extra_content" not in _openai().build_body(history, "gpt-4.1")["messages"][1]["tool_calls"][0]
    frame = {
        **reply,
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": reply["choices"][0]["message"]}],
    }
    stream = _openai("gemini-openai").stream_parser(msgspec.structs.replace(req, stream=True))
    starts = [e for e in stream.feed(b"data: " + msgspec.json.encode(frame) + b"\n\n") if isinstance(e, ToolCallStart)]
    assert starts[0].signature == "s7"
