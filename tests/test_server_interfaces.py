"""The same behaviour over both server interfaces: granian's RSGI (the default) and plain ASGI
(``OMNIRELAY_INTERFACE=asgi``). Each front end implements the request ``Exchange`` its own way: body limits,
complete replies, streams, and a client leaving mid-stream must come out the same."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.gateway import Gateway
from tests.mocks.faults import Fault, FaultServer
from tests.polling import wait_until
from tests.routing_support import ADMIN_KEY, admin_get, base_config, channel, task_count, usage_rows

LIMIT = 64 * 1024


@pytest.fixture(scope="module", params=["rsgi", "asgi"])
def gw(
    request: pytest.FixtureRequest, faults: FaultServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    models = {
        "plain": {"channels": [channel("ok")]},
        "stalls": {"channels": [channel("stall", timeouts={"first_byte": 30.0})]},
        "text-embedding-stalls": {
            "channels": [channel("stall", "text-embedding-3-small", timeouts={"first_byte": 30.0})]
        },
        "gpt-image-stalls": {"channels": [channel("stall", "gpt-image-1", timeouts={"first_byte": 30.0})]},
    }
    cfg = base_config(faults, ["ok", "stall"], models)
    cfg["server"]["max_body_bytes"] = LIMIT
    g = Gateway(cfg, tmp_path_factory.mktemp(f"iface-{request.param}"), env={"OMNIRELAY_INTERFACE": request.param})
    g.start()
    yield g
    g.stop()


def test_complete_and_stream_in_both_formats(gw: Gateway) -> None:
    oai = openai.OpenAI(base_url=gw.url + "/v1", api_key=ADMIN_KEY, max_retries=0, timeout=20)
    raw = oai.chat.completions.with_raw_response.create(model="plain", messages=[{"role": "user", "content": "one"}])
    assert raw.parse().choices[0].message.content == "from ok: echo one"
    assert raw.headers["x-omnirelay-channel"] == "ok/gpt-4.1-mini"
    assert raw.headers["content-type"] == "application/json"
    with oai.chat.completions.with_streaming_response.create(
        model="plain", messages=[{"role": "user", "content": "two"}], stream=True
    ) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert resp.headers["cache-control"] == "no-cache"
        text = "".join(c.choices[0].delta.content or "" for c in resp.parse() if c.choices)
    assert text == "from ok: echo two"
    claude = anthropic.Anthropic(base_url=gw.url, api_key=ADMIN_KEY, max_retries=0, timeout=20)
    with claude.messages.stream(
        model="plain", max_tokens=50, messages=[{"role": "user", "content": "three"}]
    ) as stream:
        assert stream.get_final_text() == "from ok: echo three"


def test_body_limits_with_and_without_content_length(gw: Gateway) -> None:
    url = gw.url + "/v1/chat/completions"
    headers = {"authorization": f"Bearer {ADMIN_KEY}", "content-type": "application/json"}
    big = b'{"model": "plain", "messages": [{"role": "user", "content": "' + b"x" * (2 * LIMIT) + b'"}]}'
    assert httpx.post(url, content=big, headers=headers).status_code == 413

    def pieces(data: bytes) -> Iterator[bytes]:  # no Content-Length: chunked transfer encoding
        for i in range(0, len(data), 4096):
            yield data[i : i + 4096]

    r = httpx.post(url, content=pieces(big), headers=headers)
    assert r.status_code == 413
    assert "exceeds the limit" in r.json()["error"]["message"]
    small = b'{"model": "plain", "messages": [{"role": "user", "content": "chunked"}]}'
    r = httpx.post(url, content=pieces(small), headers=headers)
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"]["content"] == "from ok: echo chunked"


def test_client_leaving_mid_stream_ends_the_request(gw: Gateway, faults: FaultServer) -> None:
    """The upstream sends one chunk and stalls; the client reads it and leaves. The gateway must notice and
    drop the request (no task left waiting on the stalled upstream), well before its 30 s timeout."""
    faults.set("stall", Fault(mode="hang_mid", after_chunks=1))
    before = task_count(gw)
    body = {"model": "stalls", "messages": [{"role": "user", "content": "x"}], "stream": True}
    headers = {"authorization": f"Bearer {ADMIN_KEY}"}
    with httpx.stream("POST", gw.url + "/v1/chat/completions", json=body, headers=headers, timeout=20) as r:
        assert r.status_code == 200
        request_id = r.headers["x-request-id"]
        first = next(r.iter_raw())
        assert first.startswith(b"data: ")
    wait_until(lambda: task_count(gw) <= before, 10, "the request's tasks to end")
    # Recorded as the client's leaving, within the wait above: the request ended because the gateway saw the
    # client go, not at the upstream's timeout. (The task count alone can dip below ``before`` when a background
    # task counted then has ended since.)
    (row,) = usage_rows(gw, request_id)
    assert row["status"] == 499 and row["error"] == "client closed the connection"
    faults.reset()


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"model": "stalls", "messages": [{"role": "user", "content": "x"}], "stream": True}),
        ("/v1/chat/completions", {"model": "stalls", "messages": [{"role": "user", "content": "x"}]}),
        ("/v1/embeddings", {"model": "text-embedding-stalls", "input": "x"}),
        ("/v1/images/generations", {"model": "gpt-image-stalls", "prompt": "x"}),
    ],
    ids=["stream", "complete", "embeddings", "images"],
)
def test_client_leaving_before_the_upstream_answers_ends_the_call(
    gw: Gateway, faults: FaultServer, path: str, body: dict[str, object]
) -> None:
    """The upstream takes the request and says nothing (a model thinking before its first byte); the client gives
    up. The gateway must drop the upstream call and record the request as the client's leaving, well before the
    channel's 30 s first-byte timeout."""
    faults.set("stall", Fault(mode="hang_headers"))
    hits = faults.hits("stall")
    headers = {"authorization": f"Bearer {ADMIN_KEY}"}
    with pytest.raises(httpx.ReadTimeout):  # the client leaving: it closes the connection
        httpx.post(gw.url + path, json=body, headers=headers, timeout=httpx.Timeout(10.0, read=1.0))
    assert faults.hits("stall") == hits + 1  # the call had reached the upstream when the client left

    def recorded() -> list[dict[str, Any]]:
        rows = admin_get(gw, "/admin/usage").json()["data"]
        return [r for r in rows if r["model_requested"] == body["model"] and r["status"] == 499]

    (row, *_older) = wait_until(recorded, 10, "the request recorded as the client's leaving")
    assert row["error"] == "client closed the connection"
    wait_until(lambda: faults.open_handlers == 0, 10, "the upstream call to be dropped")
    faults.reset()
