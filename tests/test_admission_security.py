"""What a key may call and what it is charged, attacked through the running gateway with real keys (admin API)
over the mocks: fallbacks and compound sub-calls the allow-list does not cover, an emptied key store, compound
requests and worst-case outputs that outrun the credit, image token counts, and model spellings without a price.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.gateway import Gateway
from tests.mocks.script import ScriptedReply, ScriptedUsage
from tests.mocks.server import MockUpstreams
from tests.state_helpers import BACKENDS, Admin, Backend, backend, start_gateway, state_config

GPT = "gpt-4.1"  # 2.00 in / 8.00 out per million; at most 32,768 output tokens
GPT_IN, GPT_OUT = 2.0 / 1e6, 8.0 / 1e6
Q = [{"role": "user", "content": "What is 6 * 7?"}]


def _urls(mocks: MockUpstreams) -> tuple[str, str, str]:
    return mocks.url("openai"), mocks.url("anthropic"), mocks.url("gemini")


def _config(mocks: MockUpstreams) -> dict[str, Any]:
    cfg = state_config(_urls(mocks))
    # One call per model and no breaker: a scripted failure moves straight on to the next model of the plan.
    cfg["routing"] = {"retry": {"max_attempts": 1}, "breaker": {"enabled": False}}
    cfg["models"] = {"gpt-4.1-nano": {"channels": [{"upstream": "mock-openai"}], "fallbacks": [GPT]}}
    return cfg


class Env:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.admin = Admin(gw.url)

    def oai(self, secret: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gw.url + "/v1", api_key=secret, max_retries=0, timeout=60)

    def post(self, secret: str | None, body: dict[str, Any]) -> httpx.Response:
        headers = {"authorization": f"Bearer {secret}"} if secret else {}
        return httpx.post(self.gw.url + "/v1/chat/completions", json=body, headers=headers, timeout=60)

    def wait_spent(self, kid: str, expected_records: int) -> dict[str, Any]:
        """The key once ``expected_records`` usage records of it are committed."""
        self.admin.wait_usage(expected_records, timeout=5.0, key=kid)
        return self.admin.key(kid)


@pytest.fixture(scope="module")
def env(mocks: MockUpstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    workdir = tmp_path_factory.mktemp("admission")
    with backend("sqlite", workdir) as b:
        gw = start_gateway(_config(mocks), workdir, b)
        try:
            yield Env(gw)
        finally:
            gw.stop()


def _models_called(mocks: MockUpstreams) -> list[str]:
    return [r.body["model"] for r in mocks.requests("openai")]


# -- 2. every model actually called is allowed for the key ----------------------------------------------


@pytest.mark.parametrize(
    "fallbacks",
    [{"models": [GPT]}, {"omnirelay": {"fallbacks": [GPT]}}],
    ids=["openrouter-models", "omnirelay-fallbacks"],
)
def test_request_fallback_the_key_may_not_call_is_skipped(
    env: Env, mocks: MockUpstreams, fallbacks: dict[str, Any]
) -> None:
    _kid, secret = env.admin.create_key(models=["gpt-4o-mini"])
    mocks.push("openai", ScriptedReply(error_status=500))  # the allowed model fails: the plan moves on
    r = env.post(secret, {"model": "gpt-4o-mini", "messages": Q, "max_tokens": 10, **fallbacks})
    assert r.status_code == 502, r.text
    assert _models_called(mocks) == ["gpt-4o-mini"]  # never gpt-4.1


def test_unknown_requested_model_with_a_forbidden_fallback_is_403(env: Env, mocks: MockUpstreams) -> None:
    _kid, secret = env.admin.create_key(models=["gpt-4o-mini", "ghost-*"])
    r = env.post(secret, {"model": "ghost-1", "models": [GPT], "messages": Q, "max_tokens": 10})
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] == "model_not_allowed"
    assert mocks.requests("openai") == []


def test_configured_fallback_the_key_may_not_call_is_skipped(env: Env, mocks: MockUpstreams) -> None:
    _kid, secret = env.admin.create_key(models=["gpt-4.1-nano"])  # its route falls back to gpt-4.1
    mocks.push("openai", ScriptedReply(error_status=500))
    r = env.post(secret, {"model": "gpt-4.1-nano", "messages": Q, "max_tokens": 10})
    assert r.status_code == 502, r.text
    assert _models_called(mocks) == ["gpt-4.1-nano"]


def test_an_allowed_fallback_is_still_used(env: Env, mocks: MockUpstreams) -> None:
    _kid, secret = env.admin.create_key(models=["gpt-4o-mini", "gpt-4.1-mini"])
    mocks.push("openai", ScriptedReply(error_status=500))
    body = {"model": "gpt-4o-mini", "models": [GPT, "gpt-4.1-mini"], "messages": Q, "max_tokens": 10}
    r = env.post(secret, body)
    assert r.status_code == 200, r.text
    assert r.headers["x-omnirelay-channel"] == "mock-openai/gpt-4.1-mini"
    assert _models_called(mocks) == ["gpt-4o-mini", "gpt-4.1-mini"]


def test_heavy_sub_calls_of_a_model_the_key_may_not_call_are_refused(env: Env, mocks: MockUpstreams) -> None:
    _kid, secret = env.admin.create_key(models=["gpt-4o-mini", "heavy:*"])
    body = {"model": f"heavy:{GPT}", "messages": Q, "max_tokens": 10, "omnirelay": {"agents": 2}}
    r = env.post(secret, body)
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] == "model_not_allowed"
    assert mocks.requests("openai") == []
    ok = env.post(secret, {**body, "model": "heavy:gpt-4o-mini"})  # a base it may call works
    assert ok.status_code == 200, ok.text
    assert set(_models_called(mocks)) == {"gpt-4o-mini"}


# -- 4. compound sub-calls reserve, settle and count like any request -------------------------------------

AGENT_REPLY = ScriptedReply(text="6 * 7 = 42.\nFinal answer: 42", usage=ScriptedUsage(input=12, output=4000))
AGENT_COST = 12 * GPT_IN + 4000 * GPT_OUT  # $0.032024: each agent's reservation (4,000 out) is about this


def test_heavy_with_eight_agents_stays_within_the_credit(env: Env, mocks: MockUpstreams) -> None:
    credit = 0.05
    kid, secret = env.admin.create_key(credit=credit)
    mocks.push("openai", *[AGENT_REPLY] * 8)
    body = {"model": f"heavy:{GPT}", "messages": Q, "max_tokens": 4000, "omnirelay": {"agents": 8}}
    r = env.post(secret, body)
    assert r.status_code == 200, r.text  # the one agent the credit covers answered
    assert len(mocks.requests("openai")) == 1
    key = env.wait_spent(kid, 1)
    assert key["spent"] == pytest.approx(AGENT_COST, abs=1e-12)
    assert key["spent"] <= credit and key["balance"] >= 0
    assert float(r.headers["x-omnirelay-cost"]) == pytest.approx(AGENT_COST, abs=1e-12)


@pytest.mark.parametrize("kind", BACKENDS)
def test_concurrent_heavy_calls_hold_the_credit(mocks: MockUpstreams, tmp_path: Path, kind: str) -> None:
    credit = 0.30
    with backend(kind, tmp_path) as b:
        gw = start_gateway(_config(mocks), tmp_path, b)
        try:
            env = Env(gw)
            kid, secret = env.admin.create_key(credit=credit)
            slow = ScriptedReply(text=AGENT_REPLY.text, usage=AGENT_REPLY.usage, delay_s=0.3)
            mocks.push("openai", *[slow] * 60)
            statuses = asyncio.run(_heavy_burst(gw, secret, 12))
            calls = len(mocks.requests("openai"))
            assert 1 <= calls <= int(credit / AGENT_COST), (calls, statuses)
            assert set(statuses) <= {200, 429}
            key = env.wait_spent(kid, len(statuses))  # every heavy call was admitted and is recorded
            assert key["spent"] == pytest.approx(calls * AGENT_COST, abs=1e-9)
            assert key["spent"] <= credit
        finally:
            gw.stop()


async def _heavy_burst(gw: Gateway, secret: str, n: int) -> list[int]:
    async with httpx.AsyncClient(base_url=gw.url, headers={"authorization": f"Bearer {secret}"}, timeout=60) as c:
        body = {"model": f"heavy:{GPT}", "messages": Q, "max_tokens": 4000, "omnirelay": {"agents": 4}}
        replies = await asyncio.gather(*(c.post("/v1/chat/completions", json=body) for _ in range(n)))
    return [r.status_code for r in replies]


def test_heavy_sub_calls_count_against_the_rpm(env: Env, mocks: MockUpstreams) -> None:
    _kid, secret = env.admin.create_key(rpm=3)
    mocks.push("openai", *[ScriptedReply(text="Final answer: 42")] * 4)
    r = env.post(secret, {"model": f"heavy:{GPT}", "messages": Q, "max_tokens": 10, "omnirelay": {"agents": 4}})
    assert r.status_code == 200, r.text
    assert len(mocks.requests("openai")) == 2  # the request itself, then two agents: three requests
    after = env.post(secret, {"model": GPT, "messages": Q, "max_tokens": 10})
    assert after.status_code == 429 and after.json()["error"]["code"] == "rate_limit_exceeded"


# -- 11. the reservation is the worst case, and what the credit cannot cover is refused -------------------


def test_max_tokens_the_credit_cannot_cover_is_429_before_the_upstream(env: Env, mocks: MockUpstreams) -> None:
    kid, secret = env.admin.create_key(credit=0.01)
    mocks.push("openai", ScriptedReply(usage=ScriptedUsage(output=30_000)))  # what the model may well produce
    r = env.post(secret, {"model": GPT, "messages": Q, "max_tokens": 30_000})
    assert r.status_code == 429, r.text
    assert r.json()["error"]["code"] == "insufficient_quota"
    assert mocks.requests("openai") == []
    assert env.admin.key(kid)["spent"] == 0


def test_without_max_tokens_the_models_maximum_is_reserved(env: Env, mocks: MockUpstreams) -> None:
    # 32,768 output tokens of gpt-4.1 cost $0.262: more than the key has, whatever state.reserve_output_tokens is.
    _kid, secret = env.admin.create_key(credit=0.1)
    mocks.push("openai", ScriptedReply(usage=ScriptedUsage(output=32_768)))
    r = env.post(secret, {"model": GPT, "messages": Q})
    assert r.status_code == 429, r.text
    assert mocks.requests("openai") == []
    _kid, rich = env.admin.create_key(credit=0.3)
    assert env.post(rich, {"model": GPT, "messages": Q}).status_code == 200


@pytest.mark.parametrize("kind", BACKENDS)
def test_concurrent_requests_never_spend_beyond_the_credit(mocks: MockUpstreams, tmp_path: Path, kind: str) -> None:
    credit, out = 0.30, 16_000  # each may cost $0.128: two fit, not three
    with backend(kind, tmp_path) as b:
        gw = start_gateway(_config(mocks), tmp_path, b)
        try:
            env = Env(gw)
            kid, secret = env.admin.create_key(credit=credit)
            mocks.push("openai", *[ScriptedReply(usage=ScriptedUsage(output=out), delay_s=0.3)] * 10)

            async def burst() -> list[int]:
                async with httpx.AsyncClient(
                    base_url=gw.url, headers={"authorization": f"Bearer {secret}"}, timeout=60
                ) as c:
                    body = {"model": GPT, "messages": Q, "max_tokens": out}
                    replies = await asyncio.gather(*(c.post("/v1/chat/completions", json=body) for _ in range(10)))
                return [r.status_code for r in replies]

            statuses = asyncio.run(burst())
            assert statuses.count(200) == 2 and statuses.count(429) == 8, statuses
            key = env.wait_spent(kid, 2)
            assert key["spent"] <= credit and key["balance"] >= 0
        finally:
            gw.stop()


def _png(width: int, height: int) -> str:
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + b"\x08\x06\x00\x00\x00"
    raw = b"\x89PNG\r\n\x1a\n" + (13).to_bytes(4, "big") + b"IHDR" + ihdr + b"\x00" * 4 + b"\x00" * 4000
    return base64.b64encode(raw).decode()


@pytest.mark.parametrize(
    ("url", "image_tokens"),
    [
        ("data:image/png;base64," + _png(16, 16), 255),  # one OpenAI tile
        ("data:image/png;base64," + _png(4000, 3000), 1600),  # Anthropic's count, above OpenAI's 765
        ("https://example.com/cat.png", 1600),  # size unknown: the most one image costs
    ],
    ids=["small", "large", "url"],
)
def test_image_tokens_come_from_the_images_size(env: Env, mocks: MockUpstreams, url: str, image_tokens: int) -> None:
    _kid, secret = env.admin.create_key(tpm=100_000)
    content = [{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": url}}]
    r = env.post(secret, {"model": GPT, "messages": [{"role": "user", "content": content}], "max_tokens": 10})
    assert r.status_code == 200, r.text
    # The estimate counted at admission: 4 per message + 4 for the text + the image + max_tokens.
    assert int(r.headers["x-ratelimit-remaining-tokens"]) == 100_000 - (4 + 4 + image_tokens + 10)


# -- 15. a spelling either resolves to a priced model or is refused --------------------------------------


@pytest.mark.parametrize(
    "model", ["gpt-4o-mini\u0000", "gpt-4o-mini ", "gpt-4o-mini.", "gpt-4o-mini:x", "gpt-4o-mini\n"]
)
def test_odd_spellings_are_not_routed_by_prefix(env: Env, mocks: MockUpstreams, model: str) -> None:
    _kid, secret = env.admin.create_key(credit=1.0, models=["gpt-4o-mini*"])
    r = env.post(secret, {"model": model, "messages": Q, "max_tokens": 10})
    assert r.status_code == 404, r.text
    assert r.json()["error"]["code"] == "model_not_found"
    assert mocks.requests("openai") == []


def test_an_unpriced_model_is_refused_to_a_key_with_credit(env: Env, mocks: MockUpstreams) -> None:
    _kid, secret = env.admin.create_key(credit=1.0, models=["gpt-4o-mini*"])
    r = env.post(secret, {"model": "gpt-4o-mini-x", "messages": Q, "max_tokens": 10})
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] == "model_not_priced"
    assert mocks.requests("openai") == []
    dated = env.post(secret, {"model": "gpt-4o-mini-2024-07-18", "messages": Q, "max_tokens": 10})
    assert dated.status_code == 200  # a dated snapshot has its base model's price
    assert float(dated.headers["x-omnirelay-cost"]) == pytest.approx(12 * 0.15e-6 + 7 * 0.6e-6, abs=1e-15)


def test_an_unpriced_model_without_credit_is_logged_loudly(env: Env, mocks: MockUpstreams) -> None:
    _kid, secret = env.admin.create_key(models=["gpt-4o-mini*"])
    r = env.post(secret, {"model": "gpt-4o-mini-unpriced", "messages": Q, "max_tokens": 10})
    assert r.status_code == 200, r.text
    assert r.headers["x-omnirelay-cost"] == "0"
    deadline = time.monotonic() + 5
    while "mock-openai/gpt-4o-mini-unpriced" not in env.gw.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    line = next(ln for ln in env.gw.log().splitlines() if "mock-openai/gpt-4o-mini-unpriced" in ln)
    assert "WARNING" in line and "no price" in line


# -- 3. deleting every key does not open the gateway -----------------------------------------------------


def _anonymous(gw: Gateway) -> int:
    body = {"model": GPT, "messages": Q, "max_tokens": 10}
    return httpx.post(gw.url + "/v1/chat/completions", json=body, timeout=30).status_code


def _start(mocks: MockUpstreams, workdir: Path, b: Backend, **server: Any) -> Gateway:
    cfg = _config(mocks)
    cfg["server"] = {**cfg.get("server", {}), **server}
    return start_gateway(cfg, workdir, b)


@pytest.mark.parametrize("kind", BACKENDS)
def test_deleting_every_key_keeps_the_gateway_closed(mocks: MockUpstreams, tmp_path: Path, kind: str) -> None:
    with backend(kind, tmp_path) as b:
        gw = _start(mocks, tmp_path, b)
        try:
            assert _anonymous(gw) == 200  # a store that never held a key: open (a laptop setup)
            admin = Admin(gw.url)
            kid, _secret = admin.create_key()
            assert _anonymous(gw) == 401
            assert admin.http.delete(f"/admin/keys/{kid}").status_code in (200, 204)
            assert admin.http.get("/admin/keys").json()["data"] == []
            assert _anonymous(gw) == 401  # revoking every key after a leak closes the gateway, not opens it
        finally:
            gw.stop()
        gw = _start(mocks, tmp_path, b)  # and it stays closed after a restart
        try:
            assert _anonymous(gw) == 401
        finally:
            gw.stop()


def test_server_open_decides_explicitly(mocks: MockUpstreams, tmp_path: Path) -> None:
    with backend("sqlite", tmp_path) as b:
        gw = _start(mocks, tmp_path / "closed", b, open=False)
        try:
            assert _anonymous(gw) == 401  # never held a key, but told to stay closed
        finally:
            gw.stop()
        gw = _start(mocks, tmp_path / "open", b, open=True)
        try:
            admin = Admin(gw.url)
            _kid, secret = admin.create_key(models=["gpt-4o-mini"])
            assert _anonymous(gw) == 200  # open although a key exists
            r = httpx.post(  # a valid key is still held to its allow-list
                gw.url + "/v1/chat/completions",
                json={"model": GPT, "messages": Q, "max_tokens": 10},
                headers={"authorization": f"Bearer {secret}"},
                timeout=30,
            )
            assert r.status_code == 403
        finally:
            gw.stop()
