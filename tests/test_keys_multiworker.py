"""A key issued on one worker (or replica) works at once on every other: a worker that does not know a key id
looks it up in the store before refusing it (``KeyGate.look_up``), instead of answering 401 until its next key
refresh. The refresh interval here is a minute, so only the lookup can let the new key in."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from tests.gateway import Gateway
from tests.mocks.server import MockUpstreams
from tests.state_helpers import BACKENDS, Admin, backend, start_gateway, state_config


@pytest.fixture(scope="module", params=BACKENDS)
def gateway_2w(
    request: pytest.FixtureRequest, mocks: MockUpstreams, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    workdir = tmp_path_factory.mktemp(f"multiworker-{request.param}")
    with backend(request.param, workdir) as b:
        cfg = state_config((mocks.url("openai"), mocks.url("anthropic"), mocks.url("gemini")), key_refresh_s=60.0)
        # Closed from the start: an open gateway (no key issued yet) would let any token in on the worker that has
        # not refreshed since the first key was issued.
        cfg["server"] = {**cfg["server"], "workers": 2, "open": False}
        gw = start_gateway(cfg, workdir, b)
        try:
            yield gw
        finally:
            gw.stop()


def test_a_new_key_works_at_once_on_every_worker(gateway_2w: Gateway) -> None:
    admin = Admin(gateway_2w.url)
    for _ in range(3):
        _kid, secret = admin.create_key()
        # Each call on a connection of its own, so both workers get some (granian spreads accepted connections).
        for i in range(8):
            with openai.OpenAI(base_url=gateway_2w.url + "/v1", api_key=secret, max_retries=0, timeout=30) as client:
                reply = client.chat.completions.create(
                    model="gpt-4.1", messages=[{"role": "user", "content": f"hi {i}"}]
                )
            assert reply.choices[0].message.content


def test_made_up_key_ids_are_still_401(gateway_2w: Gateway) -> None:
    for i in range(60):  # past the per-second lookup budget: refusals stay 401, never a 500 or a hang
        r = httpx.post(
            gateway_2w.url + "/v1/chat/completions",
            headers={"authorization": f"Bearer sk-or-{i:012d}-{'x' * 43}"},
            json={"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]},
            timeout=30,
        )
        assert r.status_code == 401, r.text
        assert r.json()["error"]["code"] == "invalid_api_key"


def test_the_first_key_closes_every_worker_of_an_open_gateway_at_once(
    mocks: MockUpstreams, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """No key issued and no master key: the gateway starts open. The first key is issued through one worker; the
    other, which has not refreshed (a minute away), must not serve that key's requests as an open gateway's
    (unattributed, uncharged): each of them is recorded under the key."""
    workdir = tmp_path_factory.mktemp("multiworker-open")
    with backend("sqlite", workdir) as b:
        cfg = state_config((mocks.url("openai"), mocks.url("anthropic"), mocks.url("gemini")), key_refresh_s=60.0)
        cfg["server"] = {**cfg["server"], "workers": 2}
        gw = start_gateway(cfg, workdir, b)
        try:
            admin = Admin(gw.url)
            kid, secret = admin.create_key()

            def one(i: int) -> None:  # connections of their own, 4 at a time: both workers get some
                with openai.OpenAI(base_url=gw.url + "/v1", api_key=secret, max_retries=0, timeout=30) as client:
                    client.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": f"hi {i}"}])

            with ThreadPoolExecutor(4) as pool:
                list(pool.map(one, range(24)))
            rows = admin.wait_usage(24)
            assert len(rows) == 24 and all(r["key_id"] == kid for r in rows), [r["key_id"] for r in rows]
        finally:
            gw.stop()
