"""The server-side tool loop (web_search, fetch, python on any model) with a scripted upstream: the tool results
the model receives, server tool blocks and reasoning progress on both SDKs, streaming or not, client tools
passed through untouched, the round cap, and exact usage sums and charges."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.compound_support import GPT_IN, GPT_OUT, CompoundEnv, compound_gateway
from tests.gateway import ROOT
from tests.mocks.script import ScriptedReply, ScriptedToolCall, ScriptedUsage
from tests.mocks.server import MockUpstreams

QUESTION: Any = [{"role": "user", "content": "What is six times seven?"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture(scope="module")
def tenv(mocks: MockUpstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CompoundEnv]:
    root = tmp_path_factory.mktemp("toolloop")
    docs = root / "docs"
    docs.mkdir()
    (docs / "vexmoor.md").write_text(
        "---\ntitle: Vexmoor bridge\ndate: 2023-04-01\n---\nThe Vexmoor bridge is 412 m long."
    )
    (docs / "other.md").write_text("# Harbour\n\nA harbour city with ferries.")
    index = root / "corpus.db"
    subprocess.run(
        [sys.executable, "-m", "omnirelay", "corpus", "add", str(docs), "--index", str(index)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    settings = {
        "search_backends": {"local": {"type": "local", "path": str(index)}},
        "python": {"enabled": True},
    }
    yield from compound_gateway(mocks, root / "gw", settings)


def _call(name: str, args: dict[str, Any], call_id: str = "call_srv_1", inp: int = 10, out: int = 3) -> ScriptedReply:
    return ScriptedReply(
        text="",
        tool_calls=[ScriptedToolCall(name=name, arguments=json.dumps(args), id=call_id)],
        finish="tool_calls",
        usage=ScriptedUsage(input=inp, output=out),
    )


def _final(text: str, inp: int = 20, out: int = 5) -> ScriptedReply:
    return ScriptedReply(text=text, usage=ScriptedUsage(input=inp, output=out))


def _tool_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in body["messages"] if m["role"] == "tool"]


def _cost(inp: int, out: int) -> float:
    return inp * GPT_IN + out * GPT_OUT


def test_python_openai_non_stream_usage_and_charge(tenv: CompoundEnv, mocks: MockUpstreams) -> None:
    mocks.push("openai", _call("python", {"code": "print(6 * 7)"}), _final("It is 42."))
    raw = tenv.oai().chat.completions.with_raw_response.create(
        model="gpt-4.1", messages=QUESTION, extra_body={"omnirelay": {"tools": ["python"]}}
    )
    resp = raw.parse()
    msg = resp.choices[0].message
    assert msg.content == "It is 42." and resp.choices[0].finish_reason == "stop"
    assert "[python] output:\n42" in (msg.model_extra or {})["reasoning_content"]
    reqs = mocks.requests("openai")
    assert len(reqs) == 2
    declared = {t["function"]["name"]: t["function"] for t in reqs[0].body["tools"]}
    assert declared["python"]["parameters"]["required"] == ["code"]
    assert "omnirelay" not in reqs[0].body
    follow = reqs[1].body["messages"]
    assert follow[-2]["role"] == "assistant" and follow[-2]["tool_calls"][0]["function"]["name"] == "python"
    assert _tool_messages(reqs[1].body)[0]["content"].strip() == "42"
    assert resp.usage is not None
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (30, 8)
    assert float(raw.headers["x-omnirelay-cost"]) == pytest.approx(_cost(30, 8), abs=1e-15)
    assert tenv.record(raw.headers["x-request-id"])["cost"] == pytest.approx(_cost(30, 8), abs=1e-15)


def test_fetch_loopback_refused_openai_stream(tenv: CompoundEnv, mocks: MockUpstreams) -> None:
    mocks.push("openai", _call("fetch", {"url": "http://127.0.0.1:9/secret"}), _final("I could not read it."))
    stream = tenv.oai().chat.completions.create(
        model="gpt-4.1",
        messages=[{"role": "user", "content": "Read http://127.0.0.1:9/secret"}],
        tools=[{"type": "function", "function": {"name": "fetch"}}],
        stream=True,
        stream_options={"include_usage": True},
    )
    order: list[str] = []
    reasoning, content = "", ""
    usage = None
    for chunk in stream:
        usage = chunk.usage or usage
        for c in chunk.choices:
            extra = c.delta.model_extra or {}
            if extra.get("reasoning_content"):
                reasoning += extra["reasoning_content"]
                order.append("reasoning")
            if c.delta.content:
                content += c.delta.content
                order.append("content")
            assert not c.delta.tool_calls  # the server tool's call never reaches the client
    assert content == "I could not read it."
    assert "[fetch http://127.0.0.1:9/secret] refused" in reasoning
    assert order.index("reasoning") < order.index("content")
    tool_msg = _tool_messages(mocks.requests("openai")[1].body)[0]
    assert "fetch refused" in tool_msg["content"] and "127.0.0.1" in tool_msg["content"]
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (30, 8)


def test_web_search_anthropic_server_tool_on_openai_model(tenv: CompoundEnv, mocks: MockUpstreams) -> None:
    mocks.push("openai", _call("web_search", {"query": "Vexmoor bridge length"}), _final("It is 412 m long."))
    raw = tenv.claude().messages.with_raw_response.create(
        model="gpt-4.1",
        max_tokens=500,
        messages=[{"role": "user", "content": "How long is the Vexmoor bridge?"}],
        tools=[{"type": "web_search_20250305", "name": "web_search"}],
    )
    msg = raw.parse()
    assert [b.type for b in msg.content] == ["server_tool_use", "web_search_tool_result", "text"]
    use, result, text = msg.content
    assert use.type == "server_tool_use" and use.name == "web_search"
    assert use.input == {"query": "Vexmoor bridge length"}
    assert result.type == "web_search_tool_result" and isinstance(result.content, list)
    assert result.content[0].url == "corpus://vexmoor.md" and result.content[0].title == "Vexmoor bridge"
    assert text.type == "text" and text.text == "It is 412 m long."
    assert msg.stop_reason == "end_turn"
    reqs = mocks.requests("openai")
    assert [t["function"]["name"] for t in reqs[0].body["tools"]] == ["web_search"]
    found = _tool_messages(reqs[1].body)[0]["content"]
    assert "corpus://vexmoor.md" in found and "412 m" in found
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (30, 8)
    assert tenv.record(raw.headers["x-request-id"])["cost"] == pytest.approx(_cost(30, 8), abs=1e-15)


def test_python_and_fetch_anthropic_stream_blocks(tenv: CompoundEnv, mocks: MockUpstreams) -> None:
    mocks.push(
        "openai",
        _call("python", {"code": "print(sum(range(10)))"}),
        _call("fetch", {"url": "http://10.0.0.1/admin"}, call_id="call_srv_2", inp=15, out=4),
        _final("Sum 45; the page is off limits.", out=9),
    )
    with tenv.claude().messages.stream(
        model="gpt-4.1",
        max_tokens=500,
        messages=[{"role": "user", "content": "Sum 0..9, then read the admin page."}],
        extra_body={"omnirelay": {"tools": ["python", "fetch"]}},
    ) as stream:
        starts = [e.content_block.type for e in stream if e.type == "content_block_start"]
        final = stream.get_final_message()
    assert starts == [
        "server_tool_use",
        "code_execution_tool_result",
        "server_tool_use",
        "web_fetch_tool_result",
        "text",
    ]
    blocks = final.content
    assert blocks[0].type == "server_tool_use" and blocks[0].name == "code_execution"
    assert blocks[0].input == {"code": "print(sum(range(10)))"}
    assert blocks[1].type == "code_execution_tool_result"
    assert blocks[1].content.type == "code_execution_result" and blocks[1].content.stdout.strip() == "45"
    assert blocks[2].type == "server_tool_use" and blocks[2].name == "web_fetch"
    assert blocks[3].type == "web_fetch_tool_result" and blocks[3].content.type == "web_fetch_tool_result_error"
    assert blocks[4].type == "text" and blocks[4].text == "Sum 45; the page is off limits."
    assert not any(b.type == "thinking" for b in blocks)  # Anthropic clients get blocks, not narration
    reqs = mocks.requests("openai")
    assert len(reqs) == 3
    assert _tool_messages(reqs[1].body)[0]["content"].strip() == "45"
    assert "private or reserved address" in _tool_messages(reqs[2].body)[1]["content"]
    assert (final.usage.input_tokens, final.usage.output_tokens) == (45, 16)


@pytest.mark.parametrize("stream", [False, True])
def test_client_tool_passes_through_alongside_server_tools(
    tenv: CompoundEnv, mocks: MockUpstreams, stream: bool
) -> None:
    weather_args = '{"city": "Vexmoor"}'
    mocks.push(
        "openai",
        _call("web_search", {"query": "Vexmoor"}),
        ScriptedReply(
            text="",
            tool_calls=[ScriptedToolCall(name="get_weather", arguments=weather_args, id="call_client_7")],
            finish="tool_calls",
            usage=ScriptedUsage(input=20, output=5),
        ),
    )
    tools: Any = [WEATHER_TOOL, {"type": "function", "function": {"name": "web_search"}}]
    client = tenv.oai()
    if stream:
        calls: dict[int, dict[str, str]] = {}
        finish = None
        for chunk in client.chat.completions.create(model="gpt-4.1", messages=QUESTION, tools=tools, stream=True):
            for c in chunk.choices:
                finish = c.finish_reason or finish
                for tc in c.delta.tool_calls or ():
                    entry = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
                    entry["id"] += tc.id or ""
                    entry["name"] += (tc.function and tc.function.name) or ""
                    entry["arguments"] += (tc.function and tc.function.arguments) or ""
        got = list(calls.values())
    else:
        resp = client.chat.completions.create(model="gpt-4.1", messages=QUESTION, tools=tools)
        finish = resp.choices[0].finish_reason
        got = [
            {"id": t.id, "name": t.function.name, "arguments": t.function.arguments}
            for t in resp.choices[0].message.tool_calls or ()
            if t.type == "function"
        ]
    assert finish == "tool_calls"
    assert got == [{"id": "call_client_7", "name": "get_weather", "arguments": weather_args}]
    reqs = mocks.requests("openai")
    assert len(reqs) == 2
    first = {t["function"]["name"]: t["function"] for t in reqs[0].body["tools"]}
    assert first["get_weather"] == WEATHER_TOOL["function"]  # the client's tool reaches the model unchanged
    assert first["web_search"]["parameters"]["required"] == ["query"]
    assert "Vexmoor bridge" in _tool_messages(reqs[1].body)[0]["content"]


def test_round_cap_stops_with_length(tenv: CompoundEnv, mocks: MockUpstreams) -> None:
    mocks.push(
        "openai",
        _call("python", {"code": "print(1)"}),
        _call("python", {"code": "print(2)"}, call_id="call_srv_2"),
        _call("python", {"code": "print(3)"}, call_id="call_srv_3"),
    )
    resp = tenv.oai().chat.completions.create(
        model="gpt-4.1", messages=QUESTION, extra_body={"omnirelay": {"tools": ["python"], "max_rounds": 2}}
    )
    assert resp.choices[0].finish_reason == "length"
    assert "Stopped at the round cap (2)" in (resp.choices[0].message.model_extra or {})["reasoning_content"]
    reqs = mocks.requests("openai")
    assert len(reqs) == 2  # the third scripted reply was never asked for
    assert reqs[1].body["tool_choice"] == "none"
    assert "every server-side tool round" in json.dumps(reqs[1].body["messages"])
    assert resp.usage is not None and (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (20, 6)


def test_anthropic_server_tools_on_claude_pass_through_to_anthropic(tenv: CompoundEnv, mocks: MockUpstreams) -> None:
    msg = tenv.claude().messages.create(
        model="claude-sonnet-4-20250514",
        max_tokens=100,
        messages=[{"role": "user", "content": "hi"}],
        tools=[{"type": "web_search_20250305", "name": "web_search", "max_uses": 2}],
    )
    assert msg.content[0].type == "text" and msg.content[0].text == "echo: hi"
    sent = mocks.last_request("anthropic").body
    assert sent["tools"] == [{"type": "web_search_20250305", "name": "web_search", "max_uses": 2}]


def test_unknown_server_tool_is_a_400(tenv: CompoundEnv) -> None:
    r = httpx.post(
        tenv.gw.url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {tenv.secret}"},
        json={"model": "gpt-4.1", "messages": QUESTION, "omnirelay": {"tools": ["shell"]}},
        timeout=30,
    )
    assert r.status_code == 400
    assert "unknown server-side tool 'shell'" in r.json()["error"]["message"]


def test_follow_up_turn_may_send_server_tool_blocks_back(tenv: CompoundEnv, mocks: MockUpstreams) -> None:
    """A multi-turn Anthropic client sends the previous reply's content back verbatim, server tool blocks
    included; the gateway accepts them and gives the next upstream their results as context."""
    mocks.push("openai", _call("web_search", {"query": "Vexmoor bridge length"}), _final("It is 412 m long."))
    first = tenv.claude().messages.create(
        model="gpt-4.1",
        max_tokens=500,
        messages=[{"role": "user", "content": "How long is the Vexmoor bridge?"}],
        tools=[{"type": "web_search_20250305", "name": "web_search"}],
    )
    assert [b.type for b in first.content] == ["server_tool_use", "web_search_tool_result", "text"]
    mocks.reset()
    mocks.push("openai", _final("About 0.4 km."))
    history: Any = [
        {"role": "user", "content": "How long is the Vexmoor bridge?"},
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": "And in kilometres?"},
    ]
    second = tenv.claude().messages.create(model="gpt-4.1", max_tokens=500, messages=history)
    assert second.content[0].type == "text" and second.content[0].text == "About 0.4 km."
    sent = mocks.last_request("openai").body["messages"]
    assistant = next(m for m in sent if m["role"] == "assistant")
    context = json.dumps(assistant["content"])
    assert "web_search_tool_result" in context and "corpus://vexmoor.md" in context
    assert "It is 412 m long." in context
