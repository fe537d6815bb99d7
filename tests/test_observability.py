"""Metrics, traces, the overhead header and the JSON access log, on a gateway of two worker processes over the
mocks: the numbers /metrics reports after known traffic (whichever worker served it), the spans an in-process
OTLP collector receives, the lines of the access log."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.gateway import Gateway
from tests.mocks.script import ScriptedReply, ScriptedUsage
from tests.mocks.server import MockUpstreams
from tests.otlp_collector import CollectedSpan, OtlpCollector
from tests.polling import wait_until
from tests.state_helpers import ADMIN_KEY, Admin, backend, start_gateway, state_config

SERVER, CLIENT, INTERNAL = 2, 3, 1  # OTLP span kinds
SECRET_WORD = "zebracorn-7341"  # in every prompt here: must never reach a span or a log line


class Env:
    def __init__(self, gw: Gateway, collector: OtlpCollector, metrics_dir: Path) -> None:
        self.gw = gw
        self.collector = collector
        self.metrics_dir = metrics_dir
        self.admin = Admin(gw.url)
        self.kid, self.secret = self.admin.create_key(credit=10.0)

    def oai(self, **headers: str) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=self.gw.url + "/v1",
            api_key=self.secret,
            max_retries=0,
            timeout=30,
            default_headers=headers or None,
        )  # each client its own connection pool: requests spread over the workers


@pytest.fixture(scope="module")
def env(mocks: MockUpstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    workdir = tmp_path_factory.mktemp("observability")
    collector = OtlpCollector().start()
    metrics_dir = workdir / "prometheus"
    metrics_dir.mkdir()
    with backend("sqlite", workdir) as b:
        cfg = state_config((mocks.url("openai"), mocks.url("anthropic"), mocks.url("gemini")))
        cfg["server"] = {**cfg["server"], "workers": 2, "access_log": "json"}
        cfg["upstreams"][0]["models"] = [*cfg["upstreams"][0]["models"], "text-embedding-*"]
        cfg["metrics"] = {"require_admin_key": True, "flush_interval_s": 0.1}
        cfg["tracing"] = {"enabled": True, "endpoint": collector.url, "export_delay_ms": 50, "service_name": "gw"}
        cfg["routing"] = {"retry": {"backoff_base": 0.01, "backoff_cap": 0.02}}
        # The run's multiprocess directory is the test's, to see which worker processes wrote to it.
        b.env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        gw = start_gateway(cfg, workdir, b)
        try:
            yield Env(gw, collector, metrics_dir)
        finally:
            gw.stop()
            collector.stop()


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(gw: Gateway, key: str | None = ADMIN_KEY) -> Samples:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    r = httpx.get(gw.url + "/metrics", headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    out: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def total(samples: Samples, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def delta(after: Samples, before: Samples, name: str, **labels: str) -> float:
    return total(after, name, **labels) - total(before, name, **labels)


def ask(text: str) -> Any:
    return [{"role": "user", "content": f"{text} {SECRET_WORD}"}]


# -- metrics -----------------------------------------------------------------------------------------------


def _writers(env: Env) -> set[str]:
    """The workers (pids) that have written counts."""
    return {p.stem.rsplit("_", 1)[1] for p in env.metrics_dir.glob("counter_*.db")}


def _serve_on_both_workers(env: Env, deadline_s: float = 20.0) -> bool:
    """Calls on connections of their own until both workers have written counts (True), or ``deadline_s`` passed
    (False). Which worker accepts a connection is the kernel's choice among those waiting on the shared socket,
    and one worker may take them all for a long time. The calls use another key and model than the test's, and
    their counts have all arrived before this returns."""
    _kid, secret = env.admin.create_key()
    start = scrape(env.gw)
    sent = 0

    def call(_i: int) -> None:
        client = openai.OpenAI(base_url=env.gw.url + "/v1", api_key=secret, max_retries=0, timeout=30)
        client.chat.completions.create(model="gpt-4o", messages=ask("warm"))

    end = time.monotonic() + deadline_s
    while len(_writers(env)) < 2 and time.monotonic() < end:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(call, range(8)))
        sent += 8  # (a worker's first counts reach its file within a flush interval: the next round sees them)

    def counted() -> bool:
        now = scrape(env.gw)
        timed = delta(now, start, "omnirelay_overhead_seconds_count", protocol="openai")
        return delta(now, start, "omnirelay_requests_total", model="gpt-4o") == sent and timed == sent

    wait_until(counted, deadline=10, what="the warm-up requests counted")
    return len(_writers(env)) == 2


def test_metrics_count_every_workers_traffic(env: Env, mocks: MockUpstreams) -> None:
    both_served = _serve_on_both_workers(env)
    before = scrape(env.gw)

    # 16 calls on connections of their own, 4 at a time, so both workers likely serve some; the mock's default
    # reply uses 12 input and 7 output tokens.
    def one(i: int) -> str:
        raw = env.oai().chat.completions.with_raw_response.create(model="gpt-4.1", messages=ask(f"n{i}"))
        return raw.headers["x-request-id"]

    with ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(one, range(16)))
    mocks.push("openai", ScriptedReply(text="one two three four", chunks=4, usage=ScriptedUsage(input=9, output=4)))
    stream = env.oai().chat.completions.create(
        model="gpt-4.1", messages=ask("stream"), stream=True, stream_options={"include_usage": True}
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "one two three four"
    mocks.push("openai", ScriptedReply(error_status=400, error_message="bad thing"))
    with pytest.raises(openai.BadRequestError):
        env.oai().chat.completions.create(model="gpt-4.1", messages=ask("error"))

    # Another worker's flush may be half read by the scrape (its counter file written, its histogram file not
    # yet): a scrape sees every request finished a flush interval ago, so wait until both series have them all.
    def settled() -> Samples | None:
        now = scrape(env.gw)
        done = delta(now, before, "omnirelay_requests_total", model="gpt-4.1")
        timed = delta(now, before, "gen_ai_server_request_duration_count", gen_ai_request_model="gpt-4.1")
        return now if done >= 18 and timed >= 18 else None

    after = wait_until(settled, deadline=10, what="18 requests counted")
    assert after is not None
    ok = {"model": "gpt-4.1", "channel": "mock-openai/gpt-4.1"}
    assert delta(after, before, "omnirelay_requests_total", status="200", stream="false", **ok) == 16
    assert delta(after, before, "omnirelay_requests_total", status="200", stream="true", **ok) == 1
    assert delta(after, before, "omnirelay_requests_total", status="400", **ok) == 1
    assert delta(after, before, "omnirelay_errors_total", status="400", error_type="invalid_request", **ok) == 1
    genai = {"gen_ai_request_model": "gpt-4.1", "gen_ai_provider_name": "openai", "gen_ai_operation_name": "chat"}
    tokens = "gen_ai_client_token_usage"
    assert delta(after, before, f"{tokens}_sum", gen_ai_token_type="input", **genai) == 16 * 12 + 9
    assert delta(after, before, f"{tokens}_sum", gen_ai_token_type="output", **genai) == 16 * 7 + 4
    assert delta(after, before, f"{tokens}_count", gen_ai_token_type="input", **genai) == 17
    assert delta(after, before, "gen_ai_server_request_duration_count", **genai) == 18
    assert delta(after, before, "gen_ai_server_request_duration_count", error_type="invalid_request", **genai) == 1
    assert delta(after, before, "gen_ai_server_time_to_first_token_count", **genai) == 1
    assert delta(after, before, "gen_ai_server_time_per_output_token_count", **genai) == 1
    assert delta(after, before, "omnirelay_overhead_seconds_count", protocol="openai") == 18
    assert delta(after, before, "omnirelay_upstream_duration_seconds_count", channel=ok["channel"]) == 18

    # The cost is the usage records' cost, to the last digit a float sum keeps.
    def recorded() -> list[dict[str, Any]] | None:  # each worker's usage writer flushes on its own
        rows = env.admin.usage(key=env.kid)
        return rows if len(rows) >= 18 and {r["request_id"] for r in rows} >= set(ids) else None

    rows = wait_until(recorded, deadline=30, what="the 18 usage records of both workers")
    assert rows is not None
    charged = sum(r["cost"] for r in rows)
    assert charged == pytest.approx((16 * 12 + 9) * 2e-6 + (16 * 7 + 4) * 8e-6, abs=1e-12)
    assert delta(after, before, "omnirelay_cost_usd_total", **ok) == pytest.approx(charged, abs=1e-12)
    # Both workers wrote counts, so the scrapes summed two processes' files; unless one worker took every
    # connection (_serve_on_both_workers), when the sums above are one process's.
    assert len(_writers(env)) == (2 if both_served else 1), _writers(env)
    assert total(after, "omnirelay_breaker_state", channel=ok["channel"]) == 0
    assert ("omnirelay_usage_journal_backlog", frozenset()) in after
    wait_until(lambda: total(scrape(env.gw), "omnirelay_requests_in_flight") == 0, what="nothing in flight")


def test_embeddings_and_images_are_counted_and_traced_as_their_own_operations(env: Env) -> None:
    before = scrape(env.gw)
    header, trace_id, _parent = traceparent()
    raw = env.oai(traceparent=header).embeddings.with_raw_response.create(
        model="text-embedding-3-small", input=[f"one {SECRET_WORD}", "two"]
    )
    used = raw.parse().usage.prompt_tokens
    assert used > 0
    image = env.oai().images.generate(model="gpt-image-1", prompt=f"a lighthouse {SECRET_WORD}")
    assert image.data

    embeddings = {"gen_ai_operation_name": "embeddings", "gen_ai_request_model": "text-embedding-3-small"}
    images = {"gen_ai_operation_name": "generate_content", "gen_ai_request_model": "gpt-image-1"}
    duration = "gen_ai_server_request_duration_count"

    tokens = "gen_ai_client_token_usage_sum"
    count = "omnirelay_requests_total"
    ok = {"status": "200", "stream": "false"}

    def settled() -> Samples | None:
        # Every series asserted below: a scrape may read the serving worker's flush half-written (its duration
        # histogram's file written, its token histogram's not yet); metrics are at most one flush interval old.
        now = scrape(env.gw)
        seen = [
            delta(now, before, duration, **embeddings),
            delta(now, before, duration, **images),
            delta(now, before, count, protocol="openai_embeddings", model="text-embedding-3-small", **ok),
            delta(now, before, count, protocol="openai_images", model="gpt-image-1", **ok),
        ]
        counted = delta(now, before, tokens, gen_ai_token_type="input", **embeddings) >= used
        return now if min(seen) >= 1 and counted else None

    after = wait_until(settled, deadline=10, what="the embeddings and image requests counted")
    assert after is not None
    assert delta(after, before, count, protocol="openai_embeddings", model="text-embedding-3-small", **ok) == 1
    assert delta(after, before, count, protocol="openai_images", model="gpt-image-1", **ok) == 1
    assert delta(after, before, duration, **embeddings) == 1 and delta(after, before, duration, **images) == 1
    tokens = "gen_ai_client_token_usage_sum"
    assert delta(after, before, tokens, gen_ai_token_type="input", **embeddings) == used
    assert delta(after, before, duration, gen_ai_operation_name="chat", gen_ai_request_model="gpt-image-1") == 0

    spans = spans_of(env, trace_id, 2)
    (request,) = [s for s in spans if s.kind == SERVER]
    assert request.name == "embeddings text-embedding-3-small"
    assert request.attributes["gen_ai.operation.name"] == "embeddings"
    assert request.attributes["omnirelay.request_id"] == raw.headers["x-request-id"]
    assert request.attributes["gen_ai.usage.input_tokens"] == used
    (attempt,) = [s for s in spans if s.kind == CLIENT]
    assert attempt.attributes["gen_ai.operation.name"] == "embeddings"
    assert attempt.parent_id == request.span_id
    _no_prompt_text(spans)


def test_metrics_count_rate_limit_rejections(env: Env) -> None:
    _kid, secret = env.admin.create_key(rpm=1)
    client = openai.OpenAI(base_url=env.gw.url + "/v1", api_key=secret, max_retries=0, timeout=30)
    before = scrape(env.gw)
    refused = 0
    for i in range(3):
        try:
            client.chat.completions.create(model="gpt-4.1", messages=ask(f"limit {i}"))
        except openai.RateLimitError:
            refused += 1
    assert refused >= 1
    wait_until(
        lambda: (
            delta(scrape(env.gw), before, "omnirelay_rate_limit_rejections_total", code="rate_limit_exceeded")
            == refused
        ),
        what=f"{refused} rejections counted",
    )


def test_metrics_need_the_admin_key_when_configured(env: Env) -> None:
    assert httpx.get(env.gw.url + "/metrics").status_code == 401
    bad = httpx.get(env.gw.url + "/metrics", headers={"authorization": f"Bearer {env.secret}"})
    assert bad.status_code == 401 and "error" in bad.json()
    assert scrape(env.gw)  # with the admin key


def test_metrics_are_open_by_default(gateway: Gateway) -> None:
    r = httpx.get(gateway.url + "/metrics")
    assert r.status_code == 200 and "omnirelay_requests_in_flight" in r.text


# -- the overhead header -------------------------------------------------------------------------------------


def test_overhead_header_on_plain_streamed_and_refused_replies(env: Env, mocks: MockUpstreams) -> None:
    t0 = time.perf_counter()
    raw = env.oai().chat.completions.with_raw_response.create(model="gpt-4.1", messages=ask("hi"))
    elapsed_ms = (time.perf_counter() - t0) * 1000.0
    overhead = float(raw.headers["x-omnirelay-overhead-ms"])
    assert 0.0 <= overhead < elapsed_ms
    t0 = time.perf_counter()
    with env.oai().chat.completions.with_streaming_response.create(
        model="gpt-4.1", messages=ask("hi"), stream=True
    ) as resp:
        streamed = float(resp.headers["x-omnirelay-overhead-ms"])
        list(resp.iter_lines())
    assert 0.0 <= streamed < (time.perf_counter() - t0) * 1000.0
    mocks.push("openai", ScriptedReply(error_status=400))
    t0 = time.perf_counter()
    with pytest.raises(openai.BadRequestError) as caught:
        env.oai().chat.completions.create(model="gpt-4.1", messages=ask("hi"))
    refused = float(caught.value.response.headers["x-omnirelay-overhead-ms"])  # an upstream's refusal too
    assert 0.0 <= refused < (time.perf_counter() - t0) * 1000.0


# -- traces ------------------------------------------------------------------------------------------------


def traceparent() -> tuple[str, str, str]:
    trace_id, parent_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    return f"00-{trace_id}-{parent_id}-01", trace_id, parent_id


def spans_of(env: Env, trace_id: str, count: int) -> list[CollectedSpan]:
    def arrived() -> list[CollectedSpan]:
        spans = env.collector.trace(trace_id)
        return spans if len(spans) >= count else []

    return wait_until(arrived, what=f"{count} spans of trace {trace_id}")


def test_trace_of_a_retried_request(env: Env, mocks: MockUpstreams) -> None:
    header, trace_id, parent_id = traceparent()
    mocks.push("openai", ScriptedReply(error_status=500), ScriptedReply(text="fine", usage=ScriptedUsage(input=5)))
    raw = env.oai(traceparent=header).chat.completions.with_raw_response.create(
        model="gpt-4.1", messages=ask("retry me")
    )
    assert raw.headers["x-omnirelay-attempts"] == "2"
    spans = spans_of(env, trace_id, 3)
    (request,) = [s for s in spans if s.kind == SERVER]
    assert request.parent_id == parent_id and request.name == "chat gpt-4.1"
    assert request.attributes["gen_ai.request.model"] == "gpt-4.1"
    assert request.attributes["gen_ai.response.model"] == "gpt-4.1"
    assert request.attributes["gen_ai.provider.name"] == "openai"
    assert request.attributes["gen_ai.operation.name"] == "chat"
    assert request.attributes["gen_ai.usage.input_tokens"] == 5
    assert request.attributes["gen_ai.usage.output_tokens"] == 7
    assert request.attributes["http.response.status_code"] == 200
    assert request.attributes["omnirelay.request_id"] == raw.headers["x-request-id"]
    attempts = sorted((s for s in spans if s.kind == CLIENT), key=lambda s: s.attributes["omnirelay.attempt"])
    assert [a.parent_id for a in attempts] == [request.span_id] * 2
    assert [a.attributes["omnirelay.attempt"] for a in attempts] == [1, 2]
    assert attempts[0].attributes["error.type"] == "upstream" and attempts[0].status_code == 2  # ERROR
    assert attempts[0].attributes["omnirelay.status"] == 502 and attempts[1].attributes["omnirelay.status"] == 200
    assert all(a.attributes["omnirelay.channel"] == "mock-openai/gpt-4.1" for a in attempts)
    assert request.start_ns <= attempts[0].start_ns < attempts[0].end_ns <= attempts[1].start_ns
    assert attempts[1].end_ns <= request.end_ns
    assert request.service == "gw"
    _no_prompt_text(spans)


def test_trace_of_a_compound_request_has_a_span_per_sub_call(env: Env, mocks: MockUpstreams) -> None:
    header, trace_id, _ = traceparent()
    mocks.push("openai", ScriptedReply(text="6*7 is 42"), ScriptedReply(text="42"))
    resp = env.oai(traceparent=header).chat.completions.create(model="think:gpt-4.1", messages=ask("6 * 7?"))
    assert resp.choices[0].message.content == "42"
    spans = spans_of(env, trace_id, 5)
    (request,) = [s for s in spans if s.kind == SERVER]
    assert request.name == "chat think:gpt-4.1"
    subs = [s for s in spans if s.kind == INTERNAL]
    assert len(subs) == 2 and all(s.parent_id == request.span_id for s in subs)
    assert all(s.attributes["gen_ai.request.model"] == "gpt-4.1" for s in subs)
    assert all(s.attributes["omnirelay.compound.sub_call"] is True for s in subs)
    for sub in subs:
        (attempt,) = [s for s in spans if s.parent_id == sub.span_id]
        assert attempt.kind == CLIENT and attempt.attributes["omnirelay.channel"] == "mock-openai/gpt-4.1"
    # The request's own attempt is the engine's channel.
    (engine,) = [s for s in spans if s.parent_id == request.span_id and s.kind == CLIENT]
    assert engine.attributes["gen_ai.provider.name"] == "omnirelay.compound"
    assert request.attributes["gen_ai.usage.input_tokens"] == sum(
        s.attributes["gen_ai.usage.input_tokens"] for s in subs
    )
    _no_prompt_text(spans)


def _no_prompt_text(spans: list[CollectedSpan]) -> None:
    for span in spans:
        assert "gen_ai.input.messages" not in span.attributes
        assert all(SECRET_WORD not in str(v) for v in span.attributes.values()), span


# -- the access log ----------------------------------------------------------------------------------------


def test_json_access_log_line_per_request(env: Env) -> None:
    raw = env.oai().chat.completions.with_raw_response.create(model="gpt-4.1", messages=ask("log me"))
    rid = raw.headers["x-request-id"]

    def line() -> dict[str, Any] | None:
        for text in env.gw.log_path.read_text(errors="replace").splitlines():
            if text.startswith("{") and rid in text:
                parsed: dict[str, Any] = json.loads(text)
                return parsed
        return None

    entry = wait_until(line, what="the request's access log line")
    assert entry is not None
    assert entry["request_id"] == rid and entry["status"] == 200 and entry["method"] == "POST"
    assert entry["path"] == "/v1/chat/completions" and entry["model"] == "gpt-4.1"
    assert entry["key_id"] == env.kid and entry["channel"] == "mock-openai/gpt-4.1"
    assert (entry["input_tokens"], entry["output_tokens"]) == (12, 7)
    assert entry["cost"] == pytest.approx(12 * 2e-6 + 7 * 8e-6, abs=1e-15)
    assert entry["latency_ms"] > 0 and 0 <= entry["overhead_ms"] <= entry["latency_ms"]
    assert entry["overhead_ms"] == pytest.approx(float(raw.headers["x-omnirelay-overhead-ms"]), abs=0.002)
    log = env.gw.log_path.read_text(errors="replace")
    assert env.secret not in log and SECRET_WORD not in log and ADMIN_KEY not in log
    assert os.path.isdir(env.metrics_dir)


def test_traces_go_to_the_environments_endpoint_with_content_when_asked(mocks: MockUpstreams, tmp_path: Path) -> None:
    """No tracing.endpoint: OTEL_EXPORTER_OTLP_ENDPOINT is where spans go; include_content puts the messages on
    the request span (and only there)."""
    collector = OtlpCollector().start()
    cfg = state_config((mocks.url("openai"), mocks.url("anthropic"), mocks.url("gemini")))
    cfg["tracing"] = {"enabled": True, "include_content": True, "export_delay_ms": 50}
    cfg["metrics"] = {"enabled": False}
    with backend("sqlite", tmp_path) as b:
        b.env["OTEL_EXPORTER_OTLP_ENDPOINT"] = collector.url
        gw = start_gateway(cfg, tmp_path, b)
        try:
            assert httpx.get(gw.url + "/metrics").status_code == 404  # metrics off: no endpoint
            _kid, secret = Admin(gw.url).create_key()
            header, trace_id, _ = traceparent()
            client = openai.OpenAI(
                base_url=gw.url + "/v1", api_key=secret, max_retries=0, default_headers={"traceparent": header}
            )
            client.chat.completions.create(model="gpt-4.1", messages=ask("with content"))

            def arrived() -> list[CollectedSpan]:
                return collector.trace(trace_id)

            (request,) = [s for s in wait_until(arrived, what="the request's spans") if s.kind == SERVER]
            messages = json.loads(request.attributes["gen_ai.input.messages"])
            assert SECRET_WORD in json.dumps(messages) and messages[0]["role"] == "user"
            assert request.service == "omnirelay"
        finally:
            gw.stop()
            collector.stop()
