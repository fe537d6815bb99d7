"""Two gateway replicas on one PostgreSQL database and one Redis: a wallet's reservations are shared (a request
in flight on one replica holds the wallet's money on the other), and a top-up made through one replica is seen
by the other through its database-backed refresh."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.console_support import ADMIN_EMAIL, ADMIN_PASSWORD, MEMBER_PASSWORD, Console
from tests.gateway import Gateway
from tests.mocks.script import ScriptedReply
from tests.mocks.server import MockUpstreams
from tests.polling import wait_until
from tests.state_helpers import backend, start_gateway, state_config

GPT = "gpt-4.1"


@pytest.fixture(scope="module")
def replicas(mocks: MockUpstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, Gateway]]:
    workdir = tmp_path_factory.mktemp("console-replicas")
    with backend("postgres", workdir) as b:
        b.env.update({"OMNIRELAY_ADMIN_EMAIL": ADMIN_EMAIL, "OMNIRELAY_ADMIN_PASSWORD": ADMIN_PASSWORD})
        cfg = state_config((mocks.url("openai"), mocks.url("anthropic"), mocks.url("gemini")))
        first = start_gateway(cfg, workdir / "a", b)
        second = start_gateway(cfg, workdir / "b", b)
        try:
            yield first, second
        finally:
            first.stop()
            second.stop()


def _member(url: str, usd: float) -> tuple[Console, Console, dict[str, Any]]:
    admin = Console(url)
    admin.ok(admin.login(ADMIN_EMAIL, ADMIN_PASSWORD))
    email = f"replica-{threading.get_ident()}-{id(admin)}@example.com"
    user = admin.ok(admin.post("/admin/users", {"email": email, "password": MEMBER_PASSWORD}), 201)
    if usd:
        admin.ok(admin.post(f"/admin/users/{user['id']}/topup", {"amount_usd": usd, "reason": "test"}))
    member = Console(url)
    member.ok(member.login(email, MEMBER_PASSWORD))
    return admin, member, user


def _client(gw: Gateway, secret: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=secret, max_retries=0, timeout=30)


def _status(gw: Gateway, secret: str) -> int:
    try:
        _client(gw, secret).chat.completions.create(
            model=GPT, messages=[{"role": "user", "content": "hi"}], max_tokens=100
        )
    except openai.APIStatusError as exc:
        return exc.status_code
    return 200


def test_a_request_in_flight_on_one_replica_holds_the_wallet_on_the_other(
    replicas: tuple[Gateway, Gateway], mocks: MockUpstreams
) -> None:
    a, b = replicas
    # Room for one request's worst case (100 output tokens at $8/M plus the input), not for two at once.
    _admin, member, _user = _member(a.url, 0.0012)
    secret = member.ok(member.post("/keys", {"name": "shared"}), 201)["secret"]
    wait_until(lambda: _status(b, secret) == 200, what="replica b knows the key")
    mocks.push("openai", ScriptedReply(delay_s=2.0))
    seen = len(mocks.requests("openai"))
    slow = threading.Thread(target=_status, args=(a, secret))
    slow.start()
    wait_until(lambda: len(mocks.requests("openai")) > seen, what="the slow request upstream")
    try:
        with pytest.raises(openai.RateLimitError) as err:
            _client(b, secret).chat.completions.create(
                model=GPT, messages=[{"role": "user", "content": "hi"}], max_tokens=100
            )
        assert err.value.code == "insufficient_quota"
    finally:
        slow.join()
    assert _status(b, secret) == 200  # the reservation is released: the wallet covers one again


def test_a_top_up_on_one_replica_opens_the_wallet_on_the_other(replicas: tuple[Gateway, Gateway]) -> None:
    a, b = replicas
    admin, member, user = _member(a.url, 0.0)
    secret = member.ok(member.post("/keys", {"name": "empty"}), 201)["secret"]
    wait_until(lambda: _status(b, secret) == 429, what="replica b refuses the empty wallet")
    admin.ok(admin.post(f"/admin/users/{user['id']}/topup", {"amount_usd": 1, "reason": "test"}))
    wait_until(lambda: _status(b, secret) == 200, what="replica b sees the top-up")
    on_b = Console(b.url)
    on_b.ok(on_b.login(user["email"], MEMBER_PASSWORD))  # sessions live in the database: any replica serves them
    assert on_b.ok(on_b.get("/wallet"))["balance_usd"] < 1.0
