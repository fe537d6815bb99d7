"""The real Codex CLI (pinned in package-lock.json) through omnirelay's Responses API to a scripted upstream of
each family that is not the Responses API itself: an OpenAI chat-completions upstream and an Anthropic one.
Codex runs with a custom model provider pointing at the gateway (the README's config.toml) and a virtual key;
the scripted model asks for one shell command that writes a file, Codex runs it, the command's output must reach
the upstream as the tool result, and the scripted final answer must end the turn."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.codex_support import (
    SHELL_COMMAND_PARAM,
    SHELL_TOOL,
    CodexRun,
    offered_tools,
    run_codex,
    tool_calls,
    tool_results,
)
from tests.gateway import Gateway
from tests.mocks.script import ScriptedReply, ScriptedToolCall
from tests.mocks.server import MockUpstreams, RecordedRequest
from tests.state_helpers import ADMIN_KEY, Admin, backend

# The model name Codex is configured with, per upstream family; the gateway routes it by pattern.
MODELS = {"openai": "gpt-4.1", "anthropic": "claude-sonnet-4-5"}


class Harness:
    """One gateway whose only upstream is the mock of ``family``, and a virtual key for Codex."""

    def __init__(self, family: str, gw: Gateway, mocks: MockUpstreams) -> None:
        self.family = family
        self.model = MODELS[family]
        self.gw = gw
        self.mocks = mocks
        self.admin = Admin(gw.url)
        self.key_id, self.secret = self.admin.create_key(name=f"codex-{family}")

    def run(self, prompt: str, cwd: Path, websockets: bool = False) -> CodexRun:
        home = cwd.parent / "home"
        home.mkdir(exist_ok=True)
        return run_codex(
            prompt,
            gateway_url=self.gw.url,
            secret=self.secret,
            model=self.model,
            cwd=cwd,
            home=home,
            websockets=websockets,
        )

    def push(self, *replies: ScriptedReply) -> None:
        self.mocks.push(self.family, *replies)

    def requests(self) -> list[RecordedRequest]:
        return self.mocks.requests(self.family)


def upstream_config(family: str, mocks: MockUpstreams) -> dict[str, Any]:
    upstream: dict[str, Any] = {
        "name": f"codex-on-{family}",
        "provider": family,
        "base_url": mocks.url(family),
        "api_key": f"sk-mock-{family}-secret",
        "models": ["gpt-*"] if family == "openai" else ["claude-*"],
    }
    if family == "openai":
        upstream["preset"] = "openai"
    return {
        "upstreams": [upstream],
        "state": {"admin_key": ADMIN_KEY, "key_refresh_s": 0.2, "usage_flush_s": 0.1},
    }


@pytest.fixture(scope="module", params=list(MODELS))
def harness(
    request: pytest.FixtureRequest, mocks: MockUpstreams, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Harness]:
    family: str = request.param
    workdir = tmp_path_factory.mktemp(f"codex-{family}")
    with backend("sqlite", workdir) as b:
        gw = Gateway(upstream_config(family, mocks), workdir, env=b.env).start()
        try:
            yield Harness(family, gw, mocks)
        finally:
            gw.stop()


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    cwd = tmp_path / "project"
    cwd.mkdir()
    return cwd


def assert_turn_completed(run: CodexRun, final_text: str) -> None:
    failed = run.of_type("turn.failed")
    assert not failed, f"the Codex turn failed: {failed[0].get('error')}\n{run.describe()}"
    assert len(run.of_type("turn.completed")) == 1, run.describe()
    messages = [m.get("text") for m in run.items("agent_message")]
    assert messages and messages[-1] == final_text, run.describe()
    assert run.returncode == 0, run.describe()


def test_shell_call_round_trip(harness: Harness, project: Path) -> None:
    h = harness
    command = "echo written-by-codex > codex-out.txt && cat codex-out.txt"
    call_id = "call_codex_shell_1"
    arguments = json.dumps({SHELL_COMMAND_PARAM: command})
    h.push(
        ScriptedReply(text="", tool_calls=[ScriptedToolCall(name=SHELL_TOOL, id=call_id, arguments=arguments)]),
        ScriptedReply(text="FINAL-codex-done"),
    )
    run = h.run("Write codex-out.txt with a shell command, then report.", project)

    assert_turn_completed(run, "FINAL-codex-done")
    # Codex ran the scripted command (it wraps it in the user's shell) and the file is there.
    assert (project / "codex-out.txt").read_text() == "written-by-codex\n"
    (execution,) = run.items("command_execution")
    assert command in execution["command"] and execution["exit_code"] == 0, run.describe()
    assert "written-by-codex" in execution["aggregated_output"], run.describe()

    reqs = h.requests()
    assert len(reqs) == 2, [r.path for r in reqs]
    assert {r.body["model"] for r in reqs} == {h.model}
    first, second = reqs[0].body, reqs[1].body
    tools = offered_tools(h.family, first)
    assert SHELL_TOOL in tools, f"{SHELL_TOOL} not among the tools sent upstream: {sorted(tools)}"
    assert SHELL_COMMAND_PARAM in tools[SHELL_TOOL].get("properties", {}), tools[SHELL_TOOL]
    # The second upstream call carries the call as the model made it and the command's output as its result.
    assert (call_id, SHELL_TOOL, {SHELL_COMMAND_PARAM: command}) in tool_calls(h.family, second)
    results = tool_results(h.family, second)
    assert call_id in results, f"no result for {call_id} upstream: {results}"
    assert "written-by-codex" in results[call_id], results[call_id]

    # Both model calls are metered on the virtual key Codex used, under the model name it asked for.
    rows = h.admin.wait_usage(2, key=h.key_id)
    assert len(rows) == 2 and {r["model_requested"] for r in rows} == {h.model}, rows
    assert all(r["status"] == 200 for r in rows), rows


def test_upstream_cut_mid_stream_fails_the_turn_with_response_failed(harness: Harness, project: Path) -> None:
    h = harness
    # The upstream drops the connection after some text is out; every attempt the gateway may make does the same.
    cut = ScriptedReply(text="partial answer that never ends", chunks=6, truncate_after_chunks=4)
    h.push(cut, cut, cut)
    run = h.run("Say something.", project)

    assert h.requests(), f"the upstream was never called:\n{run.describe()}"
    failed = run.of_type("turn.failed")
    assert len(failed) == 1 and not run.of_type("turn.completed"), run.describe()
    assert run.returncode != 0 and not run.items("agent_message"), run.describe()
    # The gateway ended the stream with response.failed (Codex then reports its error message), rather than
    # closing it without a terminal event, which Codex reports as this:
    message = str(failed[0].get("error", {}).get("message"))
    assert "stream closed before response.completed" not in message, run.describe()


def test_websocket_provider_falls_back_to_http_at_once(harness: Harness, project: Path) -> None:
    h = harness
    h.push(ScriptedReply(text="FINAL-after-websocket-refusal"))
    run = h.run("Say something.", project, websockets=True)

    assert_turn_completed(run, "FINAL-after-websocket-refusal")
    # Refused the way Codex falls back on at once: no reconnect attempts (each one a backoff sleep) first.
    errors = [str(e.get("message")) for e in run.of_type("error")]
    assert not [m for m in errors if m.startswith("Reconnecting")], run.describe()
    assert len(h.requests()) == 1, [r.path for r in h.requests()]
