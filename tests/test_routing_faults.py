"""Routing under failure: every fault the fault server can inject, through the real gateway, with the official
SDKs. For each fault: another channel answers correctly, or the client gets a well-formed error within the
configured time; each request is recorded once; nothing leaks.

Timeouts in this gateway: connect 1 s, first byte (and mid-stream silence) 1 s, total 6 s; two attempts per
model; backoff capped at 0.2 s. Breakers are effectively off here (see test_routing_breaker.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.gateway import Gateway
from tests.mocks.faults import Fault, FaultServer
from tests.polling import wait_until
from tests.routing_support import (
    ADMIN_KEY,
    base_config,
    channel,
    channel_states,
    task_count,
    tcp_sockets,
    usage_rows,
)

MODEL = "gpt-4.1-mini"

# Faults that end an attempt before anything reached the client: another channel must answer.
PRE_COMMIT: dict[str, Fault] = {
    "429": Fault(mode="429", retry_after=1),
    "500": Fault(mode="500"),
    "503": Fault(mode="503"),
    "hang_headers": Fault(mode="hang_headers"),
    "hang_mid": Fault(mode="hang_mid", after_chunks=0),
    "reset_mid": Fault(mode="reset_mid", after_chunks=0),
    "malformed": Fault(mode="malformed", after_chunks=0),
    "truncated": Fault(mode="truncated", after_chunks=0),
    "slow": Fault(mode="slow", delay_s=2.0),
}
# Faults after content went to the client: the stream must end with the protocol's error event.
MID_STREAM: dict[str, Fault] = {
    mode: Fault(mode=mode, after_chunks=1) for mode in ("hang_mid", "reset_mid", "malformed", "truncated")
}
# Every channel of the model fails: the status the client must get.
SOLO_STATUS = {"429": 429, "500": 502, "503": 503, "hang_headers": 504, "malformed": 502, "truncated": 502, "slow": 504}
# Worst case for a model with two failing attempts: 2 x (first-byte timeout or Retry-After) + backoff + slack.
SOLO_BOUND_S = 2 * 1.0 + 1.0 + 0.2 + 1.5


def _case_ids() -> list[str]:
    ids = [f"{m}-{s}" for m in PRE_COMMIT for s in ("n", "s")]
    ids += [f"mid-{m}" for m in MID_STREAM]
    ids += [f"solo-{m}-{s}" for m in SOLO_STATUS for s in ("n", "s")]
    return ids


def _config(faults: FaultServer) -> dict[str, Any]:
    upstreams: list[str] = []
    models: dict[str, Any] = {}
    for case in _case_ids():
        upstreams += [f"{case}-a", f"{case}-b"]
        models[f"pair-{case}"] = {
            "channels": [channel(f"{case}-a"), channel(f"{case}-b", priority=1)],
        }
    extra_upstreams = ["fbp", "fbb", "rqp", "rqb", "badp", "w1", "w3", "wz", "cap-a", "cap-b", "caps", "dl", "ok1"]
    upstreams += extra_upstreams
    models.update(
        {
            "fb-primary": {"channels": [channel("fbp")], "fallbacks": ["fb-backup"]},
            "fb-backup": {"channels": [channel("fbb", model="gpt-4.1")]},
            "bad-primary": {"channels": [channel("badp")], "fallbacks": ["fb-backup"]},
            "rq-primary": {"channels": [channel("rqp")]},
            "rq-backup": {"channels": [channel("rqb", model="gpt-4.1-nano")]},
            "weighted": {
                "channels": [
                    channel("w1", weight=1),
                    channel("w3", weight=3),
                    channel("wz", weight=5, priority=1),  # never used while the tier above answers
                ]
            },
            "capped": {"channels": [channel("cap-a", max_concurrency=1), channel("cap-b", priority=1)]},
            "capped-solo": {"channels": [channel("caps", max_concurrency=1, timeouts={"first_byte": 5.0})]},
            "deadline": {
                # The channel allows 5 s to the first byte; the model's deadline of 1.5 s wins.
                "channels": [channel("dl", timeouts={"first_byte": 5.0})],
                "retry": {"max_attempts": 3, "deadline": 1.5},
            },
            "plain": {"channels": [channel("ok1")]},
        }
    )
    cfg = base_config(
        faults,
        upstreams,
        models,
        breaker={"consecutive_failures": 10_000, "min_requests": 1_000_000},
        budget={"ratio": 1.0, "min_per_second": 1000},
    )
    # The pair's second channel answers every test that faults the first: no retry budget or rest must matter.
    return cfg


@pytest.fixture(scope="module")
def gw(faults: FaultServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    g = Gateway(_config(faults), tmp_path_factory.mktemp("routing-faults")).start()
    yield g
    g.stop()


@pytest.fixture(autouse=True)
def _fresh_faults(faults: FaultServer) -> None:
    faults.reset()


@pytest.fixture()
def oai(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=ADMIN_KEY, max_retries=0, timeout=20)


@pytest.fixture()
def claude(gw: Gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=ADMIN_KEY, max_retries=0, timeout=20)


def _ask(oai: openai.OpenAI, model: str, stream: bool, text: str = "hi", **kw: Any) -> tuple[str, Mapping[str, str]]:
    """Send one chat request; the answer's text and the response headers."""
    messages: Any = [{"role": "user", "content": text}]
    if stream:
        raw = oai.chat.completions.with_raw_response.create(model=model, messages=messages, stream=True, **kw)
        out = "".join((c.choices[0].delta.content or "") for c in raw.parse() if c.choices)
        return out, raw.headers
    raw_n = oai.chat.completions.with_raw_response.create(model=model, messages=messages, **kw)
    return raw_n.parse().choices[0].message.content or "", raw_n.headers


def _assert_recorded_once(gw: Gateway, headers: Mapping[str, str], upstream: str, attempts: int) -> None:
    rows = usage_rows(gw, headers["x-request-id"])
    assert len(rows) == 1, rows
    assert rows[0]["upstream"] == upstream
    assert rows[0]["attempts"] == attempts


@pytest.mark.parametrize("stream", [False, True], ids=["n", "s"])
@pytest.mark.parametrize("mode", list(PRE_COMMIT))
def test_fault_before_commit_is_answered_by_the_next_channel(
    gw: Gateway, faults: FaultServer, oai: openai.OpenAI, mode: str, stream: bool
) -> None:
    case = f"{mode}-{'s' if stream else 'n'}"
    faults.set(f"{case}-a", PRE_COMMIT[mode])
    t0 = time.monotonic()
    text, headers = _ask(oai, f"pair-{case}", stream, text=f"question {case}")
    elapsed = time.monotonic() - t0
    assert text == f"from {case}-b: echo question {case}"
    assert headers["x-omnirelay-channel"] == f"{case}-b/{MODEL}"
    assert headers["x-omnirelay-attempts"] == "2"
    assert faults.hits(f"{case}-a") == 1 and faults.hits(f"{case}-b") == 1
    # Moving to another channel needs no backoff; a hang costs the first-byte timeout (1 s).
    assert elapsed < 2.5, elapsed
    _assert_recorded_once(gw, headers, f"{case}-b", 2)


@pytest.mark.parametrize("mode", list(MID_STREAM))
def test_fault_after_commit_ends_the_stream_with_an_error_event(
    gw: Gateway, faults: FaultServer, oai: openai.OpenAI, mode: str
) -> None:
    case = f"mid-{mode}"
    faults.set(f"{case}-a", MID_STREAM[mode])
    received = ""
    t0 = time.monotonic()
    raw = oai.chat.completions.with_raw_response.create(
        model=f"pair-{case}", messages=[{"role": "user", "content": "tell me"}], stream=True
    )
    assert raw.headers["x-omnirelay-channel"] == f"{case}-a/{MODEL}"
    with pytest.raises(openai.APIError) as info:
        for chunk in raw.parse():
            if chunk.choices:
                received += chunk.choices[0].delta.content or ""
    assert time.monotonic() - t0 < 2.5
    # What reached the client is the start of channel a's answer; the stream was not restarted on b.
    assert received and f"from {case}-a: echo tell me".startswith(received)
    assert faults.hits(f"{case}-b") == 0
    assert info.value.message
    _assert_recorded_once(gw, raw.headers, f"{case}-a", 1)


@pytest.mark.parametrize("stream", [False, True], ids=["n", "s"])
@pytest.mark.parametrize("mode", list(SOLO_STATUS))
def test_every_channel_failing_gives_a_well_formed_error_in_time(
    gw: Gateway, faults: FaultServer, oai: openai.OpenAI, mode: str, stream: bool
) -> None:
    case = f"solo-{mode}-{'s' if stream else 'n'}"
    faults.set(f"{case}-a", PRE_COMMIT[mode])
    faults.set(f"{case}-b", PRE_COMMIT[mode])
    t0 = time.monotonic()
    with pytest.raises(openai.APIStatusError) as info:
        _ask(oai, f"pair-{case}", stream)
    elapsed = time.monotonic() - t0
    err = info.value
    assert err.status_code == SOLO_STATUS[mode]
    body = err.response.json()
    assert set(body["error"]) >= {"message", "type", "code"} and body["error"]["message"]
    assert "secret" not in err.response.text
    assert err.response.headers["x-omnirelay-attempts"] == "2"
    assert faults.hits(f"{case}-a") + faults.hits(f"{case}-b") == 2
    assert elapsed < SOLO_BOUND_S, elapsed
    if mode == "429":  # the upstream's Retry-After is passed on
        assert err.response.headers["retry-after"] == "1"


def test_retry_after_is_honoured_on_the_same_channel(faults: FaultServer, oai: openai.OpenAI) -> None:
    faults.set("rqp", Fault(mode="429", retry_after=1, times=1))
    t0 = time.monotonic()
    text, headers = _ask(oai, "rq-primary", False, text="wait for it")
    assert time.monotonic() - t0 >= 0.95
    assert text == "from rqp: echo wait for it"
    assert headers["x-omnirelay-attempts"] == "2"
    assert faults.hits("rqp") == 2


def test_anthropic_client_gets_the_next_channel_and_anthropic_errors(
    faults: FaultServer, claude: anthropic.Anthropic
) -> None:
    faults.set("500-n-a", Fault(mode="500"))
    raw = claude.messages.with_raw_response.create(
        model="pair-500-n", max_tokens=50, messages=[{"role": "user", "content": "bonjour"}]
    )
    msg = raw.parse()
    assert msg.content[0].type == "text" and msg.content[0].text == "from 500-n-b: echo bonjour"
    assert raw.headers["x-omnirelay-attempts"] == "2"
    faults.set("solo-503-n-a", Fault(mode="503"))
    faults.set("solo-503-n-b", Fault(mode="503"))
    with pytest.raises(anthropic.APIStatusError) as info:
        claude.messages.create(model="pair-solo-503-n", max_tokens=50, messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 503
    body = info.value.response.json()
    assert body["type"] == "error" and body["error"]["type"] == "overloaded_error"


def test_anthropic_stream_fault_mid_way_ends_with_an_error_event(
    faults: FaultServer, claude: anthropic.Anthropic
) -> None:
    faults.set("mid-reset_mid-a", Fault(mode="reset_mid", after_chunks=1))
    seen = ""
    with (
        pytest.raises(anthropic.APIError),
        claude.messages.stream(
            model="pair-mid-reset_mid", max_tokens=50, messages=[{"role": "user", "content": "abc"}]
        ) as stream,
    ):
        for text in stream.text_stream:
            seen += text
    assert seen and "from mid-reset_mid-a: echo abc".startswith(seen)
    # And before any content, an Anthropic stream moves on to the next channel.
    faults.set("hang_mid-s-a", Fault(mode="hang_mid", after_chunks=0))
    with claude.messages.stream(
        model="pair-hang_mid-s", max_tokens=50, messages=[{"role": "user", "content": "abc"}]
    ) as stream:
        assert "".join(stream.text_stream) == "from hang_mid-s-b: echo abc"


def test_slow_answer_within_the_timeout_comes_from_the_first_channel(faults: FaultServer, oai: openai.OpenAI) -> None:
    faults.set("slow-n-a", Fault(mode="slow", delay_s=0.4))
    text, headers = _ask(oai, "pair-slow-n", False, text="patience")
    assert text == "from slow-n-a: echo patience"
    assert headers["x-omnirelay-attempts"] == "1"


# -- fallbacks ------------------------------------------------------------------------------------------


def test_model_fallback_after_the_model_s_attempts(faults: FaultServer, oai: openai.OpenAI) -> None:
    faults.set("fbp", Fault(mode="500"))
    text, headers = _ask(oai, "fb-primary", False, text="fall back")
    assert text == "from fbb: echo fall back"
    assert headers["x-omnirelay-channel"] == "fbb/gpt-4.1"
    assert headers["x-omnirelay-attempts"] == "3"  # two on the primary (max_attempts 2), one on the fallback
    assert faults.hits("fbp") == 2
    assert faults.last_body("fbb")["model"] == "gpt-4.1"


def test_non_retryable_error_does_not_fall_back(faults: FaultServer, oai: openai.OpenAI) -> None:
    faults.set("badp", Fault(status=400))
    with pytest.raises(openai.BadRequestError) as info:
        _ask(oai, "bad-primary", False)
    assert info.value.response.headers["x-omnirelay-attempts"] == "1"
    assert faults.hits("badp") == 1 and faults.hits("fbb") == 0


@pytest.mark.parametrize("how", ["openrouter_models", "omnirelay_fallbacks"])
def test_request_fallbacks(faults: FaultServer, oai: openai.OpenAI, how: str) -> None:
    faults.set("rqp", Fault(mode="503"))
    extra: dict[str, Any] = {"models": ["no-such-model", "rq-backup"]}
    if how == "omnirelay_fallbacks":
        extra = {"omnirelay": {"fallbacks": ["rq-backup"]}}
    text, headers = _ask(oai, "rq-primary", how == "omnirelay_fallbacks", text="per request", extra_body=extra)
    assert text == "from rqb: echo per request"
    assert headers["x-omnirelay-channel"] == "rqb/gpt-4.1-nano"
    body = faults.last_body("rqb")
    assert "models" not in body and "omnirelay" not in body  # gateway fields never reach an upstream
    assert body["model"] == "gpt-4.1-nano"


def test_request_fallbacks_cover_an_unknown_primary(faults: FaultServer, oai: openai.OpenAI) -> None:
    text, _ = _ask(oai, "not-a-model", False, text="x", extra_body={"models": ["rq-backup"]})
    assert text == "from rqb: echo x"
    with pytest.raises(openai.NotFoundError):
        _ask(oai, "not-a-model", False)
    with pytest.raises(openai.BadRequestError) as info:
        _ask(oai, "rq-primary", False, extra_body={"models": "rq-backup"})
    assert info.value.response.json()["error"]["param"] == "models"


# -- load spreading, caps, deadline ---------------------------------------------------------------------


def test_weighted_spreading_within_five_percent(faults: FaultServer, gw: Gateway) -> None:
    n = 1000
    body = {"model": "weighted", "messages": [{"role": "user", "content": "w"}]}
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with httpx.Client(base_url=gw.url, headers=headers, timeout=20) as client:

        def one(_: int) -> str:
            resp = client.post("/v1/chat/completions", json=body)
            assert resp.status_code == 200, resp.text
            return resp.headers["x-omnirelay-channel"]

        with ThreadPoolExecutor(8) as pool:
            answered = list(pool.map(one, range(n)))
    share_w1 = answered.count(f"w1/{MODEL}") / n
    share_w3 = answered.count(f"w3/{MODEL}") / n
    assert abs(share_w1 - 0.25) <= 0.05 and abs(share_w3 - 0.75) <= 0.05, (share_w1, share_w3)
    assert faults.hits("w1") + faults.hits("w3") == n and faults.hits("wz") == 0


def test_channel_at_its_concurrency_cap_is_skipped(faults: FaultServer, oai: openai.OpenAI) -> None:
    faults.set("cap-a", Fault(mode="slow", delay_s=0.8))
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(_ask, oai, "capped", False, "one")
        wait_until(lambda: faults.hits("cap-a") == 1, 5, "the first request on cap-a")  # a's one slot is taken
        second = pool.submit(_ask, oai, "capped", False, "two")
        (text1, _), (text2, h2) = first.result(), second.result()
    assert text1 == "from cap-a: echo one"
    assert text2 == "from cap-b: echo two" and h2["x-omnirelay-attempts"] == "1"


def test_request_waits_briefly_when_every_channel_is_full(faults: FaultServer, oai: openai.OpenAI) -> None:
    faults.set("caps", Fault(mode="slow", delay_s=0.3))
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda t: _ask(oai, "capped-solo", False, t), ["a", "b"]))
    assert sorted(t for t, _ in results) == ["from caps: echo a", "from caps: echo b"]
    faults.set("caps", Fault(mode="slow", delay_s=1.5))
    with ThreadPoolExecutor(2) as pool:
        hits = faults.hits("caps")
        slow = pool.submit(_ask, oai, "capped-solo", False, "slow")
        wait_until(lambda: faults.hits("caps") == hits + 1, 5, "the slow request on caps")  # its slot is taken
        t0 = time.monotonic()
        with pytest.raises(openai.APIStatusError) as info:
            _ask(oai, "capped-solo", False, "rejected")
        waited = time.monotonic() - t0
        assert slow.result()[0] == "from caps: echo slow"
    assert info.value.status_code == 503 and 0.4 <= waited < 1.2  # queue_timeout 0.5 s


def test_routing_deadline_bounds_the_whole_request(faults: FaultServer, oai: openai.OpenAI) -> None:
    faults.set("dl", Fault(mode="hang_headers"))
    t0 = time.monotonic()
    with pytest.raises(openai.APIStatusError) as info:
        _ask(oai, "deadline", False)
    assert info.value.status_code == 504
    assert 1.3 <= time.monotonic() - t0 < 2.5


# -- no leaks -------------------------------------------------------------------------------------------


def _run_every_fault(faults: FaultServer, oai: openai.OpenAI) -> None:
    for case, fault in PRE_COMMIT.items():
        for stream in (False, True):
            faults.set(f"{case}-{'s' if stream else 'n'}-a", fault)
            _ask(oai, f"pair-{case}-{'s' if stream else 'n'}", stream)
    for mode, fault in MID_STREAM.items():
        faults.set(f"mid-{mode}-a", fault)
        with pytest.raises(openai.APIError):
            _ask(oai, f"pair-mid-{mode}", True)


def _wait_quiet(gw: Gateway, faults: FaultServer) -> None:
    """Until nothing is in flight: the mock's hung handlers have noticed the gateway left (their connection
    closed), and no channel holds a slot or a probe."""

    def quiet() -> bool:
        busy = [s for s in channel_states(gw).values() if s["in_flight"] or s["probe_in_flight"]]
        return faults.open_handlers == 0 and not busy

    wait_until(quiet, 10, "no request in flight on the gateway or the mock")


def test_zz_no_socket_or_task_leaks(gw: Gateway, faults: FaultServer, oai: openai.OpenAI, tmp_path: Path) -> None:
    assert gw.proc is not None
    _run_every_fault(faults, oai)  # warm: pools and caches reach their working size
    _wait_quiet(gw, faults)
    sockets_before = tcp_sockets(gw.proc.pid)
    tasks_before = task_count(gw)
    for _ in range(2):
        _run_every_fault(faults, oai)
    _wait_quiet(gw, faults)
    pid = gw.proc.pid
    # A connection the mock closed a moment ago is in CLOSE_WAIT until the gateway's loop reads the EOF (a
    # moment under load); one that stays there is a leak.
    wait_until(lambda: tcp_sockets(pid)["CLOSE_WAIT"] == 0, 5, f"no CLOSE_WAIT socket left: {tcp_sockets(pid)}")
    sockets_after = tcp_sockets(pid)
    tasks_after = task_count(gw)
    established = sockets_after["ESTABLISHED"] - sockets_before["ESTABLISHED"]
    assert established <= 2, (sockets_before, sockets_after)
    assert sum(sockets_after.values()) - sum(sockets_before.values()) <= 2, (sockets_before, sockets_after)
    assert faults.open_handlers == 0
    assert tasks_after <= tasks_before + 1, (tasks_before, tasks_after)
    states = channel_states(gw)
    assert all(s["in_flight"] in (None, 0) for s in states.values())
    assert all(not s["probe_in_flight"] for s in states.values())
