"""Virtual keys through the running gateway with the official SDKs, on SQLite and on PostgreSQL + Redis:
every rejection in both protocols, rate-limit headers, exact costs, and the usage record of each request."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.gateway import Gateway
from tests.mocks.script import ScriptedReply, ScriptedUsage
from tests.mocks.server import MockUpstreams
from tests.state_helpers import ADMIN_KEY, BACKENDS, Admin, backend, start_gateway, state_config

GPT = "gpt-4.1"  # 2.00 in / 0.50 cached / 8.00 out per million
CLAUDE = "claude-sonnet-4-20250514"  # 3.00 in / 0.30 cache read / 3.75 cache write / 15.00 out


class Env:
    def __init__(self, gw: Gateway, kind: str) -> None:
        self.gw = gw
        self.kind = kind
        self.admin = Admin(gw.url)

    def oai(self, secret: str | None) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gw.url + "/v1", api_key=secret or "", max_retries=0, timeout=30)

    def claude(self, secret: str | None) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.gw.url, api_key=secret or "", max_retries=0, timeout=30)


@pytest.fixture(scope="module", params=BACKENDS)
def env(
    request: pytest.FixtureRequest, mocks: MockUpstreams, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Env]:
    workdir = tmp_path_factory.mktemp(f"keys-{request.param}")
    with backend(request.param, workdir) as b:
        cfg = state_config((mocks.url("openai"), mocks.url("anthropic"), mocks.url("gemini")))
        gw = start_gateway(cfg, workdir, b)
        try:
            yield Env(gw, request.param)
        finally:
            gw.stop()


def _ask(client: openai.OpenAI, model: str = GPT, **kw: Any) -> Any:
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], **kw)


def _ask_claude(client: anthropic.Anthropic, model: str = CLAUDE, **kw: Any) -> Any:
    return client.messages.create(model=model, max_tokens=100, messages=[{"role": "user", "content": "hi"}], **kw)


def _record(env: Env, key_id: str, request_id: str) -> dict[str, Any]:
    rows = [r for r in env.admin.wait_usage(1, key=key_id) if r["request_id"] == request_id]
    assert len(rows) == 1, f"expected one usage record for {request_id}, got {rows}"
    return rows[0]


# -- authentication and permission ---------------------------------------------------------------------


def test_unknown_and_missing_key_are_401_in_both_formats(env: Env, mocks: MockUpstreams) -> None:
    env.admin.create_key()  # at least one key exists: the gateway is closed (the admin API refreshed its cache)
    for secret in ("sk-or-aaaaaaaaaaaa-not-a-real-secret", "sk-something-else"):
        with pytest.raises(openai.AuthenticationError) as oe:
            _ask(env.oai(secret))
        assert oe.value.status_code == 401
        assert oe.value.code == "invalid_api_key"
        with pytest.raises(anthropic.AuthenticationError) as ae:
            _ask_claude(env.claude(secret))
        assert ae.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
        assert secret not in str(ae.value.body)
    r = httpx.post(
        env.gw.url + "/v1/chat/completions", json={"model": GPT, "messages": [{"role": "user", "content": "hi"}]}
    )
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert mocks.requests("openai") == [] and mocks.requests("anthropic") == []


def test_key_works_with_bearer_and_x_api_key(env: Env) -> None:
    _kid, secret = env.admin.create_key()
    assert _ask(env.oai(secret)).choices[0].message.content == "echo: hi"
    msg = _ask_claude(env.claude(secret))  # the anthropic SDK sends x-api-key
    assert msg.content[0].text == "echo: hi"


def test_disabled_key_is_rejected_within_a_second_and_enabled_again(env: Env) -> None:
    kid, secret = env.admin.create_key()
    _ask(env.oai(secret))
    r = env.admin.http.post(f"/admin/keys/{kid}/disable")
    assert r.status_code == 200 and r.json()["disabled"] is True
    with pytest.raises(openai.AuthenticationError) as oe:
        _ask(env.oai(secret))
    assert "disabled" in oe.value.message
    with pytest.raises(anthropic.AuthenticationError):
        _ask_claude(env.claude(secret))
    env.admin.http.post(f"/admin/keys/{kid}/enable")
    assert _ask(env.oai(secret)).choices[0].message.content == "echo: hi"


def test_expired_key_is_401(env: Env) -> None:
    _kid, secret = env.admin.create_key(expires_at=time.time() - 5)
    with pytest.raises(openai.AuthenticationError) as oe:
        _ask(env.oai(secret))
    assert "expired" in oe.value.message
    with pytest.raises(anthropic.AuthenticationError):
        _ask_claude(env.claude(secret))


def test_model_allow_list_globs_403(env: Env, mocks: MockUpstreams) -> None:
    _kid, secret = env.admin.create_key(models="gpt-4.1*,claude-sonnet-*")
    assert _ask(env.oai(secret), model="gpt-4.1-mini").choices[0].message.content == "echo: hi"
    assert _ask_claude(env.claude(secret)).content[0].text == "echo: hi"
    with pytest.raises(openai.PermissionDeniedError) as oe:
        _ask(env.oai(secret), model="gpt-4o")
    assert oe.value.status_code == 403 and oe.value.code == "model_not_allowed"
    with pytest.raises(anthropic.PermissionDeniedError) as ae:
        _ask_claude(env.claude(secret), model="claude-opus-4-20250514")
    assert ae.value.body["error"]["type"] == "permission_error"  # type: ignore[index]
    assert len(mocks.requests("openai")) == 1 and len(mocks.requests("anthropic")) == 1


# -- credit ----------------------------------------------------------------------------------------------


def test_no_credit_is_429_insufficient_quota_in_both_formats(env: Env, mocks: MockUpstreams) -> None:
    _kid, secret = env.admin.create_key(credit=0)
    with pytest.raises(openai.RateLimitError) as oe:
        _ask(env.oai(secret))
    assert oe.value.code == "insufficient_quota"
    with pytest.raises(anthropic.RateLimitError) as ae:
        _ask_claude(env.claude(secret))
    assert ae.value.status_code == 429
    assert mocks.requests("openai") == []


def test_credit_runs_out_and_balance_is_charged_exactly(env: Env, mocks: MockUpstreams) -> None:
    per_call = (12 * 2.0 + 7 * 8.0) / 1e6  # the mock's default usage on gpt-4.1
    kid, secret = env.admin.create_key(credit=per_call * 2.5)
    client = env.oai(secret)
    for _ in range(2):  # sequential: each admitted while what is left covers its worst case (5 in + 10 out)
        _ask(client, max_tokens=10)
    with pytest.raises(openai.RateLimitError) as oe:
        _ask(client, max_tokens=10)  # 0.5 calls left: less than the 90e-6 the call may cost
    assert oe.value.code == "insufficient_quota"
    records = env.admin.wait_usage(2, key=kid)
    key = env.admin.key(kid)
    assert key["spent"] == pytest.approx(per_call * 2, abs=1e-12)
    assert key["balance"] == pytest.approx(per_call * 0.5, abs=1e-12)  # never below zero
    assert len(records) == 2 and sum(r["cost"] for r in records) == pytest.approx(key["spent"], abs=1e-12)


# -- rate limits -----------------------------------------------------------------------------------------


def test_rpm_limit_openai_headers_and_retry_after(env: Env) -> None:
    _kid, secret = env.admin.create_key(rpm=2, tpm=100_000)
    client = env.oai(secret)
    raw = client.chat.completions.with_raw_response.create(model=GPT, messages=[{"role": "user", "content": "hi"}])
    h = raw.headers
    assert h["x-ratelimit-limit-requests"] == "2" and h["x-ratelimit-remaining-requests"] == "1"
    assert h["x-ratelimit-limit-tokens"] == "100000"
    assert int(h["x-ratelimit-remaining-tokens"]) < 100_000
    assert h["x-ratelimit-reset-requests"].endswith("s")
    _ask(client)
    with pytest.raises(openai.RateLimitError) as oe:
        _ask(client)
    err = oe.value
    assert err.code == "rate_limit_exceeded"
    assert 1 <= int(err.response.headers["retry-after"]) <= 60
    assert err.response.headers["x-ratelimit-remaining-requests"] == "0"


def test_rpm_limit_anthropic_headers(env: Env) -> None:
    _kid, secret = env.admin.create_key(rpm=1, tpm=50_000)
    client = env.claude(secret)
    raw = client.messages.with_raw_response.create(
        model=CLAUDE, max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    )
    h = raw.headers
    assert h["anthropic-ratelimit-requests-limit"] == "1"
    assert h["anthropic-ratelimit-requests-remaining"] == "0"
    assert h["anthropic-ratelimit-tokens-limit"] == "50000"
    datetime.fromisoformat(h["anthropic-ratelimit-requests-reset"].replace("Z", "+00:00"))
    assert "x-ratelimit-limit-requests" not in h
    with pytest.raises(anthropic.RateLimitError) as ae:
        _ask_claude(client)
    assert ae.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert int(ae.value.response.headers["retry-after"]) >= 1
    assert ae.value.response.headers["anthropic-ratelimit-requests-remaining"] == "0"


def test_tpm_limit(env: Env) -> None:
    kid, secret = env.admin.create_key(tpm=300)
    client = env.oai(secret)
    # Each call counts its estimate, then the true 19 tokens once settled; a usage record is written after
    # the correction, so its presence says the count is final.
    _ask(client, max_tokens=200)
    env.admin.wait_usage(1, key=kid)
    _ask(client, max_tokens=200)
    env.admin.wait_usage(2, key=kid)
    with pytest.raises(openai.RateLimitError) as oe:
        _ask(client, max_tokens=290)
    assert oe.value.code == "rate_limit_exceeded"
    assert "tokens per minute" in oe.value.message


# -- exact costs -----------------------------------------------------------------------------------------


def test_plain_call_cost_in_body_header_record_and_balance(env: Env) -> None:
    kid, secret = env.admin.create_key(credit=1.0)
    raw = env.oai(secret).chat.completions.with_raw_response.create(
        model=GPT, messages=[{"role": "user", "content": "hi"}]
    )
    resp = raw.parse()
    expected = (12 * 2.0 + 7 * 8.0) / 1e6
    assert resp.usage is not None and resp.usage.model_extra is not None
    assert resp.usage.model_extra["cost"] == pytest.approx(expected, abs=1e-15)
    assert float(raw.headers["x-omnirelay-cost"]) == pytest.approx(expected, abs=1e-15)
    rec = _record(env, kid, raw.headers["x-request-id"])
    assert rec["key_id"] == kid and rec["model_requested"] == GPT and rec["provider"] == "openai"
    assert (rec["input_tokens"], rec["output_tokens"], rec["status"]) == (12, 7, 200)
    assert rec["cost"] == pytest.approx(expected, abs=1e-15)
    assert rec["latency_ms"] > 0 and rec["ttft_ms"] is not None
    assert env.admin.key(kid)["balance"] == pytest.approx(1.0 - expected, abs=1e-12)


def test_openai_cached_input_cost(env: Env, mocks: MockUpstreams) -> None:
    kid, secret = env.admin.create_key()
    mocks.push("openai", ScriptedReply(usage=ScriptedUsage(input=1000, cached=800, output=50)))
    raw = env.oai(secret).chat.completions.with_raw_response.create(
        model=GPT, messages=[{"role": "user", "content": "hi"}]
    )
    resp = raw.parse()
    assert resp.usage is not None and resp.usage.prompt_tokens == 1000
    assert resp.usage.prompt_tokens_details is not None and resp.usage.prompt_tokens_details.cached_tokens == 800
    expected = (200 * 2.0 + 800 * 0.5 + 50 * 8.0) / 1e6
    assert float(raw.headers["x-omnirelay-cost"]) == pytest.approx(expected, abs=1e-15)
    rec = _record(env, kid, raw.headers["x-request-id"])
    assert (rec["input_tokens"], rec["cached_tokens"]) == (1000, 800)
    assert rec["cost"] == pytest.approx(expected, abs=1e-15)


def test_anthropic_cache_read_and_write_cost(env: Env, mocks: MockUpstreams) -> None:
    kid, secret = env.admin.create_key()
    # Canonical totals: 1000 prompt tokens of which 600 cache reads and 300 cache writes; Anthropic reports
    # input_tokens=100 (outside the cache) with the two cache fields beside it.
    mocks.push("anthropic", ScriptedReply(usage=ScriptedUsage(input=1000, cached=600, cache_write=300, output=40)))
    raw = env.claude(secret).messages.with_raw_response.create(
        model=CLAUDE, max_tokens=100, messages=[{"role": "user", "content": "hi"}]
    )
    msg = raw.parse()
    assert msg.usage.input_tokens == 100
    assert msg.usage.cache_read_input_tokens == 600 and msg.usage.cache_creation_input_tokens == 300
    expected = (100 * 3.0 + 600 * 0.3 + 300 * 3.75 + 40 * 15.0) / 1e6
    assert float(raw.headers["x-omnirelay-cost"]) == pytest.approx(expected, abs=1e-15)
    rec = _record(env, kid, raw.headers["x-request-id"])
    assert (rec["input_tokens"], rec["cached_tokens"], rec["cache_write_tokens"]) == (1000, 600, 300)
    assert rec["cost"] == pytest.approx(expected, abs=1e-15)


def test_reasoning_tokens_are_billed_as_output(env: Env, mocks: MockUpstreams) -> None:
    kid, secret = env.admin.create_key()
    mocks.push(
        "openai",
        ScriptedReply(reasoning="thinking hard", usage=ScriptedUsage(input=40, cached=10, output=500, reasoning=420)),
    )
    raw = env.oai(secret).chat.completions.with_raw_response.create(
        model="deepseek-reasoner", messages=[{"role": "user", "content": "hi"}]
    )
    expected = (30 * 0.55 + 10 * 0.14 + 500 * 2.19) / 1e6
    assert float(raw.headers["x-omnirelay-cost"]) == pytest.approx(expected, abs=1e-15)
    rec = _record(env, kid, raw.headers["x-request-id"])
    assert (rec["output_tokens"], rec["reasoning_tokens"]) == (500, 420)
    assert rec["cost"] == pytest.approx(expected, abs=1e-15)


def test_stream_cut_off_midway_is_charged_for_what_was_produced(env: Env, mocks: MockUpstreams) -> None:
    kid, secret = env.admin.create_key(credit=1.0)
    text = "abcdefghij" * 20  # 200 characters in 10 chunks; the upstream dies after 4 events
    mocks.push("openai", ScriptedReply(text=text, chunks=10, truncate_after_chunks=4))
    got = ""
    with pytest.raises(openai.APIError):
        stream = env.oai(secret).chat.completions.create(
            model=GPT, messages=[{"role": "user", "content": "hi"}], stream=True
        )
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                got += chunk.choices[0].delta.content
    assert 0 < len(got) < len(text)
    records = env.admin.wait_usage(1, key=kid)
    assert len(records) == 1
    rec = records[0]
    assert rec["status"] != 200 and rec["stream"] is True
    assert 0 < rec["output_tokens"] < 50  # estimated from the text produced (4 chars per token)
    expected = (rec["input_tokens"] * 2.0 + rec["output_tokens"] * 8.0) / 1e6
    assert rec["cost"] == pytest.approx(expected, abs=1e-15) and rec["cost"] > 0
    assert env.admin.key(kid)["spent"] == pytest.approx(rec["cost"], abs=1e-15)


def test_streamed_call_cost_matches_final_usage(env: Env) -> None:
    kid, secret = env.admin.create_key()
    stream = env.oai(secret).chat.completions.create(
        model=GPT, messages=[{"role": "user", "content": "hi"}], stream=True, stream_options={"include_usage": True}
    )
    usage = [c.usage for c in stream if c.usage is not None]
    assert usage and usage[-1].model_extra is not None
    cost = usage[-1].model_extra["cost"]
    records = env.admin.wait_usage(1, key=kid)
    assert len(records) == 1 and records[0]["cost"] == pytest.approx(cost, abs=1e-15)


# -- usage records and the admin API ---------------------------------------------------------------------


def test_every_answered_request_has_one_record_with_filters_and_csv(env: Env, mocks: MockUpstreams) -> None:
    kid, secret = env.admin.create_key()
    start = time.time() - 1
    ids = []
    for model in (GPT, "gpt-4.1-mini", GPT):
        ids.append(
            env.oai(secret)
            .chat.completions.with_raw_response.create(model=model, messages=[{"role": "user", "content": "hi"}])
            .headers["x-request-id"]
        )
    mocks.push("openai", ScriptedReply(error_status=400))
    with pytest.raises(openai.APIStatusError):
        _ask(env.oai(secret), model="gpt-4.1-nano")
    rows = env.admin.wait_usage(4, key=kid, since=str(start))
    assert {r["request_id"] for r in rows} >= set(ids) and len(rows) == 4
    assert sorted(r["status"] for r in rows) == [200, 200, 200, 400]
    assert len(env.admin.usage(key=kid, model=GPT)) == 2
    assert env.admin.usage(key=kid, until=str(start)) == []
    csv_text = env.admin.http.get("/admin/usage", params={"key": kid, "format": "csv"}).text
    lines = csv_text.strip().splitlines()
    assert lines[0].startswith("request_id,created_at,key_id") and lines[0].endswith(",cost")
    assert len(lines) == 5
    summary = env.admin.http.get("/admin/usage/summary", params={"key": kid, "by": "model"}).json()["data"]
    by_model = {s["model_requested"]: s for s in summary}
    assert by_model[GPT]["requests"] == 2 and by_model[GPT]["input_tokens"] == 24


def test_admin_api_crud_and_auth(env: Env) -> None:
    assert httpx.get(env.gw.url + "/admin/keys").status_code == 401
    bad = httpx.get(env.gw.url + "/admin/keys", headers={"authorization": "Bearer nope"})
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "invalid_api_key"
    env.admin.create_key()  # another key: deleting the last one would open the gateway, not reject the secret
    kid, secret = env.admin.create_key(name="crud", credit=5, models=["gpt-*"], rpm=10, expires_at="2099-01-01")
    listed = env.admin.http.get("/admin/keys").json()["data"]
    mine = next(k for k in listed if k["id"] == kid)
    assert mine["name"] == "crud" and mine["credit"] == 5 and mine["models"] == ["gpt-*"] and mine["rpm"] == 10
    assert "secret_hash" not in mine and secret not in str(listed)
    assert mine["expires_at"] == datetime.fromisoformat("2099-01-01T00:00:00+00:00").timestamp()
    updated = env.admin.patch(kid, name="crud2", credit=None, rpm=None, models=[])
    assert (updated["name"], updated["credit"], updated["rpm"], updated["models"]) == ("crud2", None, None, [])
    bad_field = env.admin.http.patch(f"/admin/keys/{kid}", json={"rpm": -1})
    assert bad_field.status_code == 400 and bad_field.json()["error"]["param"] == "rpm"
    assert env.admin.http.delete(f"/admin/keys/{kid}").json() == {"id": kid, "deleted": True}
    assert env.admin.http.get(f"/admin/keys/{kid}").status_code == 404
    with pytest.raises(openai.AuthenticationError):
        _ask(env.oai(secret))
    log = env.gw.log_path.read_text(errors="replace")  # the whole log, not the tail gw.log() shows
    assert ADMIN_KEY not in log and secret not in log
