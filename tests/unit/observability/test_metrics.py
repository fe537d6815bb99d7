"""GatewayMetrics: what a flush writes is exactly what prometheus_client would show had every observation been
made on it directly (bucket by bucket, sums, counts), label sets stay bounded, and the settings are checked."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from omnirelay.config import ConfigError, MetricsConfig, parse_config
from omnirelay.observability.metrics import DURATION_BUCKETS, OTHER, Finished, GatewayMetrics

DURATIONS = [0.0, 0.01, 0.011, 0.3, 0.32, 5.0, 81.92, 120.0]


def _samples(registry: CollectorRegistry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _done(duration: float, status: int = 200, model: str = "gpt-4.1", **fields: object) -> Finished:
    done = Finished("openai", status, duration)
    done.request_model = done.response_model = model
    done.provider, done.channel = "openai", f"up/{model}"
    for name, value in fields.items():
        setattr(done, name, value)
    return done


@pytest.fixture(autouse=True)
def _single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)


def test_a_flush_equals_observing_each_value_directly() -> None:
    metrics = GatewayMetrics(MetricsConfig())
    for d in DURATIONS:
        metrics.finished(_done(d, input_tokens=10, output_tokens=3, cost=0.25, upstream_s=d / 2))
    metrics.flush()
    reference = CollectorRegistry()
    direct = Histogram("gen_ai_server_request_duration", "x", ["a"], buckets=DURATION_BUCKETS, registry=reference)
    for d in DURATIONS:
        direct.labels("x").observe(d)
    got = _samples(metrics.registry())
    want = _samples(reference)
    labels = {
        "gen_ai_operation_name": "chat",
        "gen_ai_provider_name": "openai",
        "gen_ai_request_model": "gpt-4.1",
        "gen_ai_response_model": "gpt-4.1",
        "error_type": "",
    }
    for (name, ls), value in want.items():
        if name.endswith("_created"):
            continue
        mine = frozenset({**labels, **{k: v for k, v in ls if k == "le"}}.items())
        assert got[(name, mine)] == pytest.approx(value), name
    channel = {"model": "gpt-4.1", "channel": "up/gpt-4.1"}
    assert got[("omnirelay_cost_usd_total", frozenset(channel.items()))] == pytest.approx(2.0)
    requests = {**channel, "protocol": "openai", "status": "200", "stream": "false"}
    assert got[("omnirelay_requests_total", frozenset(requests.items()))] == len(DURATIONS)
    # A second flush adds only what came since.
    metrics.finished(_done(0.5))
    metrics.flush()
    again = _samples(metrics.registry())
    assert again[("omnirelay_requests_total", frozenset(requests.items()))] == len(DURATIONS) + 1


def test_streams_get_time_to_first_token_and_per_output_token() -> None:
    metrics = GatewayMetrics(MetricsConfig())
    metrics.finished(_done(2.0, stream=True, ttft_s=0.5, output_tokens=4, input_tokens=1))
    metrics.finished(_done(2.0, status=502, stream=True, ttft_s=0.5, output_tokens=4, error_type="upstream"))
    metrics.flush()
    got = _samples(metrics.registry())
    genai = frozenset(
        {
            "gen_ai_operation_name": "chat",
            "gen_ai_provider_name": "openai",
            "gen_ai_request_model": "gpt-4.1",
            "gen_ai_response_model": "gpt-4.1",
        }.items()
    )
    assert got[("gen_ai_server_time_to_first_token_count", genai)] == 1  # the failed stream is not counted
    assert got[("gen_ai_server_time_per_output_token_sum", genai)] == pytest.approx((2.0 - 0.5) / 3)
    errors = {"protocol": "openai", "model": "gpt-4.1", "channel": "up/gpt-4.1", "status": "502"}
    assert got[("omnirelay_errors_total", frozenset({**errors, "error_type": "upstream"}.items()))] == 1


def test_label_sets_are_capped() -> None:
    metrics = GatewayMetrics(MetricsConfig(max_series=3))
    for i in range(10):
        metrics.finished(_done(0.1, model=f"m{i}"))
    metrics.flush()
    got = _samples(metrics.registry())
    models = {dict(ls)["model"] for (name, ls), _ in got.items() if name == "omnirelay_requests_total"}
    assert models == {"m0", "m1", "m2", OTHER}
    other = [v for (n, ls), v in got.items() if n == "omnirelay_requests_total" and dict(ls)["model"] == OTHER]
    assert other == [7]


def test_rate_limit_rejections_by_code_and_the_gauges() -> None:
    metrics = GatewayMetrics(MetricsConfig())
    refused = Finished("anthropic", 429, 0.001)
    refused.error_type, refused.error_code = "rate_limit", "rate_limit_exceeded"
    metrics.finished(refused)
    metrics.in_flight = 3
    metrics.gauge_sources.append(lambda m: m.set_breakers({"a/x": "open", "b/y": "half_open", "c/z": "closed"}))
    metrics.flush()
    got = _samples(metrics.registry())
    code = {"protocol": "anthropic", "code": "rate_limit_exceeded"}
    assert got[("omnirelay_rate_limit_rejections_total", frozenset(code.items()))] == 1
    assert got[("omnirelay_requests_in_flight", frozenset())] == 3
    states = {dict(ls)["channel"]: v for (n, ls), v in got.items() if n == "omnirelay_breaker_state"}
    assert states == {"a/x": 2, "b/y": 1, "c/z": 0}


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"metrics": {"flush_interval_s": 0}}, "metrics.flush_interval_s"),
        ({"metrics": {"max_series": 0}}, "metrics.max_series"),
        ({"tracing": {"sample_ratio": 1.5}}, "tracing.sample_ratio"),
        ({"server": {"access_log": "text"}}, "server.access_log"),
    ],
)
def test_bad_settings_are_refused(section: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({"upstreams": [], **section})


def test_the_fast_path_counts_what_the_general_one_does() -> None:
    from omnirelay.core.records import UsageRecord
    from omnirelay.core.types import Usage

    fast, general = GatewayMetrics(MetricsConfig()), GatewayMetrics(MetricsConfig())
    for i, stream in enumerate([False, True, True, False, True]):
        record = UsageRecord(request_id="r", created_at=0.0, key_id="k", protocol="openai", model_requested="gpt")
        record.upstream, record.provider, record.model_used, record.stream = "up", "openai", "gpt-4.1", stream
        record.usage, record.cost, record.ttft_ms = Usage(input_tokens=10 + i, output_tokens=3 * i), 0.5 * i, 40.0
        fast.served("openai", record, "openai", 0.3, 0.02 * i, 0.1 * i + 0.05)
        done = Finished("openai", 200, 0.1 * i + 0.05)
        done.request_model, done.response_model, done.provider, done.channel = "gpt", "gpt-4.1", "openai", "up/gpt-4.1"
        done.stream, done.input_tokens, done.output_tokens, done.cost = stream, 10 + i, 3 * i, 0.5 * i
        done.ttft_s, done.overhead_s, done.upstream_s = 0.04, 0.0003, 0.02 * i
        general.finished(done)
    fast.flush()
    general.flush()
    got, want = _samples(fast.registry()), _samples(general.registry())
    assert {k: v for k, v in got.items() if not k[0].endswith("_created")} == pytest.approx(
        {k: v for k, v in want.items() if not k[0].endswith("_created")}
    )
    assert any(name == "gen_ai_server_time_per_output_token_count" for name, _ in got)


def test_key_ids_only_with_key_label() -> None:
    for key_label in (False, True):
        metrics = GatewayMetrics(MetricsConfig(key_label=key_label))
        metrics.finished(_done(0.1, key_id="key_abc" if key_label else "", cost=1.0))
        metrics.flush()
        labels = [dict(ls) for (n, ls), _ in _samples(metrics.registry()).items() if n == "omnirelay_cost_usd_total"]
        assert labels == [{"model": "gpt-4.1", "channel": "up/gpt-4.1", **({"key_id": "key_abc"} if key_label else {})}]
