"""core.assemble: a choice's canonical events gathered into the message and response they describe, the same
way for every caller (compound engines, the local model, the tool loop's turns)."""

from __future__ import annotations

import pytest

from omnirelay.core.assemble import MessageAssembler
from omnirelay.core.errors import GatewayError
from omnirelay.core.events import (
    ChoiceEnd,
    CitationDelta,
    ReasoningDelta,
    ServerToolUse,
    StreamEvent,
    StreamFailure,
    StreamStart,
    TextDelta,
    ToolCallArgs,
    ToolCallStart,
    UsageReport,
)
from omnirelay.core.types import Citation, ReasoningPart, ServerToolCall, TextPart, ToolCall, Usage


def _assembled(events: list[StreamEvent]) -> MessageAssembler:
    assembler = MessageAssembler()
    for event in events:
        assembler.add(event)
    return assembler


def test_text_deltas_join_into_one_text_part() -> None:
    a = _assembled([StreamStart(id="r1", model="m"), TextDelta(text="Hel"), TextDelta(text=""), TextDelta(text="lo")])
    msg = a.message()
    assert msg.role == "assistant" and msg.content == [TextPart(text="Hello")]
    assert a.text == ["Hel", "", "lo"]  # every delta kept in order: a tool loop tells "no text yet" from this
    assert msg.tool_calls == [] and msg.reasoning == []


def test_no_text_is_no_content_part() -> None:
    assert _assembled([TextDelta(text="")]).message().content == []


def test_reasoning_joins_until_a_signature_closes_the_part() -> None:
    a = _assembled(
        [
            ReasoningDelta(text="first "),
            ReasoningDelta(text="thought"),
            ReasoningDelta(signature="sig-1"),
            ReasoningDelta(text="second"),
            ReasoningDelta(redacted="opaque"),
            ReasoningDelta(text="third"),
            ReasoningDelta(signature="sig-3"),
        ]
    )
    assert a.message().reasoning == [
        ReasoningPart(text="first thought", signature="sig-1"),
        ReasoningPart(text="second"),
        ReasoningPart(redacted="opaque"),
        ReasoningPart(text="third", signature="sig-3"),
    ]


def test_a_signature_after_a_redacted_block_opens_its_own_part() -> None:
    a = _assembled([ReasoningDelta(redacted="opaque"), ReasoningDelta(signature="sig")])
    assert a.message().reasoning == [ReasoningPart(redacted="opaque"), ReasoningPart(signature="sig")]


def test_several_tool_calls_with_split_arguments_come_out_in_index_order() -> None:
    a = _assembled(
        [
            ToolCallStart(index=1, id="call_b", name="lookup"),
            ToolCallStart(index=0, id="call_a", name="weather"),
            ToolCallArgs(index=0, arguments='{"ci'),
            ToolCallArgs(index=1, arguments='{"q": '),
            ToolCallArgs(index=0, arguments='ty": "Pa'),
            ToolCallArgs(index=1, arguments='"x"}'),
            ToolCallArgs(index=0, arguments='ris"}'),
            ToolCallArgs(index=7, arguments="lost"),  # no such call: ignored, not a crash
            ChoiceEnd(finish_reason="tool_calls"),
        ]
    )
    expected = [
        ToolCall(id="call_a", name="weather", arguments='{"city": "Paris"}'),
        ToolCall(id="call_b", name="lookup", arguments='{"q": "x"}'),
    ]
    assert a.tool_calls() == expected
    assert a.message().tool_calls == expected
    assert a.finish_reason == "tool_calls"


def test_message_can_carry_only_some_of_the_calls() -> None:
    a = _assembled(
        [TextDelta(text="t"), ToolCallStart(index=0, id="c0", name="x"), ToolCallStart(index=1, id="c1", name="y")]
    )
    kept = [a.tool_calls()[1]]
    assert a.message(kept).tool_calls == kept
    assert a.message([]).tool_calls == []


def test_usage_is_the_last_report_a_running_total_not_a_sum() -> None:
    a = _assembled(
        [
            UsageReport(usage=Usage(input_tokens=10, output_tokens=1)),
            UsageReport(usage=Usage(input_tokens=10, output_tokens=5, reasoning_tokens=2), cost=0.25),
        ]
    )
    r = a.response(id="r", model="m", created=1)
    assert r.usage == Usage(input_tokens=10, output_tokens=5, reasoning_tokens=2)
    assert r.cost == 0.25


def test_finish_reason_defaults_to_stop_and_keeps_the_stop_sequence() -> None:
    assert _assembled([TextDelta(text="x")]).response(id="r", model="m", created=1).choices[0].finish_reason == "stop"
    r = _assembled([TextDelta(text="x"), ChoiceEnd(finish_reason="length", stop_sequence="END")]).response(
        id="r", model="m", created=1
    )
    assert r.choices[0].finish_reason == "length" and r.choices[0].stop_sequence == "END"


def test_response_carries_everything_the_stream_said() -> None:
    cite = Citation(url="https://example.org", title="Ex", start_index=0, end_index=5)
    tool = ServerToolCall(id="srv_1", name="web_search", input={"query": "q"})
    a = _assembled(
        [
            StreamStart(id="resp_1", model="upstream-model", created=123),
            ReasoningDelta(text="why"),
            TextDelta(text="Hello"),
            CitationDelta(citation=cite),
            ServerToolUse(call=tool),
            UsageReport(usage=Usage(input_tokens=3, output_tokens=2)),
            ChoiceEnd(finish_reason="stop"),
        ]
    )
    assert a.start == StreamStart(id="resp_1", model="upstream-model", created=123)
    r = a.response(id="resp_1", model="public-model", created=123)
    assert (r.id, r.model, r.created) == ("resp_1", "public-model", 123)
    assert len(r.choices) == 1 and r.choices[0].index == 0
    msg = r.choices[0].message
    assert msg.text() == "Hello" and msg.reasoning == [ReasoningPart(text="why")]
    assert msg.citations == [cite] and msg.server_tools == [tool]
    assert r.usage == Usage(input_tokens=3, output_tokens=2) and r.cost is None


def test_a_stream_failure_raises_its_error() -> None:
    error = GatewayError("upstream", "connection lost mid-stream")
    a = MessageAssembler()
    a.add(TextDelta(text="partial"))
    with pytest.raises(GatewayError) as info:
        a.add(StreamFailure(error=error))
    assert info.value is error
