"""The real Claude Code CLI (pinned in package-lock.json) through omnirelay to a scripted upstream of each
non-Anthropic family: the OpenAI-format mock and the Gemini mock. Claude Code runs with its default settings
(its own default model name, routed by the gateway's ``claude-*`` pattern) and a virtual key; the scripted model
asks for Bash, Write and Read tool calls and reasons, and each test checks what Claude Code did (files, tool
calls, the stream-json result) and what reached the upstream (tool results, images, thought signatures)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.claude_code_support import (
    ClaudeRun,
    function_calls,
    images,
    offered_tools,
    run_claude,
    tiny_png,
    tool_results,
)
from tests.gateway import Gateway
from tests.mocks.script import ScriptedReply, ScriptedToolCall
from tests.mocks.server import MockUpstreams, RecordedRequest
from tests.state_helpers import ADMIN_KEY, Admin, backend

FAMILIES = ["openai", "gemini"]


class Harness:
    """One gateway whose only upstream serves ``claude-*`` from the mock of ``family``, and a virtual key."""

    def __init__(self, family: str, gw: Gateway, mocks: MockUpstreams, tmp: Path) -> None:
        self.family = family
        self.gw = gw
        self.mocks = mocks
        self.admin = Admin(gw.url)
        self.key_id, self.secret = self.admin.create_key(name=f"claude-code-{family}")
        self.tmp = tmp

    def run(self, prompt: str, cwd: Path, key_var: str = "ANTHROPIC_AUTH_TOKEN") -> ClaudeRun:
        home = cwd.parent / "home"
        home.mkdir(exist_ok=True)
        return run_claude(prompt, gateway_url=self.gw.url, secret=self.secret, cwd=cwd, home=home, key_var=key_var)

    def push(self, *replies: ScriptedReply) -> None:
        self.mocks.push(self.family, *replies)

    def requests(self) -> list[RecordedRequest]:
        return self.mocks.requests(self.family)


def upstream_config(family: str, mocks: MockUpstreams) -> dict[str, Any]:
    upstream: dict[str, Any] = {
        "name": f"claude-code-on-{family}",
        "provider": family,
        "base_url": mocks.url(family),
        "api_key": f"sk-mock-{family}-secret",
        "models": ["claude-*"],  # whatever default model name this Claude Code version sends
    }
    if family == "openai":
        upstream["preset"] = "openai"
    return {
        "upstreams": [upstream],
        "state": {"admin_key": ADMIN_KEY, "key_refresh_s": 0.2, "usage_flush_s": 0.1},
    }


@pytest.fixture(scope="module", params=FAMILIES)
def harness(
    request: pytest.FixtureRequest, mocks: MockUpstreams, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Harness]:
    family: str = request.param
    workdir = tmp_path_factory.mktemp(f"claude-code-{family}")
    with backend("sqlite", workdir) as b:
        gw = Gateway(upstream_config(family, mocks), workdir, env=b.env).start()
        try:
            yield Harness(family, gw, mocks, workdir)
        finally:
            gw.stop()


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    cwd = tmp_path / "project"
    cwd.mkdir()
    return cwd


def call(name: str, call_id: str, **arguments: Any) -> ScriptedToolCall:
    return ScriptedToolCall(name=name, id=call_id, arguments=json.dumps(arguments))


def assert_success(run: ClaudeRun, final_text: str) -> None:
    result = run.result()
    if result.get("subtype") != "success" or result.get("is_error") is not False:
        status, text = result.get("api_error_status"), result.get("result")
        raise AssertionError(f"the Claude Code run failed ({status}): {text!r}\n{run.describe()}")
    assert result.get("result") == final_text, run.describe()
    assert run.returncode == 0, run.describe()


def request_after(h: Harness, tool: str) -> dict[str, Any]:
    """The first upstream request whose conversation holds a result of ``tool``."""
    for req in h.requests():
        if any(name == tool for name, _ in tool_results(h.family, req.body)):
            body: dict[str, Any] = req.body
            return body
    raise AssertionError(f"no upstream request carried a {tool} tool result: {len(h.requests())} requests")


def assert_tool_offered(h: Harness, tool: str, *params: str) -> None:
    first = h.requests()[0].body
    schema = offered_tools(h.family, first).get(tool)
    assert schema is not None, f"{tool} not among the tools sent upstream: {sorted(offered_tools(h.family, first))}"
    assert set(params) <= set(schema.get("properties", {})), schema


# -- scenarios ----------------------------------------------------------------------------------------------


def test_bash_round_trip_with_the_default_model(harness: Harness, project: Path) -> None:
    h = harness
    command = "echo hi-from-bash > out.txt && cat out.txt"
    h.push(
        ScriptedReply(text="", tool_calls=[call("Bash", "call_bash_1", command=command, description="Write a file")]),
        ScriptedReply(text="FINAL-bash-done"),
    )
    run = h.run("Run the shell command that writes out.txt, then report.", project)

    assert_success(run, "FINAL-bash-done")
    assert (project / "out.txt").read_text() == "hi-from-bash\n"
    uses = run.blocks("assistant", "tool_use")
    assert [(u["name"], u["input"].get("command")) for u in uses] == [("Bash", command)], run.describe()
    assert_tool_offered(h, "Bash", "command")
    results = tool_results(h.family, request_after(h, "Bash"))
    assert [name for name, _ in results] == ["Bash"] and "hi-from-bash" in results[0][1], results
    # Its default model name (no ANTHROPIC_MODEL) is what reached the upstream and the usage record.
    default_model = run.init()["model"]
    assert default_model.startswith("claude-")
    reqs = h.requests()
    assert len(reqs) == 2, [r.path for r in reqs]
    if h.family == "openai":
        assert {r.body["model"] for r in reqs} == {default_model}
    else:
        assert all(r.path == f"/v1beta/models/{default_model}:streamGenerateContent" for r in reqs)
    rows = h.admin.wait_usage(2, key=h.key_id)
    assert len(rows) >= 2 and {r["model_requested"] for r in rows} == {default_model}
    assert all(r["status"] == 200 for r in rows), rows


def test_write_creates_the_file(harness: Harness, project: Path) -> None:
    h = harness
    target = project / "notes" / "written.txt"
    content = "written by Claude Code\nthrough omnirelay\n"
    h.push(
        ScriptedReply(text="", tool_calls=[call("Write", "call_write_1", file_path=str(target), content=content)]),
        ScriptedReply(text="FINAL-write-done"),
    )
    run = h.run("Write the notes file.", project, key_var="ANTHROPIC_API_KEY")  # the x-api-key way in

    assert_success(run, "FINAL-write-done")
    assert run.init().get("apiKeySource") == "ANTHROPIC_API_KEY"
    assert target.read_text() == content
    assert_tool_offered(h, "Write", "file_path", "content")
    results = tool_results(h.family, request_after(h, "Write"))
    assert [name for name, _ in results] == ["Write"], results
    (tool_result,) = run.blocks("user", "tool_result")
    assert not tool_result.get("is_error"), run.describe()


def test_read_of_a_png_reaches_the_upstream_as_an_image(harness: Harness, project: Path) -> None:
    h = harness
    png = tiny_png()
    (project / "pixel.png").write_bytes(png)
    h.push(
        ScriptedReply(text="", tool_calls=[call("Read", "call_read_1", file_path=str(project / "pixel.png"))]),
        ScriptedReply(text="FINAL-read-done"),
    )
    run = h.run("Look at pixel.png.", project)

    assert_success(run, "FINAL-read-done")
    assert_tool_offered(h, "Read", "file_path")
    # Claude Code answered the Read with the PNG as an image block in its tool_result (passed through as is) ...
    (tool_result,) = run.blocks("user", "tool_result")
    sent = [b for b in tool_result["content"] if isinstance(b, dict) and b.get("type") == "image"]
    assert [base64.b64decode(b["source"]["data"]) for b in sent] == [png], run.describe()
    # ... and that image must reach the model, once, not an empty tool result.
    after = request_after(h, "Read")
    assert images(h.family, after) == [png], f"upstream got the Read result as: {tool_results(h.family, after)}"


def test_thinking_turn_with_a_tool_call(harness: Harness, project: Path) -> None:
    h = harness
    reasoning = "The user wants the marker file; a single echo does it."
    h.push(
        ScriptedReply(
            text="",
            reasoning=reasoning,
            reasoning_signature="sig-claude-code-1",
            tool_calls=[call("Bash", "call_think_1", command="echo thought > t.txt", description="Write marker")],
        ),
        ScriptedReply(text="FINAL-after-thinking", reasoning="Done; report back."),
    )
    run = h.run("Think, then write the marker file.", project)

    assert_success(run, "FINAL-after-thinking")
    assert (project / "t.txt").read_text() == "thought\n"
    if h.family == "gemini":
        # Claude Code's `thinking: {type: "adaptive"}` must ask Gemini for its thoughts (it sends none otherwise).
        config = h.requests()[0].body.get("generationConfig") or {}
        assert (config.get("thinkingConfig") or {}).get("includeThoughts") is True, config
    thinking = [b.get("thinking", "") for b in run.blocks("assistant", "thinking")]
    assert reasoning in thinking, run.describe()
    if h.family == "gemini":
        # The signature Gemini put on its function call comes back on that call in the next request.
        calls = function_calls("gemini", request_after(h, "Bash"))
        assert [p.get("thoughtSignature") for p in calls] == ["sig-claude-code-1"], calls
