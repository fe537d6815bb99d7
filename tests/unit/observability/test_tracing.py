"""Tracing: the request span continues an incoming traceparent, attempts and sub-calls hang under the call
that made them with the times they had, content only when asked for; with tracing off nothing of the SDK is
even imported."""

from __future__ import annotations

import subprocess
import sys
import time

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from omnirelay.config import TracingConfig, UpstreamConfig, parse_config
from omnirelay.core.errors import GatewayError
from omnirelay.core.records import UsageRecord
from omnirelay.core.types import ChatRequest, Message, TextPart
from omnirelay.observability.names import ProviderNames
from omnirelay.observability.tracing import Tracing, exporter_endpoint
from omnirelay.routing.table import Channel

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
CONFIG = parse_config({"upstreams": [{"name": "ds", "provider": "openai", "preset": "deepseek", "models": ["d*"]}]})


def _tracing(include_content: bool = False) -> tuple[Tracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    config = TracingConfig(enabled=True, include_content=include_content, export_delay_ms=1)
    return Tracing(config, ProviderNames(CONFIG), exporter), exporter


def _finished(tracing: Tracing, exporter: InMemorySpanExporter) -> tuple[ReadableSpan, ...]:
    tracing.provider.force_flush()
    return exporter.get_finished_spans()


def _req() -> ChatRequest:
    return ChatRequest(model="deepseek-chat", messages=[Message(role="user", content=[TextPart(text="secret")])])


def _record() -> UsageRecord:
    record = UsageRecord(request_id="req_1", created_at=0.0, key_id="k1", protocol="openai", model_requested="ds-x")
    record.upstream, record.provider, record.model_used = "ds", "openai", "deepseek-chat"
    return record


def _by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    return {s.name: s for s in spans}


def test_request_attempt_and_sub_call_spans() -> None:
    tracing, exporter = _tracing()
    headers = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}
    call = tracing.request_span("openai", "chat", "POST", "/v1/chat/completions", headers)
    channel = Channel(upstream=CONFIG.upstreams[0], model="deepseek-chat")
    started = time.monotonic() - 0.5
    call.attempt(channel, 1, started, 0.2, GatewayError("upstream", "upstream error 500: boom"))
    call.attempt(channel, 2, started + 0.3, 0.1, None)
    sub = call.child(_req())
    sub.attempt(channel, 1, time.monotonic(), 0.0, None)
    sub.end(_record(), None)
    call.end_request(_record(), 200, None)
    finished = _finished(tracing, exporter)
    spans = _by_name(finished)
    request = spans["chat ds-x"]
    assert request.kind is SpanKind.SERVER
    assert request.context is not None and request.parent is not None
    assert format(request.context.trace_id, "032x") == TRACE_ID and format(request.parent.span_id, "016x") == PARENT_ID
    assert request.attributes is not None and request.attributes["gen_ai.provider.name"] == "deepseek"
    attempts = sorted(
        (s for s in finished if s.kind is SpanKind.CLIENT and s.parent == request.context),
        key=lambda s: s.start_time or 0,
    )
    assert [s.attributes and s.attributes["omnirelay.attempt"] for s in attempts] == [1, 2]
    first, second = attempts
    assert first.status.status_code is StatusCode.ERROR and first.attributes is not None
    assert first.attributes["error.type"] == "upstream" and first.attributes["omnirelay.status"] == 502
    assert first.end_time is not None and first.start_time is not None
    assert abs((first.end_time - first.start_time) - 200_000_000) < 1_000  # exactly the attempt's duration
    assert second.start_time is not None and abs((second.start_time - first.start_time) - 300_000_000) < 1_000_000
    sub_span = spans["chat deepseek-chat"]
    assert sub_span.kind is SpanKind.INTERNAL and sub_span.parent == request.context
    (sub_attempt,) = [s for s in finished if s.parent == sub_span.context]
    assert sub_attempt.kind is SpanKind.CLIENT
    assert all("gen_ai.input.messages" not in (s.attributes or {}) for s in finished)


def test_content_only_when_enabled_and_errors_mark_the_span() -> None:
    tracing, exporter = _tracing(include_content=True)
    call = tracing.request_span("openai", "chat", "POST", "/v1/chat/completions", {})
    call.add_content(_req())
    call.end_request(None, 502, GatewayError("upstream", "no"))
    (span,) = _finished(tracing, exporter)
    assert span.parent is None and span.attributes is not None
    assert "secret" in str(span.attributes["gen_ai.input.messages"])
    assert span.attributes["error.type"] == "upstream" and span.status.status_code is StatusCode.ERROR


def test_endpoint_gets_the_traces_path_once() -> None:
    assert exporter_endpoint(TracingConfig(endpoint="http://c:4318/")) == "http://c:4318/v1/traces"
    assert exporter_endpoint(TracingConfig(endpoint="http://c:4318/v1/traces")) == "http://c:4318/v1/traces"
    assert exporter_endpoint(TracingConfig()) is None  # the exporter reads OTEL_EXPORTER_OTLP_ENDPOINT


def test_tracing_off_imports_no_tracer() -> None:
    program = (
        "import sys\n"
        "from omnirelay.config import parse_config\n"
        "from omnirelay.server.app import App\n"
        "app = App(parse_config({'upstreams': [{'name': 'u', 'provider': 'openai', 'models': ['m']}]}))\n"
        "assert app.observability.tracing is None and app.observability.metrics is not None\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_provider_names_follow_the_semantic_conventions() -> None:
    names = ProviderNames(
        parse_config(
            {
                "upstreams": [
                    {"name": "a", "provider": "anthropic", "models": ["c*"]},
                    {"name": "x", "provider": "openai", "preset": "xai", "models": ["g*"]},
                    {"name": "g", "provider": "gemini", "models": ["ge*"]},
                    {"name": "v", "provider": "openai", "preset": "vllm", "models": ["v*"]},
                ]
            }
        )
    )
    assert [names.of(n, None) for n in ("a", "x", "g", "v")] == ["anthropic", "x_ai", "gcp.gemini", "vllm"]
    assert names.of("compound:think", "compound") == "omnirelay.compound"
    assert isinstance(CONFIG.upstreams[0], UpstreamConfig)
