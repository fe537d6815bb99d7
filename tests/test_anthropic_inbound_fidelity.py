"""End to end: what Claude Code sends (the Anthropic Messages surface of 2.1.x) through omnirelay to each upstream
family's mock, with the official anthropic SDK (and the openai SDK where the OpenAI side of a feature is meant).

Each test asserts the translated upstream request (``mocks.last_request(family).body`` / ``.headers``) and what
the SDK sees. Covered: system messages inside ``messages``; system block boundaries and ``cache_control``;
images inside ``tool_result``; ``output_config`` (format, effort) and adaptive thinking; ``anthropic-beta``;
Gemini thought signatures through both client formats.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic
import openai

from tests.mocks.script import ScriptedReply, ScriptedToolCall, ScriptedUsage
from tests.mocks.server import MockUpstreams

PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
MID_SYSTEM_BETA = "mid-conversation-system-2026-04-07"
CLAUDE_CODE_BETAS = f"claude-code-20250219,context-management-2025-06-27,{MID_SYSTEM_BETA},effort-2025-11-24"
READ_TOOL: Any = {
    "name": "Read",
    "description": "Read a file",
    "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}, "required": ["file_path"]},
}
CITY_SCHEMA: Any = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}


def _mid_conversation(model: str) -> dict[str, Any]:
    messages: Any = [
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {"role": "system", "content": [{"type": "text", "text": "The user switched to plan mode."}]},
        {"role": "user", "content": "second question"},
    ]
    return {"model": model, "max_tokens": 256, "system": "You are Claude Code.", "messages": messages}


def _image_tool_turns() -> Any:
    """A Read of a PNG: the assistant's tool_use, then the tool_result carrying the image (as Claude Code sends)."""
    return [
        {"role": "user", "content": "look at shot.png"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_01", "name": "Read", "input": {"file_path": "shot.png"}}],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_01",
                    "content": [
                        {"type": "text", "text": "shot.png (1x1)"},
                        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
                    ],
                }
            ],
        },
    ]


# --- 1. system messages inside ``messages`` ----------------------------------------------------------------


def test_mid_conversation_system_message_reaches_openai_in_place(
    claude: anthropic.Anthropic, mocks: MockUpstreams
) -> None:
    msg = claude.messages.create(**_mid_conversation("gpt-4.1"), extra_headers={"anthropic-beta": CLAUDE_CODE_BETAS})
    assert msg.content[0].type == "text" and msg.content[0].text == "echo: second question"
    sent = mocks.last_request("openai").body["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "system", "user"]
    assert sent[3]["content"] == "The user switched to plan mode."


def test_mid_conversation_system_message_stays_in_place_for_anthropic(
    claude: anthropic.Anthropic, mocks: MockUpstreams
) -> None:
    msg = claude.messages.create(
        **_mid_conversation("claude-sonnet-4-5"), extra_headers={"anthropic-beta": CLAUDE_CODE_BETAS}
    )
    assert msg.content[0].type == "text"
    request = mocks.last_request("anthropic")
    assert request.body["system"] == [{"type": "text", "text": "You are Claude Code."}]
    roles = [m["role"] for m in request.body["messages"]]
    assert roles == ["user", "assistant", "system", "user"]
    assert request.body["messages"][2]["content"] == [{"type": "text", "text": "The user switched to plan mode."}]
    assert MID_SYSTEM_BETA in request.headers["anthropic-beta"].split(",")


def test_mid_conversation_system_message_folded_in_place_for_gemini(
    claude: anthropic.Anthropic, mocks: MockUpstreams
) -> None:
    claude.messages.create(**_mid_conversation("gemini-2.5-flash"), extra_headers={"anthropic-beta": MID_SYSTEM_BETA})
    body = mocks.last_request("gemini").body
    assert body["systemInstruction"]["parts"] == [{"text": "You are Claude Code."}]
    contents = body["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    assert contents[2]["parts"] == [{"text": "[system]\nThe user switched to plan mode."}, {"text": "second question"}]


# --- 4. system block boundaries, cache_control, cache accounting ------------------------------------------


def test_system_blocks_keep_their_boundaries_on_openai(claude: anthropic.Anthropic, mocks: MockUpstreams) -> None:
    claude.messages.create(
        model="gpt-4.1",
        max_tokens=64,
        system=[{"type": "text", "text": "Part one."}, {"type": "text", "text": "Part two."}],
        messages=[{"role": "user", "content": "hi"}],
    )
    system = mocks.last_request("openai").body["messages"][0]
    assert system["role"] == "system"
    assert system["content"] == [{"type": "text", "text": "Part one."}, {"type": "text", "text": "Part two."}]


def test_system_blocks_keep_their_boundaries_on_gemini(claude: anthropic.Anthropic, mocks: MockUpstreams) -> None:
    claude.messages.create(
        model="gemini-2.5-flash",
        max_tokens=64,
        system=[{"type": "text", "text": "Part one."}, {"type": "text", "text": "Part two."}],
        messages=[{"role": "user", "content": "hi"}],
    )
    assert mocks.last_request("gemini").body["systemInstruction"]["parts"] == [
        {"text": "Part one."},
        {"text": "Part two."},
    ]


def test_cache_control_reaches_anthropic_and_cache_usage_is_exact(
    claude: anthropic.Anthropic, mocks: MockUpstreams
) -> None:
    ephemeral = {"type": "ephemeral"}
    tool: Any = {**READ_TOOL, "cache_control": ephemeral}
    messages: Any = _image_tool_turns()
    messages[2]["content"][0]["content"][1]["cache_control"] = ephemeral
    messages[2]["content"][0]["cache_control"] = ephemeral
    usage = ScriptedUsage(input=5000, output=20, cached=4000, cache_write=900)
    mocks.push("anthropic", ScriptedReply(text="cached", usage=usage), ScriptedReply(text="cached", usage=usage))
    system: Any = [{"type": "text", "text": "You are Claude Code.", "cache_control": ephemeral}]
    msg = claude.messages.create(
        model="claude-sonnet-4-5", max_tokens=64, system=system, tools=[tool], messages=messages
    )
    body = mocks.last_request("anthropic").body
    assert body["system"][0]["cache_control"] == ephemeral
    assert body["tools"][0]["cache_control"] == ephemeral
    result = body["messages"][2]["content"][0]
    assert result["type"] == "tool_result" and result["cache_control"] == ephemeral
    assert result["content"][1]["type"] == "image" and result["content"][1]["cache_control"] == ephemeral
    assert (msg.usage.input_tokens, msg.usage.cache_read_input_tokens, msg.usage.cache_creation_input_tokens) == (
        100,
        4000,
        900,
    )
    with claude.messages.stream(
        model="claude-sonnet-4-5", max_tokens=64, system=system, tools=[tool], messages=messages
    ) as stream:
        final = stream.get_final_message()
    assert (final.usage.input_tokens, final.usage.cache_read_input_tokens, final.usage.cache_creation_input_tokens) == (
        100,
        4000,
        900,
    )


# --- 3. tool results keep their content ---------------------------------------------------------------------


def test_tool_result_image_reaches_openai_after_the_tool_message(
    claude: anthropic.Anthropic, mocks: MockUpstreams
) -> None:
    claude.messages.create(model="gpt-4.1", max_tokens=64, tools=[READ_TOOL], messages=_image_tool_turns())
    sent = mocks.last_request("openai").body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "user"]
    assert sent[2] == {"role": "tool", "tool_call_id": "toolu_01", "content": "shot.png (1x1)"}
    assert sent[3]["content"] == [
        {"type": "text", "text": "Content returned by tool call toolu_01:"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
    ]


def test_tool_result_error_flag_reaches_openai(claude: anthropic.Anthropic, mocks: MockUpstreams) -> None:
    messages: Any = _image_tool_turns()
    messages[2]["content"] = [
        {"type": "tool_result", "tool_use_id": "toolu_01", "content": "no such file", "is_error": True}
    ]
    claude.messages.create(model="gpt-4.1", max_tokens=64, tools=[READ_TOOL], messages=messages)
    tool = mocks.last_request("openai").body["messages"][2]
    assert tool == {"role": "tool", "tool_call_id": "toolu_01", "content": "Error: no such file"}


def test_tool_result_image_reaches_gemini_3_inside_the_function_response(
    claude: anthropic.Anthropic, mocks: MockUpstreams
) -> None:
    claude.messages.create(model="gemini-3-flash", max_tokens=64, tools=[READ_TOOL], messages=_image_history_g3())
    turn = mocks.last_request("gemini").body["contents"][2]
    assert turn["role"] == "user"
    response = turn["parts"][0]["functionResponse"]
    assert response["name"] == "Read" and response["response"] == {"result": "shot.png (1x1)"}
    assert response["parts"] == [{"inlineData": {"mimeType": "image/png", "data": PNG_B64}}]


def test_tool_result_image_reaches_gemini_2_5_beside_the_function_response(
    claude: anthropic.Anthropic, mocks: MockUpstreams
) -> None:
    claude.messages.create(model="gemini-2.5-flash", max_tokens=64, tools=[READ_TOOL], messages=_image_tool_turns())
    parts = mocks.last_request("gemini").body["contents"][2]["parts"]
    assert parts[0]["functionResponse"]["response"] == {"result": "shot.png (1x1)"}
    assert parts[1] == {"inlineData": {"mimeType": "image/png", "data": PNG_B64}}


def _image_history_g3() -> Any:
    # Gemini 3 refuses a replayed call without its signature: the history carries the one it gave.
    messages = _image_tool_turns()
    messages[1]["content"][0]["id"] = _signed_id("toolu_01", "sig-g3")
    messages[2]["content"][0]["tool_use_id"] = messages[1]["content"][0]["id"]
    return messages


def _signed_id(call_id: str, signature: str) -> str:
    import base64

    return call_id + "__sig_" + base64.urlsafe_b64encode(signature.encode()).decode().rstrip("=")


# --- 9. Gemini thought signatures -------------------------------------------------------------------------


def test_gemini_3_tool_loop_through_the_anthropic_sdk_keeps_the_signature(
    claude: anthropic.Anthropic, mocks: MockUpstreams
) -> None:
    call = ScriptedToolCall(name="Read", arguments='{"file_path": "a.txt"}', id="fc-1")
    mocks.push("gemini", ScriptedReply(text="", tool_calls=[call], reasoning_signature="c2lnLWczLXJlYWw="))
    with claude.messages.stream(
        model="gemini-3-pro-preview",
        max_tokens=256,
        tools=[READ_TOOL],
        messages=[{"role": "user", "content": "read a.txt"}],
    ) as stream:
        first = stream.get_final_message()
    assert first.stop_reason == "tool_use"
    use = next(b for b in first.content if b.type == "tool_use")
    assert use.name == "Read" and use.input == {"file_path": "a.txt"}
    history: Any = [
        {"role": "user", "content": "read a.txt"},
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "hello"}]},
    ]
    second = claude.messages.create(model="gemini-3-pro-preview", max_tokens=256, tools=[READ_TOOL], messages=history)
    assert second.content[0].type == "text"  # the mock refuses a replayed call without its signature
    replay = mocks.last_request("gemini").body["contents"]
    assert replay[1]["parts"][0]["functionCall"] == {"name": "Read", "args": {"file_path": "a.txt"}, "id": "fc-1"}
    assert replay[1]["parts"][0]["thoughtSignature"] == "c2lnLWczLXJlYWw="
    assert replay[2]["parts"][0]["functionResponse"]["id"] == "fc-1"


def test_gemini_3_signature_rides_on_openai_tool_calls_and_comes_back(oai: openai.OpenAI, mocks: MockUpstreams) -> None:
    tool: Any = {"type": "function", "function": {"name": "Read", "parameters": READ_TOOL["input_schema"]}}
    call = ScriptedToolCall(name="Read", arguments='{"file_path": "a.txt"}', id="fc-2")
    mocks.push("gemini", ScriptedReply(text="", tool_calls=[call], reasoning_signature="b3BhcXVl"))
    chunks = list(
        oai.chat.completions.create(
            model="gemini-3-flash", messages=[{"role": "user", "content": "read"}], tools=[tool], stream=True
        )
    )
    opening = chunks[0].choices[0].delta
    assert opening.role == "assistant" and opening.content is None and opening.tool_calls
    first_call = opening.tool_calls[0].model_dump()
    assert first_call["extra_content"] == {"google": {"thought_signature": "b3BhcXVl"}}
    assistant: Any = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": first_call["id"],
                "type": "function",
                "function": {"name": "Read", "arguments": '{"file_path": "a.txt"}'},
                "extra_content": first_call["extra_content"],
            }
        ],
    }
    tool_msg: Any = {"role": "tool", "tool_call_id": first_call["id"], "content": "hello"}
    mocks.push("gemini", ScriptedReply(text="", tool_calls=[call], reasoning_signature="b3BhcXVl"))
    reply = oai.chat.completions.create(
        model="gemini-3-flash",
        messages=[{"role": "user", "content": "read"}, assistant, tool_msg],
        tools=[tool],
    )
    assert reply.choices[0].message.tool_calls
    again = reply.choices[0].message.tool_calls[0].model_dump()
    assert again["extra_content"] == {"google": {"thought_signature": "b3BhcXVl"}}
    replay = mocks.last_request("gemini").body["contents"][1]["parts"][0]
    assert replay["thoughtSignature"] == "b3BhcXVl"


def test_openai_tool_call_stream_opens_with_null_content(oai: openai.OpenAI, mocks: MockUpstreams) -> None:
    call = ScriptedToolCall(name="Read", arguments='{"file_path": "a.txt"}')
    mocks.push("anthropic", ScriptedReply(text="", tool_calls=[call], finish="tool_calls"))
    tool: Any = {"type": "function", "function": {"name": "Read", "parameters": READ_TOOL["input_schema"]}}
    chunks = list(
        oai.chat.completions.create(
            model="claude-sonnet-4-5", messages=[{"role": "user", "content": "read"}], tools=[tool], stream=True
        )
    )
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert deltas[0].role == "assistant" and deltas[0].content is None and deltas[0].tool_calls
    assert all(d.content is None for d in deltas)


# --- 2. output_config and adaptive thinking -----------------------------------------------------------------


def test_output_config_format_reaches_openai_as_json_schema(claude: anthropic.Anthropic, mocks: MockUpstreams) -> None:
    mocks.push("openai", ScriptedReply(text='{"city": "Paris"}'))
    msg = claude.messages.create(
        model="gpt-4.1",
        max_tokens=64,
        messages=[{"role": "user", "content": "capital of France?"}],
        extra_body={"output_config": {"format": {"type": "json_schema", "schema": CITY_SCHEMA}}},
    )
    assert msg.content[0].type == "text" and json.loads(msg.content[0].text) == {"city": "Paris"}
    body = mocks.last_request("openai").body
    spec = {"name": "response", "schema": CITY_SCHEMA}
    assert body["response_format"] == {"type": "json_schema", "json_schema": spec}
    assert "output_config" not in body


def test_output_config_format_reaches_gemini_as_response_json_schema(
    claude: anthropic.Anthropic, mocks: MockUpstreams
) -> None:
    claude.messages.create(
        model="gemini-2.5-flash",
        max_tokens=64,
        messages=[{"role": "user", "content": "capital of France?"}],
        extra_body={"output_config": {"format": {"type": "json_schema", "schema": CITY_SCHEMA}}},
    )
    gen = mocks.last_request("gemini").body["generationConfig"]
    assert gen["responseMimeType"] == "application/json"
    assert gen["responseJsonSchema"] == CITY_SCHEMA


def test_effort_and_adaptive_thinking_reach_an_openai_reasoning_model(
    claude: anthropic.Anthropic, mocks: MockUpstreams
) -> None:
    claude.messages.create(
        model="o3-mini",
        max_tokens=512,
        messages=[{"role": "user", "content": "think"}],
        extra_body={"thinking": {"type": "adaptive"}, "output_config": {"effort": "high"}},
    )
    assert mocks.last_request("openai").body["reasoning_effort"] == "high"
    claude.messages.create(
        model="o3-mini",
        max_tokens=512,
        messages=[{"role": "user", "content": "think"}],
        extra_body={"thinking": {"type": "adaptive"}},
    )
    # Adaptive with no effort: the model's own default, not a fixed "medium".
    assert "reasoning_effort" not in mocks.last_request("openai").body


def test_adaptive_thinking_reaches_gemini_as_its_own_dynamic_modes(
    claude: anthropic.Anthropic, mocks: MockUpstreams
) -> None:
    adaptive: Any = {"thinking": {"type": "adaptive"}}
    claude.messages.create(
        model="gemini-2.5-flash", max_tokens=512, messages=[{"role": "user", "content": "x"}], extra_body=adaptive
    )
    thinking = mocks.last_request("gemini").body["generationConfig"]["thinkingConfig"]
    assert thinking == {"thinkingBudget": -1, "includeThoughts": True}
    claude.messages.create(
        model="gemini-3-flash",
        max_tokens=512,
        messages=[{"role": "user", "content": "x"}],
        extra_body={**adaptive, "output_config": {"effort": "low"}},
    )
    thinking = mocks.last_request("gemini").body["generationConfig"]["thinkingConfig"]
    assert thinking == {"thinkingLevel": "low", "includeThoughts": True}


def test_output_config_and_adaptive_thinking_reach_anthropic_natively(
    claude: anthropic.Anthropic, mocks: MockUpstreams
) -> None:
    output_config = {"effort": "high", "format": {"type": "json_schema", "schema": CITY_SCHEMA}}
    claude.messages.create(
        model="claude-opus-4-8",
        max_tokens=2048,
        messages=[{"role": "user", "content": "x"}],
        extra_body={"thinking": {"type": "adaptive"}, "output_config": output_config},
    )
    body = mocks.last_request("anthropic").body
    assert body["thinking"] == {"type": "adaptive"}
    assert body["output_config"] == output_config
    assert "tools" not in body and "tool_choice" not in body  # no answer-tool emulation
    assert body["max_tokens"] == 2048


def test_unknown_effort_is_a_clear_400(claude: anthropic.Anthropic) -> None:
    try:
        claude.messages.create(
            model="gpt-4.1",
            max_tokens=64,
            messages=[{"role": "user", "content": "x"}],
            extra_body={"output_config": {"effort": "extreme"}},
        )
    except anthropic.BadRequestError as exc:
        assert "output_config.effort" in str(exc)
    else:
        raise AssertionError("an unknown effort was accepted")


# --- 5. anthropic-beta ----------------------------------------------------------------------------------------


def test_anthropic_beta_is_forwarded_with_the_beta_fields(claude: anthropic.Anthropic, mocks: MockUpstreams) -> None:
    management: Any = {"edits": [{"type": "clear_tool_uses_20250919"}]}
    msg = claude.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=64,
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"anthropic-beta": CLAUDE_CODE_BETAS},
        extra_body={"context_management": management},
    )
    assert msg.content[0].type == "text"  # the mock refuses context_management without its beta
    request = mocks.last_request("anthropic")
    assert request.headers["anthropic-beta"] == CLAUDE_CODE_BETAS
    assert request.body["context_management"] == management


def test_beta_features_are_translated_or_dropped_for_other_upstreams(
    claude: anthropic.Anthropic, mocks: MockUpstreams
) -> None:
    """Claude Code's betas and beta fields never cause a 400 elsewhere: the mid-conversation system message is
    translated (kept in place), ``context_management`` and the header are dropped."""
    for model, family in (("gpt-4.1", "openai"), ("gemini-2.5-flash", "gemini")):
        msg = claude.messages.create(
            **_mid_conversation(model),
            extra_headers={"anthropic-beta": CLAUDE_CODE_BETAS},
            extra_body={"context_management": {"edits": []}},
        )
        assert msg.content[0].type == "text"
        request = mocks.last_request(family)
        assert "context_management" not in request.body and "contextManagement" not in request.body
        assert "anthropic-beta" not in {k.lower() for k in request.headers}
        assert "plan mode" in json.dumps(request.body["messages" if family == "openai" else "contents"])


# --- all of it at once, as Claude Code sends it ---------------------------------------------------------------


def test_a_claude_code_shaped_streaming_turn_reaches_every_family(
    claude: anthropic.Anthropic, mocks: MockUpstreams
) -> None:
    """One request with everything Claude Code 2.1.x puts in a turn (betas, cached system blocks, a cached tool,
    adaptive thinking, effort, context_management, metadata, a mid-conversation system message, a Read of a
    PNG), streamed: every family answers it, and each got the PNG."""
    ephemeral = {"type": "ephemeral"}
    messages: Any = _image_history_g3()
    messages.append({"role": "system", "content": "<system-reminder>plan mode is off</system-reminder>"})
    messages.append(
        {"role": "user", "content": [{"type": "text", "text": "what is in it?", "cache_control": ephemeral}]}
    )
    system: Any = [
        {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.197"},
        {"type": "text", "text": "You are Claude Code.", "cache_control": ephemeral},
    ]
    extra_body = {
        "thinking": {"type": "adaptive"},
        "output_config": {"effort": "high"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "metadata": {"user_id": "user_abc_account__session_1"},
    }
    tools: Any = [{**READ_TOOL, "cache_control": ephemeral}]
    for model, family in (("gpt-5", "openai"), ("gemini-3-pro-preview", "gemini"), ("claude-opus-4-8", "anthropic")):
        with claude.messages.stream(
            model=model,
            max_tokens=32000,
            system=system,
            tools=tools,
            messages=messages,
            extra_headers={"anthropic-beta": CLAUDE_CODE_BETAS},
            extra_body=extra_body,
        ) as stream:
            final = stream.get_final_message()
        assert final.content and final.content[-1].type == "text", family
        assert PNG_B64 in json.dumps(mocks.last_request(family).body), family
