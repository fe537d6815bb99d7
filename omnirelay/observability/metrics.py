"""The gateway's Prometheus metrics, summed over every worker process.

A request's numbers are first added up here, in plain Python (a dict of label sets to counters and histogram
bucket counts: a few microseconds), and every ``metrics.flush_interval_s`` (and before this worker answers a
scrape) the deltas go into prometheus_client's metrics. Under ``omnirelay serve`` those live in
prometheus_client's multiprocess files (``PROMETHEUS_MULTIPROC_DIR``, made per run by ``serve.py``), so whichever
worker answers ``GET /metrics`` reports every worker's counts; one file write per changed series and bucket per
flush, instead of about twenty per request. A scrape therefore sees every request finished at least one flush
interval ago.

Labels are bounded: models are the requested and answering names of requests that reached a channel (a name
nobody serves is ``other``), channels are configured ones, statuses and error types are small sets; no request
ids, no keys (key ids only with ``metrics.key_label``); past ``metrics.max_series`` label sets per worker new
ones are counted under model ``other``.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Callable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.multiprocess import MultiProcessCollector

from omnirelay.config import MetricsConfig
from omnirelay.core.records import UsageRecord

# Bucket boundaries as the OpenTelemetry GenAI semantic conventions advise for each instrument.
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
# The gateway's own time per request is sub-millisecond to a few milliseconds.
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)

BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}
OTHER = "other"

GENAI = ("gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model", "gen_ai_response_model")


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Buckets:
    """One histogram's observations since the last flush: per-bucket counts (not cumulative) and their sum."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        # Prometheus buckets are "less than or equal": the first bound >= value.
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def drain_into(self, child: Histogram) -> None:
        """Add these observations to ``child`` (a labelled histogram), then forget them. prometheus_client has
        no public call for "n observations in bucket i", so its per-bucket values are incremented directly; the
        unit test of this module checks the exposition that results."""
        values = child._buckets
        for i, n in enumerate(self.counts):
            if n:
                values[i].inc(n)
                self.counts[i] = 0
        child._sum.inc(self.total)
        self.total = 0.0


class Series:
    """What one label set counted since the last flush."""

    __slots__ = (
        "cost",
        "duration",
        "input_tokens",
        "output_tokens",
        "overhead",
        "requests",
        "tpot",
        "ttft",
        "upstream",
    )

    def __init__(self) -> None:
        self.requests = 0
        self.cost = 0.0
        self.input_tokens = Buckets(TOKEN_BUCKETS)
        self.output_tokens = Buckets(TOKEN_BUCKETS)
        self.duration = Buckets(DURATION_BUCKETS)
        self.ttft = Buckets(TTFT_BUCKETS)
        self.tpot = Buckets(TPOT_BUCKETS)
        self.overhead = Buckets(OVERHEAD_BUCKETS)
        self.upstream = Buckets(DURATION_BUCKETS)


# A series' labels: protocol, request model, response model, provider (semconv name), channel, status, error
# type ("" for none), stream ("true"/"false"), key id ("" unless metrics.key_label).
SeriesKey = tuple[str, str, str, str, str, str, str, str, str]


class Finished:
    """One finished request as the metrics need it (built by the observer from the usage record)."""

    __slots__ = (
        "channel",
        "cost",
        "duration_s",
        "error_code",
        "error_type",
        "input_tokens",
        "key_id",
        "output_tokens",
        "overhead_s",
        "protocol",
        "provider",
        "request_model",
        "response_model",
        "status",
        "stream",
        "ttft_s",
        "upstream_s",
    )

    def __init__(self, protocol: str, status: int, duration_s: float) -> None:
        self.protocol = protocol
        self.status = status
        self.duration_s = duration_s
        self.request_model = OTHER
        self.response_model = ""
        self.provider = ""
        self.channel = ""
        self.error_type = ""  # the gateway's error kind ("" when it succeeded)
        self.error_code = ""  # its code (a 429's says which limit)
        self.stream = False
        self.key_id = ""
        self.input_tokens = 0
        self.output_tokens = 0
        self.cost = 0.0
        self.ttft_s: float | None = None
        self.overhead_s: float | None = None
        self.upstream_s = 0.0


class GatewayMetrics:
    """The metrics of this worker: ``finished`` per request (cheap), ``flush`` into prometheus_client."""

    def __init__(self, config: MetricsConfig) -> None:
        self.config = config
        self.directory = multiprocess_dir()
        # Multiprocess mode: the values live in the shared files, exposed by a collector over all of them, so
        # the metrics join no registry. Otherwise a registry of this instance's own.
        self.own_registry = CollectorRegistry() if self.directory is None else None
        self.series: dict[SeriesKey, Series] = {}
        # Each protocol's GenAI operation name (gen_ai_operation_name: "embeddings" for openai_embeddings, ...),
        # as the endpoints registered themselves with the observer; "chat" for the rest.
        self.operations: dict[str, str] = {}
        self.in_flight = 0
        self.rate_limited: dict[tuple[str, str], int] = {}
        self.gauge_sources: list[Callable[[GatewayMetrics], None]] = []
        self._build()

    def _build(self) -> None:
        reg = self.own_registry
        key = ("key_id",) if self.config.key_label else ()
        self.token_usage = Histogram(
            "gen_ai_client_token_usage",
            "Input and output tokens per request (OpenTelemetry GenAI gen_ai.client.token.usage).",
            [*GENAI, "gen_ai_token_type"],
            buckets=TOKEN_BUCKETS,
            registry=reg,
        )
        self.request_duration = Histogram(
            "gen_ai_server_request_duration",
            "Seconds from a request's arrival to its last byte (gen_ai.server.request.duration).",
            [*GENAI, "error_type"],
            buckets=DURATION_BUCKETS,
            registry=reg,
        )
        self.time_to_first_token = Histogram(
            "gen_ai_server_time_to_first_token",
            "Seconds until a successful stream's first content event (gen_ai.server.time_to_first_token).",
            list(GENAI),
            buckets=TTFT_BUCKETS,
            registry=reg,
        )
        self.time_per_output_token = Histogram(
            "gen_ai_server_time_per_output_token",
            "Seconds per output token after the first, successful streams (gen_ai.server.time_per_output_token).",
            list(GENAI),
            buckets=TPOT_BUCKETS,
            registry=reg,
        )
        self.requests = Counter(
            "omnirelay_requests",
            "Relayed requests by inbound protocol, requested model, channel, status and streaming.",
            ["protocol", "model", "channel", "status", "stream", *key],
            registry=reg,
        )
        self.errors = Counter(
            "omnirelay_errors",
            "Relayed requests that failed, by error type (the gateway's error kind) and status.",
            ["protocol", "model", "channel", "status", "error_type"],
            registry=reg,
        )
        self.cost = Counter(
            "omnirelay_cost_usd",
            "USD charged for relayed requests (the usage records' cost).",
            ["model", "channel", *key],
            registry=reg,
        )
        self.overhead = Histogram(
            "omnirelay_overhead_seconds",
            "Gateway time per request not spent in upstream attempts (x-omnirelay-overhead-ms).",
            ["protocol", "stream"],
            buckets=OVERHEAD_BUCKETS,
            registry=reg,
        )
        self.upstream = Histogram(
            "omnirelay_upstream_duration_seconds",
            "Seconds a request spent inside upstream attempts (a stream: until its first content event).",
            ["channel", "stream"],
            buckets=DURATION_BUCKETS,
            registry=reg,
        )
        self.rate_limited_total = Counter(
            "omnirelay_rate_limit_rejections",
            "Requests refused with 429: by the key's limits (rate_limit_exceeded, insufficient_quota) or upstream.",
            ["protocol", "code"],
            registry=reg,
        )
        self.in_flight_gauge = Gauge(
            "omnirelay_requests_in_flight",
            "Relayed requests being served now.",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.breaker_state = Gauge(
            "omnirelay_breaker_state",
            "Each channel's circuit breaker: 0 closed, 1 half-open, 2 open (the worst any worker sees).",
            ["channel"],
            registry=reg,
            multiprocess_mode="livemax",
        )
        self.journal_backlog = Gauge(
            "omnirelay_usage_journal_backlog",
            "Usage records journalled but not yet written to the database.",
            registry=reg,
            multiprocess_mode="livesum",
        )

    # -- per request ---------------------------------------------------------------------------------------

    def finished(self, done: Finished) -> None:
        stream = "true" if done.stream else "false"
        key: SeriesKey = (
            done.protocol,
            done.request_model,
            done.response_model,
            done.provider,
            done.channel,
            str(done.status),
            done.error_type,
            stream,
            done.key_id,
        )
        series = self.series.get(key)
        if series is None:
            if len(self.series) >= self.config.max_series:
                key = (done.protocol, OTHER, OTHER, OTHER, OTHER, str(done.status), done.error_type, stream, "")
                series = self.series.get(key)
            if series is None:
                series = self.series[key] = Series()
        series.requests += 1
        series.cost += done.cost
        series.duration.observe(done.duration_s)
        if done.channel:
            series.upstream.observe(done.upstream_s)
            if done.input_tokens or done.output_tokens:  # a call that used none reports none (semconv)
                series.input_tokens.observe(done.input_tokens)
                series.output_tokens.observe(done.output_tokens)
        if done.overhead_s is not None:
            series.overhead.observe(done.overhead_s)
        if done.stream and done.ttft_s is not None and done.status == 200:
            series.ttft.observe(done.ttft_s)
            if done.output_tokens > 1:
                series.tpot.observe((done.duration_s - done.ttft_s) / (done.output_tokens - 1))
        if done.status == 429:
            counted = (done.protocol, done.error_code or done.error_type)
            self.rate_limited[counted] = self.rate_limited.get(counted, 0) + 1

    def served(
        self,
        protocol: str,
        record: UsageRecord,
        provider: str,
        overhead_ms: float | None,
        upstream_s: float,
        duration_s: float,
    ) -> None:
        """``finished`` for the usual case, a request a channel answered with 200: the same counts without the
        ``Finished`` summary (this runs once per request; see bench/CHANGES.md for what it costs)."""
        model = record.model_used or ""
        stream = record.stream
        key: SeriesKey = (
            protocol,
            record.model_requested,
            model,
            provider,
            f"{record.upstream}/{model}",
            "200",
            "",
            "true" if stream else "false",
            (record.key_id or "") if self.config.key_label else "",
        )
        series = self.series.get(key)
        if series is None:
            done = Finished(protocol, 200, duration_s)
            done.request_model, done.response_model, done.provider, done.channel = key[1], model, provider, key[4]
            done.stream, done.key_id = stream, key[8]
            done.input_tokens, done.output_tokens = record.usage.input_tokens, record.usage.output_tokens
            done.cost, done.upstream_s = record.cost, upstream_s
            done.ttft_s = record.ttft_ms / 1000.0 if record.ttft_ms is not None else None
            done.overhead_s = overhead_ms / 1000.0 if overhead_ms is not None else None
            self.finished(done)  # a new label set: the general path decides where it goes
            return
        series.requests += 1
        series.cost += record.cost
        h = series.duration
        h.counts[bisect_left(h.bounds, duration_s)] += 1
        h.total += duration_s
        h = series.upstream
        h.counts[bisect_left(h.bounds, upstream_s)] += 1
        h.total += upstream_s
        usage = record.usage
        inp, out = usage.input_tokens, usage.output_tokens
        if inp or out:
            h = series.input_tokens
            h.counts[bisect_left(h.bounds, inp)] += 1
            h.total += inp
            h = series.output_tokens
            h.counts[bisect_left(h.bounds, out)] += 1
            h.total += out
        if overhead_ms is not None:
            overhead = overhead_ms / 1000.0
            h = series.overhead
            h.counts[bisect_left(h.bounds, overhead)] += 1
            h.total += overhead
        if stream and record.ttft_ms is not None:
            ttft = record.ttft_ms / 1000.0
            series.ttft.observe(ttft)
            if out > 1:
                series.tpot.observe((duration_s - ttft) / (out - 1))

    # -- flushing ------------------------------------------------------------------------------------------

    def flush(self) -> None:
        """Add what was counted since the last flush to prometheus_client's metrics; set the gauges."""
        series, self.series = self.series, {}
        for key, s in series.items():
            self._flush_series(key, s)
        limited, self.rate_limited = self.rate_limited, {}
        for (protocol, code), n in limited.items():
            self.rate_limited_total.labels(protocol, code).inc(n)
        self.in_flight_gauge.set(self.in_flight)
        for source in self.gauge_sources:
            source(self)

    def _flush_series(self, key: SeriesKey, s: Series) -> None:
        protocol, request_model, response_model, provider, channel, status, error_type, stream, key_id = key
        genai = (self.operations.get(protocol, "chat"), provider, request_model, response_model)
        keyed = (key_id,) if self.config.key_label else ()
        self.requests.labels(protocol, request_model, channel, status, stream, *keyed).inc(s.requests)
        if error_type:
            self.errors.labels(protocol, request_model, channel, status, error_type).inc(s.requests)
        if s.cost:
            self.cost.labels(request_model, channel, *keyed).inc(s.cost)
        s.duration.drain_into(self.request_duration.labels(*genai, error_type))
        if channel:
            s.upstream.drain_into(self.upstream.labels(channel, stream))
        if any(s.input_tokens.counts):
            s.input_tokens.drain_into(self.token_usage.labels(*genai, "input"))
            s.output_tokens.drain_into(self.token_usage.labels(*genai, "output"))
        if any(s.overhead.counts):
            s.overhead.drain_into(self.overhead.labels(protocol, stream))
        if any(s.ttft.counts):
            s.ttft.drain_into(self.time_to_first_token.labels(*genai))
        if any(s.tpot.counts):
            s.tpot.drain_into(self.time_per_output_token.labels(*genai))

    def set_breakers(self, states: dict[str, str]) -> None:
        for channel, state in states.items():
            self.breaker_state.labels(channel).set(BREAKER_STATES.get(state, 0))

    # -- exposition ----------------------------------------------------------------------------------------

    def registry(self) -> CollectorRegistry:
        """What a scrape reads: every worker's files, or this instance's own metrics."""
        if self.own_registry is not None:
            return self.own_registry
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.directory)  # type: ignore[no-untyped-call]
        return registry

    def close(self) -> None:
        """This worker stops: its last counts go to the files, its live gauges leave them."""
        self.flush()
        if self.directory is not None:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid(), self.directory)  # type: ignore[no-untyped-call]
