"""OpenTelemetry traces over OTLP/HTTP, when ``tracing.enabled`` (off by default; nothing here is imported then).

Each relayed request is a SERVER span (``chat <model>``, continuing an incoming ``traceparent``); each upstream
attempt is a CLIENT span under the call that made it (channel, attempt number, outcome), and each call a compound
engine (think:/heavy:/deepsearch:, the tool loop) makes through the pipeline is an INTERNAL span under the request,
with its own attempts under it. Attributes follow the OpenTelemetry GenAI semantic conventions (gen_ai.*); the
request's messages are put on its span only with ``tracing.include_content``.

Attempt spans are written when the attempt is over, with the start and end times it had: the dispatcher needs
no tracer call while it works.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

import msgspec
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from omnirelay.config import TracingConfig
from omnirelay.core.errors import GatewayError
from omnirelay.core.records import UsageRecord
from omnirelay.core.types import ChatRequest
from omnirelay.observability.names import ProviderNames
from omnirelay.routing.table import Channel

TRACES_PATH = "/v1/traces"


def exporter_endpoint(config: TracingConfig) -> str | None:
    """The OTLP/HTTP traces URL of ``tracing.endpoint`` (None: the exporter reads OTEL_EXPORTER_OTLP_*)."""
    if not config.endpoint:
        return None
    base = config.endpoint.rstrip("/")
    return base if base.endswith(TRACES_PATH) else base + TRACES_PATH


class Tracing:
    """The tracer provider of this worker and the spans of its requests."""

    def __init__(
        self, config: TracingConfig, provider_names: ProviderNames, exporter: SpanExporter | None = None
    ) -> None:
        """``exporter``: where spans go (default: OTLP/HTTP to ``tracing.endpoint``)."""
        self.config = config
        self.provider_names = provider_names
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": config.service_name}),
            sampler=ParentBased(TraceIdRatioBased(config.sample_ratio)),
        )
        if exporter is None:
            exporter = OTLPSpanExporter(endpoint=exporter_endpoint(config))
        self.provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=config.export_delay_ms))
        self.tracer = self.provider.get_tracer("omnirelay")
        self.propagator = TraceContextTextMapPropagator()

    def request_span(
        self, protocol: str, operation: str, method: str, path: str, headers: Mapping[str, str]
    ) -> TracedCall:
        """The SERVER span of one request (GenAI ``operation``: chat, embeddings, ...), a child of the caller's
        ``traceparent`` if it sent one."""
        parent = self.propagator.extract(carrier=dict(headers)) if "traceparent" in headers else None
        span = self.tracer.start_span(
            operation,
            context=parent,
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": method,
                "url.path": path,
                "gen_ai.operation.name": operation,
                "omnirelay.protocol": protocol,
            },
        )
        return TracedCall(self, span, operation)

    def shutdown(self) -> None:
        self.provider.shutdown()  # sends what is still batched


def _wall_ns(monotonic: float) -> int:
    """time.monotonic() ``monotonic`` on the wall clock, in nanoseconds (what span times are)."""
    return time.time_ns() - int((time.monotonic() - monotonic) * 1e9)


class TracedCall:
    """A traced call: a request's span, or a compound sub-call's (``pipeline.observe.CallSpan``)."""

    __slots__ = ("context", "operation", "span", "tracing")

    def __init__(self, tracing: Tracing, span: trace.Span, operation: str = "chat") -> None:
        self.tracing = tracing
        self.span = span
        self.operation = operation
        self.context: Context = trace.set_span_in_context(span)

    def attempt(
        self, channel: Channel, attempt: int, started: float, elapsed: float, error: GatewayError | None
    ) -> None:
        start_ns = _wall_ns(started)
        upstream = channel.upstream
        span = self.tracing.tracer.start_span(
            f"attempt {channel.name}",
            context=self.context,
            kind=SpanKind.CLIENT,
            start_time=start_ns,
            attributes={
                "omnirelay.channel": channel.name,
                "omnirelay.attempt": attempt,
                "gen_ai.operation.name": self.operation,
                "gen_ai.provider.name": self.tracing.provider_names.of(upstream.name, upstream.provider),
                "gen_ai.request.model": channel.model,
                "omnirelay.status": error.status if error is not None else 200,
            },
        )
        if error is not None:
            span.set_attribute("error.type", error.kind)
            span.set_status(Status(StatusCode.ERROR, error.message))
        span.end(end_time=start_ns + int(elapsed * 1e9))

    def child(self, req: ChatRequest) -> TracedCall:
        span = self.tracing.tracer.start_span(
            f"chat {req.model}",
            context=self.context,
            kind=SpanKind.INTERNAL,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": req.model,
                "omnirelay.compound.sub_call": True,
            },
        )
        return TracedCall(self.tracing, span)

    def end(self, record: UsageRecord, error: BaseException | None) -> None:
        span = self.span
        _describe(span, record, self.tracing.provider_names)
        if isinstance(error, GatewayError):
            span.set_attribute("error.type", error.kind)
            span.set_status(Status(StatusCode.ERROR, error.message))
        elif isinstance(error, asyncio.CancelledError | GeneratorExit):  # the engine no longer needed it
            span.set_attribute("error.type", "cancelled")
        elif error is not None:
            span.set_attribute("error.type", type(error).__name__)
            span.set_status(Status(StatusCode.ERROR))
        span.end()

    def end_request(self, record: UsageRecord | None, status: int, error: BaseException | None) -> None:
        """The request span's end: the HTTP status the client got, and what the record says."""
        span = self.span
        span.set_attribute("http.response.status_code", status)
        if record is not None:
            span.update_name(f"{self.operation} {record.model_requested}")
            span.set_attribute("omnirelay.request_id", record.request_id)
            _describe(span, record, self.tracing.provider_names)
        if isinstance(error, GatewayError):
            span.set_attribute("error.type", error.kind)
        elif error is not None:
            span.set_attribute("error.type", type(error).__name__)
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR))
        span.end()

    def add_content(self, req: ChatRequest) -> None:
        """The request's messages (``tracing.include_content``), as gen_ai.input.messages."""
        self.span.set_attribute("gen_ai.input.messages", msgspec.json.encode(req.messages).decode())


def _describe(span: trace.Span, record: UsageRecord, provider_names: ProviderNames) -> None:
    span.set_attribute("gen_ai.request.model", record.model_requested)
    if record.upstream is not None:
        span.set_attribute("gen_ai.provider.name", provider_names.of(record.upstream, record.provider))
        span.set_attribute("omnirelay.channel", f"{record.upstream}/{record.model_used}")
    if record.model_used is not None:
        span.set_attribute("gen_ai.response.model", record.model_used)
    span.set_attribute("gen_ai.usage.input_tokens", record.usage.input_tokens)
    span.set_attribute("gen_ai.usage.output_tokens", record.usage.output_tokens)
    span.set_attribute("omnirelay.cost_usd", record.cost)
    span.set_attribute("omnirelay.attempts", record.attempts)
    span.set_attribute("omnirelay.stream", record.stream)
