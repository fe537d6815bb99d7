"""The endpoints and fields Claude Code (and the Anthropic SDK) use besides ``POST /v1/messages``: token counting,
model discovery, the ``HEAD /`` probe, usage in ``message_start``, pattern routes for its ever-changing default
model name, and its ``metadata.user_id`` kept from non-Anthropic upstreams."""

from __future__ import annotations

import base64
import importlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.gateway import Gateway, mock_config
from tests.mocks.anthropic_server import mock_token_count
from tests.mocks.script import ScriptedReply, ScriptedUsage
from tests.mocks.server import MockUpstreams
from tests.state_helpers import Admin, backend, start_gateway, state_config

CLAUDE = "claude-sonnet-4-20250514"
SYSTEM: list[Any] = [
    {"type": "text", "text": "You are Claude Code, a coding agent.", "cache_control": {"type": "ephemeral"}},
    {"type": "text", "text": "Answer tersely. Use the tools when a file is involved."},
]
TOOLS: list[Any] = [
    {
        "name": "Bash",
        "description": "Run a shell command and return its output.",
        "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]},
    }
]
MESSAGES: list[Any] = [
    {"role": "user", "content": "List the Python files in this repository, then count their lines."},
    {
        "role": "assistant",
        "content": [{"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls *.py"}}],
    },
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "app.py\ncli.py"}]},
]


def _png(width: int, height: int) -> str:
    """The base64 of a PNG header of the given size (all the image estimate reads)."""
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + b"\x08\x02\x00\x00\x00"
    return base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + ihdr + b"\x00" * 8).decode()


def _texts() -> list[list[str]]:
    """The texts of SYSTEM + MESSAGES, one list per canonical message (the gateway's view of the conversation)."""
    return [
        [b["text"] for b in SYSTEM],
        [MESSAGES[0]["content"]],
        ["Bash", json.dumps({"command": "ls *.py"}, separators=(",", ":"))],
        ["app.py\ncli.py"],
    ]


def _tokenizer_count(encoding: str, texts: list[str]) -> int:
    enc = importlib.import_module("bpe_openai").get_encoding(encoding)
    return sum(len(enc.encode_ordinary(t)) for t in texts)


# --- count_tokens --------------------------------------------------------------------------------------------


def test_count_tokens_for_an_anthropic_model_is_the_upstreams_own_count(
    claude: anthropic.Anthropic, mocks: MockUpstreams
) -> None:
    counted = claude.messages.count_tokens(model=CLAUDE, system=SYSTEM, messages=MESSAGES, tools=TOOLS)
    sent = mocks.last_request("anthropic")
    assert sent.path == "/v1/messages/count_tokens"
    body = sent.body
    assert counted.input_tokens == mock_token_count(body)  # exact: the upstream's number, not an estimate
    assert "max_tokens" not in body and "stream" not in body
    assert [b["text"] for b in body["system"]] == [b["text"] for b in SYSTEM]
    assert body["tools"][0]["name"] == "Bash"
    assert body["messages"][-1]["content"][0]["type"] == "tool_result"
    assert not [r for r in mocks.requests("anthropic") if r.path == "/v1/messages"]  # nothing generated


def test_count_tokens_short_path_and_errors_in_anthropics_shape(gateway: Gateway, mocks: MockUpstreams) -> None:
    headers = {"x-api-key": "sk-test", "anthropic-version": "2023-06-01"}
    body = {"model": CLAUDE, "messages": [{"role": "user", "content": "hi"}]}
    r = httpx.post(gateway.url + "/messages/count_tokens", json=body, headers=headers, timeout=30)
    assert r.status_code == 200
    assert r.json() == {"input_tokens": mock_token_count(mocks.last_request("anthropic").body)}
    unknown = httpx.post(
        gateway.url + "/v1/messages/count_tokens", json={**body, "model": "nope-1"}, headers=headers, timeout=30
    )
    assert unknown.status_code == 404
    assert unknown.json()["type"] == "error" and unknown.json()["error"]["type"] == "not_found_error"
    bad = httpx.post(gateway.url + "/v1/messages/count_tokens", json={"model": CLAUDE}, headers=headers, timeout=30)
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(("model", "encoding"), [("gpt-4.1", "o200k_base"), ("gpt-4", "cl100k_base")])
def test_count_tokens_for_an_openai_model_is_its_tokenizers_count_within_the_bound(
    claude: anthropic.Anthropic, mocks: MockUpstreams, model: str, encoding: str
) -> None:
    counted = claude.messages.count_tokens(model=model, system=SYSTEM, messages=MESSAGES).input_tokens
    texts = _texts()
    exact_text = _tokenizer_count(encoding, [t for group in texts for t in group])
    # The documented bound: 3 tokens of framing per message and 3 for the reply on top of the text's own count.
    assert exact_text < counted <= exact_text + 3 * len(texts) + 3
    assert not mocks.requests("openai")  # counted locally
    with_tools = claude.messages.count_tokens(model=model, system=SYSTEM, messages=MESSAGES, tools=TOOLS)
    tool_json = json.dumps(
        {"name": "Bash", "description": TOOLS[0]["description"], "parameters": TOOLS[0]["input_schema"]},
        separators=(",", ":"),
    )
    tool_tokens = _tokenizer_count(encoding, [tool_json])
    assert abs(with_tools.input_tokens - counted - tool_tokens) <= tool_tokens // 10


def test_count_tokens_counts_images_with_the_image_estimate(claude: anthropic.Anthropic) -> None:
    text_only = claude.messages.count_tokens(model="gpt-4.1", messages=[{"role": "user", "content": "What is this?"}])
    image: Any = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": _png(512, 512)}}
    with_image = claude.messages.count_tokens(
        model="gpt-4.1", messages=[{"role": "user", "content": [image, {"type": "text", "text": "What is this?"}]}]
    )
    # 512 x 512: OpenAI 85 + 170 (one tile), Anthropic 512 * 512 / 750 = 350; the estimate takes the larger.
    assert with_image.input_tokens - text_only.input_tokens == 350


def test_count_tokens_for_other_models_is_the_stand_in_estimate(claude: anthropic.Anthropic) -> None:
    counted = claude.messages.count_tokens(model="deepseek-chat", system=SYSTEM, messages=MESSAGES).input_tokens
    texts = _texts()
    stand_in = _tokenizer_count("o200k_base", [t for group in texts for t in group])
    assert stand_in < counted <= stand_in + 3 * len(texts) + 3


@pytest.fixture(scope="module")
def closed_gateway(mocks: MockUpstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    cfg = mock_config(mocks.url("openai"), mocks.url("anthropic"), mocks.url("gemini"))
    cfg["server"]["master_key"] = "mk-closed-secret"
    gw = Gateway(cfg, tmp_path_factory.mktemp("closed")).start()
    yield gw
    gw.stop()


def test_count_tokens_needs_a_key_on_a_closed_gateway(closed_gateway: Gateway) -> None:
    body = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]}
    headers = {"anthropic-version": "2023-06-01"}
    r = httpx.post(closed_gateway.url + "/v1/messages/count_tokens", json=body, headers=headers, timeout=30)
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    ok = httpx.post(
        closed_gateway.url + "/v1/messages/count_tokens",
        json=body,
        headers={**headers, "x-api-key": "mk-closed-secret"},
        timeout=30,
    )
    assert ok.status_code == 200 and ok.json()["input_tokens"] > 0


# --- model discovery -----------------------------------------------------------------------------------------


def test_models_list_and_retrieve_in_anthropics_shape(claude: anthropic.Anthropic) -> None:
    page = claude.models.list()
    ids = [m.id for m in page.data]
    assert CLAUDE in ids and "gpt-4.1" in ids
    raw = page.model_dump()
    assert raw["first_id"] == ids[0] and raw["last_id"] == ids[-1] and raw["has_more"] is False
    info = claude.models.retrieve(CLAUDE)
    assert (info.type, info.id, info.display_name) == ("model", CLAUDE, CLAUDE)
    assert info.created_at.year >= 2025
    # Any name the gateway routes is retrievable, pattern-served ones included (Claude Code's own default).
    assert claude.models.retrieve("claude-opus-4-8").id == "claude-opus-4-8"
    with pytest.raises(anthropic.NotFoundError) as exc:
        claude.models.retrieve("no-such-model")
    body = exc.value.response.json()
    assert body["type"] == "error" and body["error"]["type"] == "not_found_error"


def test_models_retrieve_in_openais_shape(oai: openai.OpenAI) -> None:
    model = oai.models.retrieve("gpt-4.1")
    assert (model.id, model.object, model.owned_by) == ("gpt-4.1", "model", "mock-openai")
    assert model.created > 0
    with pytest.raises(openai.NotFoundError) as exc:
        oai.models.retrieve("no-such-model")
    assert exc.value.response.json()["error"]["code"] == "model_not_found"


def test_head_root_is_200(gateway: Gateway) -> None:
    r = httpx.head(gateway.url + "/", timeout=10)
    assert r.status_code == 200


# --- usage in message_start ----------------------------------------------------------------------------------


def _sse(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for frame in text.split("\n\n"):
        lines = frame.strip().splitlines()
        name = next((ln[7:] for ln in lines if ln.startswith("event: ")), None)
        data = next((ln[6:] for ln in lines if ln.startswith("data: ")), None)
        if name and data:
            events.append((name, json.loads(data)))
    return events


def _stream(gateway: Gateway, model: str) -> list[tuple[str, dict[str, Any]]]:
    body = {
        "model": model,
        "max_tokens": 100,
        "stream": True,
        "system": SYSTEM,
        "messages": [{"role": "user", "content": "Say something about tokens. " * 20}],
    }
    headers = {"x-api-key": "sk-test", "anthropic-version": "2023-06-01"}
    r = httpx.post(gateway.url + "/v1/messages", json=body, headers=headers, timeout=30)
    assert r.status_code == 200
    return _sse(r.text)


def test_message_start_carries_an_input_estimate_corrected_in_message_delta(
    gateway: Gateway, mocks: MockUpstreams
) -> None:
    mocks.push("openai", ScriptedReply(text="Tokens are pieces.", usage=ScriptedUsage(input=251, output=5, cached=40)))
    events = _stream(gateway, "gpt-4.1")
    start = next(data for name, data in events if name == "message_start")["message"]["usage"]
    # No usage from an OpenAI upstream before the end: the estimate (600 characters of prompt: 150 and more).
    assert start["input_tokens"] >= 150
    assert start["cache_creation_input_tokens"] == 0 and start["cache_read_input_tokens"] == 0
    delta = next(data for name, data in events if name == "message_delta")["usage"]
    assert delta["input_tokens"] == 251 - 40  # exact, cache reads apart as Anthropic reports them
    assert delta["cache_read_input_tokens"] == 40 and delta["output_tokens"] == 5
    # An Anthropic upstream reports it up front: message_start carries its exact numbers.
    mocks.push("anthropic", ScriptedReply(usage=ScriptedUsage(input=300, output=9, cached=100, cache_write=50)))
    exact = next(data for name, data in _stream(gateway, CLAUDE) if name == "message_start")["message"]["usage"]
    assert (exact["input_tokens"], exact["cache_read_input_tokens"], exact["cache_creation_input_tokens"]) == (
        150,
        100,
        50,
    )


# --- pattern routes and metadata.user_id ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def pattern_gateway(mocks: MockUpstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    cfg = mock_config(mocks.url("openai"), mocks.url("anthropic"), mocks.url("gemini"))
    cfg["models"] = {
        "claude-*": {"channels": [{"upstream": "mock-deepseek", "model": "deepseek-chat"}]},
        "claude-opus-*": {"channels": [{"upstream": "mock-gemini", "model": "gemini-2.5-pro"}]},
        "claude-sonnet-4-20250514": {"channels": [{"upstream": "mock-anthropic"}]},
    }
    gw = Gateway(cfg, Path(tmp_path_factory.mktemp("patterns"))).start()
    yield gw
    gw.stop()


def test_a_pattern_key_routes_every_name_it_prefixes(pattern_gateway: Gateway, mocks: MockUpstreams) -> None:
    client = anthropic.Anthropic(base_url=pattern_gateway.url, api_key="sk-test", max_retries=0, timeout=30)

    def ask(model: str) -> None:
        client.messages.create(model=model, max_tokens=50, messages=[{"role": "user", "content": "hi"}])

    ask("claude-haiku-9-1")  # only claude-* matches
    assert mocks.last_request("openai").body["model"] == "deepseek-chat"
    ask("claude-opus-5-5")  # the longer pattern wins
    assert "gemini-2.5-pro" in mocks.last_request("gemini").path
    ask(CLAUDE)  # an exact key wins over both patterns
    assert mocks.last_request("anthropic").body["model"] == CLAUDE
    assert len(mocks.requests("openai")) == 1 and len(mocks.requests("anthropic")) == 1
    ids = [m.id for m in client.models.list().data]
    assert "claude-*" not in ids and "claude-opus-*" not in ids and CLAUDE in ids


def test_claude_codes_user_id_reaches_other_upstreams_as_a_stable_hash(
    claude: anthropic.Anthropic, mocks: MockUpstreams
) -> None:
    def ask(session: str) -> str:
        user_id = json.dumps({"device_id": "d" * 64, "account_uuid": "", "session_id": session})
        claude.messages.create(
            model="gpt-4.1",
            max_tokens=50,
            metadata={"user_id": user_id},
            messages=[{"role": "user", "content": "hi"}],
        )
        user: str = mocks.last_request("openai").body["user"]
        return user

    first, second = ask("session-1"), ask("session-2")
    assert first.startswith("user_") and "device_id" not in first and len(first) <= 64
    assert first == second  # the same user across sessions
    claude.messages.create(
        model="gpt-4.1", max_tokens=50, metadata={"user_id": "user-42"}, messages=[{"role": "user", "content": "hi"}]
    )
    assert mocks.last_request("openai").body["user"] == "user-42"  # an opaque id is kept


# --- count_tokens and virtual keys ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed_gateway(mocks: MockUpstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    workdir = tmp_path_factory.mktemp("count-keys")
    with backend("sqlite", workdir) as b:
        gw = start_gateway(state_config((mocks.url("openai"), mocks.url("anthropic"), mocks.url("gemini"))), workdir, b)
        try:
            yield gw
        finally:
            gw.stop()


def test_count_tokens_checks_the_keys_models_but_charges_and_records_nothing(
    keyed_gateway: Gateway, mocks: MockUpstreams
) -> None:
    admin = Admin(keyed_gateway.url)
    kid, secret = admin.create_key(models="gpt-4.1*", credit=1.0, rpm=1)
    client = anthropic.Anthropic(base_url=keyed_gateway.url, api_key=secret, max_retries=0, timeout=30)
    for _ in range(3):  # more than the key's 1 request a minute: counting is not a request to a model
        assert client.messages.count_tokens(model="gpt-4.1", messages=MESSAGES).input_tokens > 0
    with pytest.raises(anthropic.PermissionDeniedError) as denied:
        client.messages.count_tokens(model=CLAUDE, messages=MESSAGES)
    assert denied.value.body["error"]["type"] == "permission_error"  # type: ignore[index]
    reply = client.messages.create(model="gpt-4.1", max_tokens=50, messages=[{"role": "user", "content": "hi"}])
    assert reply.content[0].type == "text"  # the one request of this minute is still there
    records = admin.wait_usage(1, key=kid)
    assert [r["model_requested"] for r in records] == ["gpt-4.1"]  # the call only, no count
    key = admin.key(kid)
    assert key["spent"] == pytest.approx(records[0]["cost"], abs=1e-12) and key["spent"] > 0
    assert not [r for r in mocks.requests("anthropic") if r.path.endswith("count_tokens")]
