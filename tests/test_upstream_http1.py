"""The upstream HTTP/1.1 client at the byte level, through the running gateway: framing and encodings it must
read, keep-alive reuse, the stale pooled connection, and clean errors for what is not HTTP."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.gateway import Gateway
from tests.mocks.raw_http import TEXT, RawUpstream

MODES = [
    "ok",
    "gzip-chunked",
    "until-close",
    "interim",
    "drop-second",
    "conn-close",
    "garbage",
    "cut-chunked",
    "trailing-junk",
]


@pytest.fixture(scope="module")
def raw() -> Iterator[RawUpstream]:
    server = RawUpstream().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gw(raw: RawUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    upstreams: list[dict[str, Any]] = [
        {
            "name": mode,
            "provider": "openai",
            "preset": "openai",
            "base_url": raw.base_url(mode),
            "api_key": "sk-raw-upstream-secret",
            "models": [f"m-{mode}"],
        }
        for mode in MODES
    ]
    upstreams.append(
        {
            "name": "bad-header",
            "provider": "openai",
            "preset": "openai",
            "base_url": raw.base_url("ok"),
            "api_key": "sk-raw-upstream-secret",
            "headers": {"x-team": "a\r\nx-injected: 1"},
            "models": ["m-bad-header"],
        }
    )
    cfg = {
        "server": {"master_key": "sk-master"},
        "upstreams": upstreams,
        "routing": {"retry": {"max_attempts": 1}},
    }
    g = Gateway(cfg, tmp_path_factory.mktemp("http1")).start()
    yield g
    g.stop()


@pytest.fixture()
def oai(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-master", max_retries=0, timeout=20)


def _ask(oai: openai.OpenAI, model: str) -> tuple[str, Mapping[str, str]]:
    raw = oai.chat.completions.with_raw_response.create(model=model, messages=[{"role": "user", "content": "hi"}])
    return raw.parse().choices[0].message.content or "", raw.headers


def _stream(oai: openai.OpenAI, model: str) -> str:
    out = oai.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], stream=True)
    return "".join(c.choices[0].delta.content or "" for c in out if c.choices)


@pytest.mark.parametrize("mode", ["ok", "gzip-chunked", "until-close", "interim", "conn-close", "trailing-junk"])
def test_reply_framings_are_read_whole(oai: openai.OpenAI, mode: str) -> None:
    for _ in range(3):  # and the connection is left in a state the next request can use
        text, headers = _ask(oai, f"m-{mode}")
        assert text == TEXT
        assert headers["x-omnirelay-attempts"] == "1"
        assert _stream(oai, f"m-{mode}") == "raw upstream says hi"


def test_keep_alive_reuses_one_connection(oai: openai.OpenAI, raw: RawUpstream) -> None:
    before = raw.connections["ok"]
    for _ in range(10):
        assert _ask(oai, "m-ok")[0] == TEXT
    assert raw.connections["ok"] - before <= 1


def test_connection_close_is_honoured(oai: openai.OpenAI, raw: RawUpstream) -> None:
    before = raw.connections["conn-close"]
    for _ in range(4):
        assert _ask(oai, "m-conn-close")[0] == TEXT
    assert raw.connections["conn-close"] - before == 4


def test_stale_pooled_connection_is_replaced_without_a_failed_attempt(oai: openai.OpenAI, raw: RawUpstream) -> None:
    """The upstream closes each kept-alive connection as the second request arrives on it (its idle timeout
    racing our reuse): the client sends again on a fresh connection, invisibly to routing."""
    for _ in range(6):
        text, headers = _ask(oai, "m-drop-second")
        assert text == TEXT
        assert headers["x-omnirelay-attempts"] == "1"
    assert raw.connections["drop-second"] >= 3


def test_garbage_instead_of_http_is_a_clean_502(gw: Gateway) -> None:
    for stream in (False, True):
        r = httpx.post(
            gw.url + "/v1/chat/completions",
            headers={"authorization": "Bearer sk-master"},
            json={"model": "m-garbage", "messages": [{"role": "user", "content": "hi"}], "stream": stream},
            timeout=20,
        )
        assert r.status_code == 502
        err = r.json()["error"]
        assert "malformed HTTP reply" in err["message"]
        assert "sk-raw" not in r.text


def test_stream_cut_mid_chunk_ends_with_an_error(oai: openai.OpenAI) -> None:
    """Half the chunked framing, then the connection closes: content already sent stays, then an error."""
    with pytest.raises(openai.APIError) as info:
        _stream(oai, "m-cut-chunked")
    assert "closed the stream mid-way" in str(info.value) or "m-cut-chunked" in str(info.value)


def test_header_with_a_line_break_is_refused_before_sending(
    oai: openai.OpenAI, raw: RawUpstream, tmp_path: Path
) -> None:
    sent = len(raw.requests)
    with pytest.raises(openai.APIStatusError) as info:
        _ask(oai, "m-bad-header")
    assert info.value.status_code == 502
    assert "line break" in str(info.value)
    assert "sk-raw" not in str(info.value)
    assert not any(b"x-injected" in head for head in raw.requests[sent:])
