"""think: and heavy: through the official SDKs against the scripted OpenAI mock: reasoning passes, votes,
synthesis, caps, stream event order, usage sums and exact charges."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from omnirelay.compound.heavy import MARKER
from tests.compound_support import GPT_IN, CompoundEnv, compound_gateway, gpt_cost
from tests.mocks.script import ScriptedReply, ScriptedUsage
from tests.mocks.server import MockUpstreams

Q: Any = [{"role": "user", "content": "What is 6 * 7?"}]


@pytest.fixture(scope="module")
def cenv(mocks: MockUpstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CompoundEnv]:
    yield from compound_gateway(mocks, tmp_path_factory.mktemp("compound"))


def _system_texts(body: dict[str, Any]) -> str:
    return " ".join(m["content"] for m in body["messages"] if m["role"] in ("system", "developer"))


# -- listing -----------------------------------------------------------------------------------------------


def test_models_lists_virtual_names(cenv: CompoundEnv) -> None:
    ids = {m.id for m in cenv.oai().models.list()}
    for mode in ("think", "heavy", "deepsearch"):
        assert f"{mode}:gpt-4.1" in ids and f"{mode}:claude-sonnet-4-20250514" in ids
    page = cenv.claude().models.list()
    assert "heavy:gpt-4.1" in {m.id for m in page.data}


def test_unknown_base_model_is_404(cenv: CompoundEnv) -> None:
    import openai

    with pytest.raises(openai.NotFoundError):
        cenv.oai().chat.completions.create(model="heavy:no-such-model", messages=Q)
    with pytest.raises(openai.NotFoundError):
        cenv.oai().chat.completions.create(model="heavy:think:gpt-4.1", messages=Q)


def test_bad_option_is_400_naming_the_field(cenv: CompoundEnv) -> None:
    import openai

    with pytest.raises(openai.BadRequestError) as exc:
        cenv.oai().chat.completions.create(model="heavy:gpt-4.1", messages=Q, extra_body={"omnirelay": {"agents": 99}})
    assert "omnirelay.agents" in str(exc.value)


# -- think: ----------------------------------------------------------------------------------------------


def test_think_without_native_reasoning_runs_a_reasoning_pass(cenv: CompoundEnv, mocks: MockUpstreams) -> None:
    mocks.push(
        "openai",
        ScriptedReply(text="Six sevens: 6*7 = 42.", usage=ScriptedUsage(input=20, output=10)),
        ScriptedReply(text="42", usage=ScriptedUsage(input=30, output=2)),
    )
    raw = cenv.oai().chat.completions.with_raw_response.create(model="think:gpt-4.1", messages=Q)
    resp = raw.parse()
    msg = resp.choices[0].message
    assert msg.content == "42"
    assert msg.model_extra is not None and msg.model_extra["reasoning_content"] == "Six sevens: 6*7 = 42."
    assert resp.model == "think:gpt-4.1"
    assert resp.usage is not None and (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (50, 12)
    reqs = mocks.requests("openai")
    assert len(reqs) == 2
    assert "think the problem through" in _system_texts(reqs[0].body)
    assert "Six sevens" in _system_texts(reqs[1].body)
    assert all(r.body["model"] == "gpt-4.1" for r in reqs)
    expected = 50 * 2e-6 + 12 * 8e-6
    assert float(raw.headers["x-omnirelay-cost"]) == pytest.approx(expected, abs=1e-15)
    rec = cenv.record(raw.headers["x-request-id"])
    assert rec["cost"] == pytest.approx(expected, abs=1e-15) and rec["input_tokens"] == 50


def test_think_with_native_reasoning_asks_the_model(cenv: CompoundEnv, mocks: MockUpstreams) -> None:
    mocks.push("openai", ScriptedReply(text="42", reasoning="multiply", usage=ScriptedUsage(reasoning=5)))
    resp = cenv.oai().chat.completions.create(model="think:o3", messages=Q, reasoning_effort="high")
    assert resp.choices[0].message.content == "42"
    reqs = mocks.requests("openai")
    assert len(reqs) == 1 and reqs[0].body["model"] == "o3" and reqs[0].body["reasoning_effort"] == "high"
    assert resp.usage is not None and resp.usage.completion_tokens_details is not None
    assert resp.usage.completion_tokens_details.reasoning_tokens == 5


def test_think_streams_thinking_then_text_on_anthropic_sdk(cenv: CompoundEnv, mocks: MockUpstreams) -> None:
    mocks.push("openai", ScriptedReply(text="step one, step two"), ScriptedReply(text="The answer is 42."))
    with cenv.claude().messages.stream(model="think:gpt-4.1", max_tokens=500, messages=Q) as stream:
        kinds = [(e.type, getattr(getattr(e, "content_block", None), "type", None)) for e in stream]
        final = stream.get_final_message()
    starts = [k for t, k in kinds if t == "content_block_start"]
    assert starts == ["thinking", "text"]
    assert final.content[0].type == "thinking" and final.content[0].thinking == "step one, step two"
    assert final.content[1].type == "text" and final.content[1].text == "The answer is 42."
    assert (final.usage.input_tokens, final.usage.output_tokens) == (24, 14)


# -- heavy: vote ---------------------------------------------------------------------------------------------


def test_heavy_vote_picks_the_plurality(cenv: CompoundEnv, mocks: MockUpstreams) -> None:
    mocks.push(
        "openai",
        ScriptedReply(text="6*7=42\nFinal answer: 42"),
        ScriptedReply(text="It is 41.\nFinal answer: 41"),
        ScriptedReply(text="7*6 = 42.\nFinal answer: **42**."),
    )
    raw = cenv.oai().chat.completions.with_raw_response.create(
        model="heavy:gpt-4.1", messages=Q, extra_body={"omnirelay": {"agents": 3}}
    )
    resp = raw.parse()
    msg = resp.choices[0].message
    assert "42" in (msg.content or "") and "41" not in (msg.content or "")
    reasoning = msg.model_extra["reasoning_content"] if msg.model_extra else ""
    assert "Vote: 42 (2/3 agents)" in reasoning and reasoning.count("done:") == 3
    assert resp.choices[0].finish_reason == "stop"
    reqs = mocks.requests("openai")
    assert len(reqs) == 3  # no synthesis call
    temps = sorted(r.body["temperature"] for r in reqs)
    assert temps == [0.3, 0.65, 1.0]
    assert resp.usage is not None and (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (36, 21)
    assert float(raw.headers["x-omnirelay-cost"]) == pytest.approx(gpt_cost(3), abs=1e-15)
    rec = cenv.record(raw.headers["x-request-id"])
    assert rec["cost"] == pytest.approx(gpt_cost(3), abs=1e-15)


def test_heavy_effort_scales_agents(cenv: CompoundEnv, mocks: MockUpstreams) -> None:
    mocks.push("openai", *[ScriptedReply(text="Final answer: 42") for _ in range(8)])
    resp = cenv.oai().chat.completions.create(model="heavy:gpt-4.1", messages=Q, reasoning_effort="low")
    assert len(mocks.requests("openai")) == 2
    assert resp.usage is not None and resp.usage.prompt_tokens == 24
    mocks.reset()
    mocks.push("openai", *[ScriptedReply(text="Final answer: 42") for _ in range(8)])
    cenv.claude().messages.create(
        model="heavy:gpt-4.1",
        max_tokens=4000,
        messages=Q,
        thinking={"type": "enabled", "budget_tokens": 20000},
    )
    assert len(mocks.requests("openai")) == 8


# -- heavy: synthesis ---------------------------------------------------------------------------------------


def test_heavy_tie_goes_to_synthesis_streamed_on_openai_sdk(cenv: CompoundEnv, mocks: MockUpstreams) -> None:
    mocks.push(
        "openai",
        ScriptedReply(text="Final answer: 41"),
        ScriptedReply(text="Final answer: 42"),
        ScriptedReply(text=f"Candidate 1 multiplied wrongly.\n{MARKER}\n6 * 7 = 42.", chunks=7),
    )
    stream = cenv.oai().chat.completions.create(
        model="heavy:gpt-4.1",
        messages=Q,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"omnirelay": {"agents": 2}},
    )
    order: list[str] = []
    reasoning, content, finish, usage = "", "", None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for c in chunk.choices:
            extra = c.delta.model_extra or {}
            if extra.get("reasoning_content"):
                reasoning += extra["reasoning_content"]
                order.append("reasoning")
            if c.delta.content:
                content += c.delta.content
                order.append("content")
            if c.finish_reason:
                finish = c.finish_reason
                order.append("finish")
    assert content == "6 * 7 = 42."
    assert "Candidate 1 multiplied wrongly." in reasoning and "synthesising" in reasoning
    assert order.index("content") > max(i for i, k in enumerate(order) if k == "reasoning")
    assert order[-1] == "finish" and finish == "stop"
    reqs = mocks.requests("openai")
    assert len(reqs) == 3
    note = reqs[2].body["messages"][-1]["content"]
    assert "Candidate 1" in str(note) and "Final answer: 41" in str(note) and MARKER in str(note)
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (36, 21)
    assert usage.model_extra is not None and usage.model_extra["cost"] == pytest.approx(gpt_cost(3), abs=1e-15)


def test_heavy_free_text_answers_are_synthesised_on_anthropic(cenv: CompoundEnv, mocks: MockUpstreams) -> None:
    mocks.push(
        "openai",
        ScriptedReply(text="A haiku about rain, version one."),
        ScriptedReply(text="A haiku about rain, version two."),
        ScriptedReply(text=f"Both fine.{MARKER}Rain on the tin roof"),
    )
    msg = cenv.claude().messages.create(
        model="heavy:gpt-4.1",
        max_tokens=300,
        messages=[{"role": "user", "content": "Write a haiku about rain"}],
        extra_body={"omnirelay": {"agents": 2}},
    )
    assert [b.type for b in msg.content] == ["thinking", "text"]
    assert msg.content[1].text == "Rain on the tin roof"  # type: ignore[union-attr]
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (36, 21)


def test_heavy_streams_progress_first_on_anthropic_sdk(cenv: CompoundEnv, mocks: MockUpstreams) -> None:
    mocks.push("openai", *[ScriptedReply(text="Final answer: 42", delay_s=0.3) for _ in range(2)])
    t0 = time.monotonic()
    first_delta_at = None
    with cenv.claude().messages.stream(
        model="heavy:gpt-4.1", max_tokens=300, messages=Q, extra_body={"omnirelay": {"agents": 2}}
    ) as stream:
        thinking = ""
        for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "thinking_delta":
                first_delta_at = first_delta_at or time.monotonic() - t0
                thinking += event.delta.thinking
        final = stream.get_final_message()
    assert first_delta_at is not None and first_delta_at < 0.3  # before any agent finished
    assert "agent 1/2 done: answer 42" in thinking and "agent 2/2 done: answer 42" in thinking
    assert final.content[-1].type == "text" and final.content[-1].text == "Final answer: 42"
    assert final.stop_reason == "end_turn"


# -- heavy: caps ---------------------------------------------------------------------------------------------


def test_heavy_cost_cap_returns_best_so_far_truncated(cenv: CompoundEnv, mocks: MockUpstreams) -> None:
    mocks.push(
        "openai",
        ScriptedReply(text="Final answer: 42"),
        ScriptedReply(text="Final answer: 40", delay_s=3),
        ScriptedReply(text="Final answer: 40", delay_s=3),
    )
    t0 = time.monotonic()
    raw = cenv.oai().chat.completions.with_raw_response.create(
        model="heavy:gpt-4.1", messages=Q, extra_body={"omnirelay": {"agents": 3, "max_cost": 0.00001}}
    )
    resp = raw.parse()
    assert time.monotonic() - t0 < 2.5  # the slow agents were not waited for
    choice = resp.choices[0]
    assert choice.finish_reason == "length" and choice.message.content == "Final answer: 42"
    reasoning = choice.message.model_extra["reasoning_content"] if choice.message.model_extra else ""
    assert "cost cap" in reasoning and "truncated" in reasoning
    # One agent finished (12 in, 7 out); the two cut short are billed their prompts (estimated), no output.
    assert resp.usage is not None and resp.usage.completion_tokens == 7
    abandoned_in = resp.usage.prompt_tokens - 12
    assert abandoned_in > 0
    assert float(raw.headers["x-omnirelay-cost"]) == pytest.approx(gpt_cost(1) + abandoned_in * GPT_IN, abs=1e-15)


def test_heavy_time_cap_on_anthropic_stream(cenv: CompoundEnv, mocks: MockUpstreams) -> None:
    mocks.push(
        "openai",
        ScriptedReply(text="Final answer: 7", delay_s=0.1),
        ScriptedReply(text="Final answer: 8", delay_s=4),
    )
    with cenv.claude().messages.stream(
        model="heavy:gpt-4.1", max_tokens=300, messages=Q, extra_body={"omnirelay": {"agents": 2, "max_time": 1}}
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "max_tokens"
    assert final.content[-1].type == "text" and final.content[-1].text == "Final answer: 7"
    assert "time cap" in final.content[0].thinking  # type: ignore[union-attr]
    # The finished agent's exact usage plus the cut-short agent's prompt (estimated; its output is unknown).
    assert final.usage.output_tokens == 7 and final.usage.input_tokens > 12


def test_heavy_token_cap_limits_agent_output(cenv: CompoundEnv, mocks: MockUpstreams) -> None:
    mocks.push("openai", *[ScriptedReply(text="Final answer: 42", usage=ScriptedUsage(input=500)) for _ in range(4)])
    resp = cenv.oai().chat.completions.create(
        model="heavy:gpt-4.1", messages=Q, extra_body={"omnirelay": {"agents": 4, "max_tokens": 1000}}
    )
    reqs = mocks.requests("openai")
    assert all(r.body.get("max_completion_tokens", r.body.get("max_tokens")) == 200 for r in reqs)
    assert resp.choices[0].finish_reason == "length"  # 2 x 507 tokens passed the cap
    assert resp.usage is not None
    completed = resp.usage.completion_tokens // 7  # each finished agent reports 7 output tokens
    abandoned_in = resp.usage.prompt_tokens - 500 * completed  # agents cut short: their estimated prompts
    assert completed in (2, 3, 4)
    assert (abandoned_in > 0) == (completed < 4) and abandoned_in >= 0
