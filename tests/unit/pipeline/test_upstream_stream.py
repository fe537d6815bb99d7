"""``UpstreamStream``: the stream a channel opened owns the rest of the call. It counts what was produced,
bounds the usage the upstream reports before anyone sees it, stops at a failure, and ends the channel's lease
(succeed / fail / abandon) and the record's usage and cost when it is closed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from omnirelay.config import Config, parse_config
from omnirelay.core.embeddings import EmbeddingResponse
from omnirelay.core.errors import GatewayError
from omnirelay.core.events import (
    ChoiceEnd,
    RawFrames,
    StreamEvent,
    StreamFailure,
    StreamStart,
    TextDelta,
    TextRun,
    UsageReport,
)
from omnirelay.core.records import UsageRecord
from omnirelay.core.types import ChatRequest, ChatResponse, Message, TextPart, Usage
from omnirelay.core.usage_bounds import MAX_TOKENS_PER_REQUEST
from omnirelay.pipeline.calls import CallPipeline, UpstreamStream
from omnirelay.pipeline.context import CallContext
from omnirelay.pipeline.gate import Admission, Gate, Plan
from omnirelay.routing.dispatch import Lease
from omnirelay.routing.limits import SlotWaiters
from omnirelay.routing.table import Route, RouteTable


class OpenGate(Gate):
    def authenticate(self, token: str | None) -> Admission:
        return Admission()

    async def admit(
        self, admission: Admission, req: ChatRequest, protocol: str, plan: Plan, reserve: float | None = None
    ) -> list[Route]:
        return [route for _name, route in plan]

    async def settle(self, admission: Admission, record: UsageRecord) -> None:
        return None


class NoExecutor:
    async def complete(self, *args: object) -> ChatResponse:
        raise AssertionError("not called")

    def stream(self, *args: object) -> AsyncIterator[StreamEvent]:
        raise AssertionError("not called")

    async def embed(self, *args: object) -> EmbeddingResponse:
        raise AssertionError("not called")


class RecordingLease(Lease):
    outcome: str | None = None

    def succeed(self) -> None:
        self.outcome = self.outcome or "succeed"

    def fail(self, err: GatewayError) -> None:
        self.outcome = self.outcome or "fail"

    def abandon(self) -> None:
        self.outcome = self.outcome or "abandon"


class Batches:
    """An upstream stream whose events arrive in batches (one per read), with ``take_ready`` like the
    executor's: the rest of the current batch without awaiting."""

    def __init__(self, batches: list[list[StreamEvent]], error: GatewayError | None = None) -> None:
        self.batches = batches
        self.error = error  # raised once the batches are used up
        self.ready: list[StreamEvent] = []
        self.closed = False

    def __aiter__(self) -> Batches:
        return self

    async def __anext__(self) -> StreamEvent:
        while not self.ready:
            if not self.batches:
                if self.error is not None:
                    raise self.error
                raise StopAsyncIteration
            self.ready = self.batches.pop(0)
        return self.ready.pop(0)

    def take_ready(self) -> list[StreamEvent]:
        ready, self.ready = self.ready, []
        return ready

    async def aclose(self) -> None:
        self.closed = True


def _open(
    head: list[StreamEvent], events: Batches, config: Config | None = None
) -> tuple[UpstreamStream, CallContext, RecordingLease]:
    config = config or parse_config({"upstreams": [{"name": "u", "provider": "openai", "models": ["m"]}]})
    routes = RouteTable(config)
    pipeline = CallPipeline(routes, {}, NoExecutor(), OpenGate(config))
    req = ChatRequest(model="m", messages=[Message(role="user", content=[TextPart(text="hello there")])])
    named = pipeline.plan(req)
    plan = [route for _name, route in named]
    record = UsageRecord(request_id="r", created_at=0.0, key_id=None, protocol="openai", model_requested="m")
    ctx = CallContext("openai", req, plan, Admission(), record, 0.0)
    (channel,) = plan[0].channels
    ctx.note_attempt(channel, 1)
    lease = RecordingLease(channel, False, SlotWaiters())
    return UpstreamStream(pipeline, ctx, events, head, lease), ctx, lease


async def test_events_of_one_read_are_taken_together_and_the_upstream_usage_is_bounded() -> None:
    huge = Usage(input_tokens=10**15, output_tokens=3)
    events = Batches([[TextDelta(text="cde"), UsageReport(usage=huge)], [ChoiceEnd(finish_reason="stop")]])
    stream, ctx, lease = _open([StreamStart(id="s", model="m"), TextDelta(text="ab")], events)
    assert [type(e) for e in stream.take_ready()] == [StreamStart, TextDelta]  # the head, read while opening
    assert stream.take_ready() == []
    first = await stream.__anext__()
    assert first == TextDelta(text="cde")
    (report,) = stream.take_ready()
    assert isinstance(report, UsageReport) and report.usage.input_tokens == MAX_TOKENS_PER_REQUEST
    assert stream.take_ready() == []
    assert await stream.__anext__() == ChoiceEnd(finish_reason="stop")
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()
    assert stream.completed and stream.produced == 5
    await stream.aclose()
    assert lease.outcome == "succeed" and events.closed
    assert ctx.record.usage.input_tokens == MAX_TOKENS_PER_REQUEST and ctx.record.status == 200


async def test_a_failure_event_is_the_last_one_and_fails_the_lease() -> None:
    err = GatewayError("upstream", "upstream u broke mid-stream")
    events = Batches([[TextDelta(text="abcd"), StreamFailure(error=err), TextDelta(text="never")]])
    stream, ctx, lease = _open([TextDelta(text="x")], events)
    assert stream.take_ready() == [TextDelta(text="x")]
    assert await stream.__anext__() == TextDelta(text="abcd")
    ready = stream.take_ready()
    assert len(ready) == 1 and isinstance(ready[0], StreamFailure)
    assert stream.take_ready() == []
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()
    assert not stream.completed and (ctx.record.status, ctx.record.error) == (502, err.message)
    await stream.aclose()
    assert lease.outcome == "fail"
    # No usage came: what was produced (5 characters) is charged as an estimate, with the prompt's input.
    assert stream.produced == 5 and ctx.record.usage.output_tokens > 0 and ctx.record.usage.input_tokens > 0


async def test_a_failure_raised_while_reading_is_recorded_and_raised() -> None:
    err = GatewayError("timeout", "upstream u went silent")
    stream, ctx, lease = _open([TextDelta(text="x")], Batches([], error=err))
    stream.take_ready()
    with pytest.raises(GatewayError):
        await stream.__anext__()
    await stream.aclose()
    assert lease.outcome == "fail" and ctx.record.status == err.status


async def test_a_stream_closed_before_its_end_abandons_the_lease_and_charges_an_estimate() -> None:
    config = parse_config(
        {
            "upstreams": [{"name": "u", "provider": "openai", "models": ["m"]}],
            "prices": {"m": {"input": 1.0, "output": 2.0}},
        }
    )
    events = Batches([[TextDelta(text="more text")]])
    stream, ctx, lease = _open([TextDelta(text="abc")], events, config)
    await stream.aclose()
    await stream.aclose()  # once only
    assert lease.outcome == "abandon" and events.closed
    assert ctx.record.usage.output_tokens > 0 and ctx.record.cost > 0


async def test_text_runs_and_raw_frames_count_what_they_carry() -> None:
    # The estimate's base: a run counts as its deltas would, however it is taken (head, ready, awaited).
    later = Batches(
        [[TextRun(texts=["ef", "g"]), RawFrames(data=b"data: {}\n\n", texts=["hij"])], [TextRun(texts=["k"])]]
    )
    stream, ctx, _lease = _open([StreamStart(id="s", model="m"), TextRun(texts=["ab", "cd"])], later)
    stream.take_ready()
    await stream.__anext__()
    stream.take_ready()
    await stream.__anext__()
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()
    assert stream.produced == len("abcdefghijk")
    await stream.aclose()
    assert ctx.record.usage.output_tokens > 0  # no usage came: charged as the estimate of what was produced
