"""What watches the relayed requests: metrics, traces and the JSON access log, composed once at start.

``Observability.wrap`` is the endpoint handler of each inbound protocol, the relay's call observed; with
metrics, tracing and the access log all off the app mounts the relay's plain handler instead (``active``), and
with tracing off no tracer is ever called. Per request the observer counts it in flight, opens its span (making
it the current one, under which the pipeline's attempt and sub-call spans hang), and once it is over hands the
usage record the relay filled in to each of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import msgspec

from omnirelay.admin.auth import check_admin
from omnirelay.config import Config
from omnirelay.core.errors import GatewayError
from omnirelay.observability.metrics import Finished, GatewayMetrics
from omnirelay.observability.names import ProviderNames
from omnirelay.pipeline.observe import Observation, current_span
from omnirelay.web.exchange import ClientGone, Exchange
from omnirelay.web.routes import Endpoint, ErrorRenderer, Handler, Mount

if TYPE_CHECKING:  # the SDK is imported only when tracing is on
    from omnirelay.observability.tracing import TracedCall, Tracing

log = logging.getLogger("omnirelay.observability")
access_log = logging.getLogger("omnirelay.access")

# The relay's handler of one protocol: (exchange, request body, observation).
ObservedHandler = Callable[[Exchange, bytes, Observation], Awaitable[None]]

MAX_LOGGED_NAME = 200  # a requested model name is the client's text: logged, but not at any length
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


class Observability:
    """The metrics, the tracer and the access log of one worker, and their lifecycle."""

    def __init__(
        self,
        config: Config,
        breakers: Callable[[], dict[str, str]],
        backlog: Callable[[], int],
    ) -> None:
        self.config = config
        self.provider_names = ProviderNames(config)
        self.metrics: GatewayMetrics | None = None
        if config.metrics.enabled:
            self.metrics = GatewayMetrics(config.metrics)

            def gauges(m: GatewayMetrics) -> None:
                m.set_breakers(breakers())
                m.journal_backlog.set(backlog())

            self.metrics.gauge_sources.append(gauges)
        self.tracing: Tracing | None = None
        if config.tracing.enabled:
            from omnirelay.observability.tracing import Tracing

            self.tracing = Tracing(config.tracing, self.provider_names)
        self.access_log = config.server.access_log == "json"
        if self.access_log:
            _setup_access_log()
        self._flusher: asyncio.Task[None] | None = None

    @property
    def active(self) -> bool:
        return self.metrics is not None or self.tracing is not None or self.access_log

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self.metrics is not None:
            self._flusher = asyncio.create_task(self._flush_loop(self.metrics))

    async def stop(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        if self.metrics is not None:
            self.metrics.close()
        if self.tracing is not None:
            await asyncio.to_thread(self.tracing.shutdown)

    async def _flush_loop(self, metrics: GatewayMetrics) -> None:
        interval = self.config.metrics.flush_interval_s
        while True:
            await asyncio.sleep(interval)
            try:
                metrics.flush()
            except Exception:  # a full disk must not stop the counting; the next flush tries again
                log.exception("metrics flush failed")

    # -- GET /metrics --------------------------------------------------------------------------------------

    def mount(self, render_error: ErrorRenderer) -> Mount | None:
        if self.metrics is None:
            return None
        return Mount("", [Endpoint("GET", "/metrics", self.scrape)], render_error)

    async def scrape(self, request: Exchange) -> None:
        from prometheus_client import generate_latest

        if self.config.metrics.require_admin_key:
            check_admin(self.config, request.headers)
        metrics = self.metrics
        assert metrics is not None
        metrics.flush()  # this worker's counts are current; the others' are at most one interval old
        await request.respond(200, generate_latest(metrics.registry()), content_type=PROMETHEUS_TEXT)

    # -- per request ---------------------------------------------------------------------------------------

    def handler(self, protocol: str, max_body: int, handler: ObservedHandler, operation: str = "chat") -> Handler:
        """An endpoint's handler: the body read (up to ``max_body``) and handed to ``handler``, observed as
        ``protocol`` requests of the GenAI ``operation`` when anything observes, with nothing in between when
        nothing does."""
        if not self.active:

            async def plain(request: Exchange) -> None:
                await handler(request, await request.body(max_body), Observation())

            return plain
        return self.wrap(protocol, max_body, handler, operation)

    def wrap(self, protocol: str, max_body: int, handler: ObservedHandler, operation: str = "chat") -> Handler:
        """The endpoint handler: read the body (up to ``max_body``), ``handler`` it, observed (only used while
        something observes: ``active``). It reads the body itself so that the request's coroutine chain is no
        longer than without observers: every await of a request passes through each frame of it."""
        metrics = self.metrics
        if metrics is not None:
            metrics.operations[protocol] = operation
        tracing = self.tracing
        names = self.provider_names
        only_metrics = tracing is None and not self.access_log

        async def observed(request: Exchange) -> None:
            t0 = time.perf_counter()
            observation = Observation()
            if metrics is not None:
                metrics.in_flight += 1
            traced: TracedCall | None = None
            token = None
            if tracing is not None:
                traced = tracing.request_span(protocol, operation, request.method, request.path, request.headers)
                token = current_span.set(traced)
            error: BaseException | None = None
            try:
                await handler(request, await request.body(max_body), observation)
            except BaseException as exc:
                error = exc
                raise
            finally:
                if token is not None:
                    current_span.reset(token)
                duration = time.perf_counter() - t0
                try:
                    if metrics is not None:
                        metrics.in_flight -= 1
                    record = observation.record
                    if (
                        only_metrics
                        and error is None
                        and record is not None
                        and record.status == 200
                        and record.upstream is not None
                    ):  # the usual request, counted without building its summary
                        ctx = observation.ctx
                        assert metrics is not None and ctx is not None
                        provider = names.of(record.upstream, record.provider)
                        metrics.served(protocol, record, provider, ctx.overhead_ms, ctx.upstream_s, duration)
                    else:
                        self._finished(protocol, request, observation, error, duration, traced)
                except Exception:  # observing must never fail the request
                    log.exception("observing a request failed")
                # The exception's traceback holds this frame, which holds the exception: a cycle that would keep
                # the request (and granian's connection, closed when released) alive until the next GC pass.
                error = None

        return observed

    def _finished(
        self,
        protocol: str,
        request: Exchange,
        observation: Observation,
        error: BaseException | None,
        duration: float,
        traced: TracedCall | None,
    ) -> None:
        status = _status(observation, error)
        done = self._summary(protocol, observation, status, error, duration)
        if self.metrics is not None:
            self.metrics.finished(done)
        if traced is not None:
            ctx = observation.ctx
            if self.config.tracing.include_content and ctx is not None:
                traced.add_content(ctx.req)
            traced.end_request(observation.record, status, error)
        if self.access_log:
            _log_access(request, observation, done)

    def _summary(
        self, protocol: str, observation: Observation, status: int, error: BaseException | None, duration: float
    ) -> Finished:
        done = Finished(protocol, status, duration)
        if isinstance(error, GatewayError):
            done.error_type = error.kind
            done.error_code = error.code or error.kind
        elif error is not None and not isinstance(error, ClientGone):
            done.error_type = "internal"
        elif status >= 400:
            done.error_type = "client_gone" if status == 499 else "stream_failed"
        record = observation.record
        if record is None:
            return done
        done.stream = record.stream
        if record.upstream is not None:  # only names that reached a channel: the label set stays bounded
            done.request_model = record.model_requested
            done.response_model = record.model_used or ""
            done.provider = self.provider_names.of(record.upstream, record.provider)
            done.channel = f"{record.upstream}/{record.model_used}"
        if self.config.metrics.key_label and record.key_id:
            done.key_id = record.key_id
        done.input_tokens = record.usage.input_tokens
        done.output_tokens = record.usage.output_tokens
        done.cost = record.cost
        if record.ttft_ms is not None:
            done.ttft_s = record.ttft_ms / 1000.0
        ctx = observation.ctx
        if ctx is not None:
            done.upstream_s = ctx.upstream_s
            if ctx.overhead_ms is not None:
                done.overhead_s = ctx.overhead_ms / 1000.0
        return done


def _status(observation: Observation, error: BaseException | None) -> int:
    """The status the request ended with: the error's, or the record's (a stream that failed after its 200)."""
    if isinstance(error, GatewayError):
        return error.status
    if isinstance(error, ClientGone):
        return 499
    if error is not None:
        return 500 if not isinstance(error, asyncio.CancelledError) else 499
    record = observation.record
    return record.status if record is not None else 200


def _setup_access_log() -> None:
    """The access log's lines are JSON alone, on stderr, whatever the root logger's format."""
    if access_log.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access_log.addHandler(handler)
    access_log.setLevel(logging.INFO)
    access_log.propagate = False


def _log_access(request: Exchange, observation: Observation, done: Finished) -> None:
    """One JSON line: what was asked, by which key id, how it ended, what it used. Never a secret or a prompt."""
    record = observation.record
    line: dict[str, object] = {
        "time": round(time.time(), 3),
        "method": request.method,
        "path": request.path,
        "protocol": done.protocol,
        "status": done.status,
        "request_id": record.request_id if record is not None else None,
        "key_id": record.key_id if record is not None else None,
        "model": record.model_requested[:MAX_LOGGED_NAME] if record is not None else None,
        "model_used": record.model_used if record is not None else None,
        "channel": done.channel or None,
        "stream": done.stream,
        "attempts": record.attempts if record is not None and record.upstream is not None else 0,
        "latency_ms": round(done.duration_s * 1000.0, 3),
        "overhead_ms": round(done.overhead_s * 1000.0, 3) if done.overhead_s is not None else None,
        "upstream_ms": round(done.upstream_s * 1000.0, 3),
        "ttft_ms": round(done.ttft_s * 1000.0, 3) if done.ttft_s is not None else None,
        "input_tokens": done.input_tokens,
        "output_tokens": done.output_tokens,
        "cost": done.cost,
        "error_type": done.error_type or None,
    }
    access_log.info(msgspec.json.encode(line).decode())
