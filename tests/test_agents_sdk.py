"""The OpenAI Agents SDK (``openai-agents``, locked in requirements/dev.txt) through omnirelay with its DEFAULT model
setting: the Responses API model (``OpenAIResponsesModel``) on the client set with ``set_default_openai_client``,
pointed at the gateway's ``/v1`` with a virtual key. The scripted upstream (an OpenAI chat-completions mock, or
the Anthropic mock) asks for the agent's one function tool, the SDK runs it, the tool's result must reach the
upstream, and the scripted text must be the run's final output, with ``Runner.run`` and ``Runner.run_streamed``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from agents import (
    Agent,
    Runner,
    function_tool,
    set_default_openai_api,
    set_default_openai_client,
    set_tracing_disabled,
)
from agents.models import get_default_model

from tests.codex_support import offered_tools, tool_calls, tool_results
from tests.gateway import Gateway
from tests.mocks.script import ScriptedReply, ScriptedToolCall
from tests.mocks.server import MockUpstreams
from tests.state_helpers import ADMIN_KEY, Admin, backend

FAMILIES = ["openai", "anthropic"]
ANTHROPIC_MODEL = "claude-sonnet-4-5"


class Harness:
    """One gateway serving the SDK's default model name (``gpt-*``) from the OpenAI mock and ``claude-*`` from the
    Anthropic mock; each test gets its own virtual key (``new_key``), so its usage records are its own."""

    def __init__(self, gw: Gateway, mocks: MockUpstreams) -> None:
        self.gw = gw
        self.mocks = mocks
        self.admin = Admin(gw.url)
        self.key_id, self.secret = "", ""

    def new_key(self) -> None:
        self.key_id, self.secret = self.admin.create_key(name="agents-sdk")


def gateway_config(mocks: MockUpstreams) -> dict[str, Any]:
    return {
        "upstreams": [
            {
                "name": "agents-on-openai",
                "provider": "openai",
                "preset": "openai",
                "base_url": mocks.url("openai"),
                "api_key": "sk-mock-openai-secret",
                "models": ["gpt-*"],  # whatever default model name this SDK version uses
            },
            {
                "name": "agents-on-anthropic",
                "provider": "anthropic",
                "base_url": mocks.url("anthropic"),
                "api_key": "sk-ant-mock-secret",
                "models": ["claude-*"],
            },
        ],
        "state": {"admin_key": ADMIN_KEY, "key_refresh_s": 0.2, "usage_flush_s": 0.1},
    }


@pytest.fixture(scope="module")
def harness(mocks: MockUpstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    workdir = tmp_path_factory.mktemp("agents-sdk")
    with backend("sqlite", workdir) as b:
        gw = Gateway(gateway_config(mocks), workdir, env=b.env).start()
        try:
            yield Harness(gw, mocks)
        finally:
            gw.stop()


@pytest.fixture()
def sdk(harness: Harness) -> Harness:
    """The README's two lines: the SDK's default client is the gateway, and no traces go to OpenAI."""
    harness.new_key()
    set_default_openai_client(
        openai.AsyncOpenAI(base_url=harness.gw.url + "/v1", api_key=harness.secret, max_retries=0, timeout=30),
        use_for_tracing=False,
    )
    set_tracing_disabled(True)
    set_default_openai_api("responses")  # the default already; set again in case another test changed it
    return harness


def order_agent(family: str, orders: list[tuple[str, int]]) -> Agent[None]:
    @function_tool
    def record_order(item: str, quantity: int) -> str:
        """Record an order for ``quantity`` units of ``item``.

        Args:
            item: The product name.
            quantity: How many units.
        """
        orders.append((item, quantity))
        return f"order-recorded:{item}x{quantity}"

    instructions = "Record the order the user asks for with the tool, then confirm."
    if family == "openai":  # no model: the SDK's own default model name
        return Agent(name="orders", instructions=instructions, tools=[record_order])
    return Agent(name="orders", instructions=instructions, tools=[record_order], model=ANTHROPIC_MODEL)


def script_order(mocks: MockUpstreams, family: str, final_text: str) -> str:
    call_id = f"call_agents_{family}_1"
    arguments = json.dumps({"item": "widget", "quantity": 3})
    mocks.push(
        family,
        ScriptedReply(text="", tool_calls=[ScriptedToolCall(name="record_order", id=call_id, arguments=arguments)]),
        ScriptedReply(text=final_text),
    )
    return call_id


def assert_upstream_round_trip(h: Harness, family: str, call_id: str, model: str) -> None:
    reqs = h.mocks.requests(family)
    assert len(reqs) == 2, [r.path for r in reqs]
    assert {r.body["model"] for r in reqs} == {model}
    tools = offered_tools(family, reqs[0].body)
    assert set(tools) == {"record_order"}, tools
    assert {"item", "quantity"} <= set(tools["record_order"].get("properties", {})), tools
    second = reqs[1].body
    assert (call_id, "record_order", {"item": "widget", "quantity": 3}) in tool_calls(family, second)
    results = tool_results(family, second)
    assert call_id in results and "order-recorded:widgetx3" in results[call_id], results
    rows = h.admin.wait_usage(2, key=h.key_id, model=model)
    assert len(rows) == 2 and all(r["status"] == 200 for r in rows), rows


def model_for(family: str) -> str:
    return get_default_model() if family == "openai" else ANTHROPIC_MODEL


@pytest.mark.parametrize("family", FAMILIES)
async def test_runner_run_with_one_function_tool(sdk: Harness, family: str) -> None:
    orders: list[tuple[str, int]] = []
    call_id = script_order(sdk.mocks, family, f"FINAL-agents-{family}")

    result = await Runner.run(order_agent(family, orders), "Order three widgets.")

    assert orders == [("widget", 3)]
    assert result.final_output == f"FINAL-agents-{family}"
    assert_upstream_round_trip(sdk, family, call_id, model_for(family))


@pytest.mark.parametrize("family", FAMILIES)
async def test_runner_run_streamed_with_one_function_tool(sdk: Harness, family: str) -> None:
    orders: list[tuple[str, int]] = []
    call_id = script_order(sdk.mocks, family, f"FINAL-streamed-{family}")

    streamed = Runner.run_streamed(order_agent(family, orders), "Order three widgets.")
    deltas: list[str] = []
    async for event in streamed.stream_events():
        if event.type == "raw_response_event" and event.data.type == "response.output_text.delta":
            deltas.append(event.data.delta)

    assert orders == [("widget", 3)]
    assert streamed.final_output == f"FINAL-streamed-{family}"
    assert "".join(deltas) == f"FINAL-streamed-{family}"  # the text arrived as Responses deltas
    assert_upstream_round_trip(sdk, family, call_id, model_for(family))
