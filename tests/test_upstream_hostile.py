"""A hostile upstream through the running gateway (tests/mocks/hostile_http.py): the upstream's API key echoed
in error bodies and mid-stream error events must reach no client, log line, usage record or channel view;
multi-megabyte bodies are read whole in one attempt; a line that never ends and a gzip bomb leave the worker's
memory bounded; JSON nested 100k deep is a 502; Retry-After is capped. Plus unit tests of the pure parts."""

from __future__ import annotations

import random
import string
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from omnirelay.core.errors import MAX_RETRY_AFTER_S, retry_after_header
from omnirelay.core.redact import REDACTED, Scrubber
from omnirelay.wire.sse import SSEDecoder, SSEEventTooLarge
from tests.gateway import Gateway
from tests.mocks.hostile_http import (
    BIG_TEXT_BYTES,
    GZIP_STREAM_EVENTS,
    GZIP_STREAM_PIECE,
    HostileUpstream,
    big_text,
)

ADMIN = "sk-hostile-admin-0000"
FAMILIES = ["openai", "anthropic", "gemini"]
_rng = random.Random(17)  # fixed keys: a chance 6-character match in a log cannot make the test flaky
_ALNUM = string.ascii_letters + string.digits
KEYS = {
    "openai": "".join(_rng.choice(_ALNUM) for _ in range(40)),  # not key-shaped: only knowing it finds it
    "anthropic": "sk-ant-api03-" + "".join(_rng.choice(_ALNUM) for _ in range(40)),
    "gemini": "AIza" + "".join(_rng.choice(_ALNUM) for _ in range(35)),
}
MODES = ["ok", "echo-401", "echo-400", "echo-stream", "big", "big-error", "deep", "retry-999999", "retry-nan"]
MODES += ["retry-inf"]


def fragments(key: str, n: int = 6) -> set[str]:
    return {key[i : i + n].lower() for i in range(len(key) - n + 1)}


def leaks(text: str) -> list[str]:
    """Every 6-character piece of any upstream key found in ``text`` (ignoring case)."""
    low = text.lower()
    return sorted(f for key in KEYS.values() for f in fragments(key) if f in low)


def upstreams(hostile: HostileUpstream, modes: list[str]) -> list[dict[str, Any]]:
    return [
        {
            "name": f"{mode}-{family}",
            "provider": family,
            **({"preset": "openai"} if family == "openai" else {}),
            "base_url": hostile.base_url(mode, family),
            "api_key": KEYS[family],
            "models": [f"{mode}-{family}"],
            "timeouts": {"connect": 5, "first_byte": 8, "total": 60},
        }
        for mode in modes
        for family in FAMILIES
    ]


def gateway_config(hostile: HostileUpstream, modes: list[str]) -> dict[str, Any]:
    return {
        "server": {"master_key": ADMIN},
        "upstreams": upstreams(hostile, modes),
        # The default three attempts stay: a reply that fails to be read shows up as three upstream requests.
        "routing": {"breaker": {"enabled": False}},
    }


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileUpstream]:
    server = HostileUpstream().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gw(hostile: HostileUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    g = Gateway(
        gateway_config(hostile, MODES), tmp_path_factory.mktemp("hostile"), env={"OMNIRELAY_LOG_LEVEL": "DEBUG"}
    )
    g.start()
    yield g
    g.stop()


def chat(gw: Gateway, model: str, stream: bool = False, protocol: str = "openai") -> httpx.Response:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    headers = {"authorization": f"Bearer {ADMIN}"}
    if protocol == "anthropic":
        body["max_tokens"] = 64
        headers["anthropic-version"] = "2023-06-01"
        return httpx.post(gw.url + "/v1/messages", json=body, headers=headers, timeout=120)
    return httpx.post(gw.url + "/v1/chat/completions", json=body, headers=headers, timeout=120)


def admin_get(gw: Gateway, path: str) -> httpx.Response:
    r = httpx.get(gw.url + path, headers={"authorization": f"Bearer {ADMIN}"}, timeout=30)
    assert r.status_code == 200, r.text
    return r


def response_text(r: httpx.Response) -> str:
    return "\n".join(f"{k}: {v}" for k, v in r.headers.items()) + "\n" + r.text


# -- the key echoed back ------------------------------------------------------------------------------------


def test_echoed_upstream_key_reaches_no_client_log_record_or_channel_view(gw: Gateway) -> None:
    seen: list[str] = []
    for family in FAMILIES:
        for protocol in ("openai", "anthropic"):
            r = chat(gw, f"echo-401-{family}", protocol=protocol)
            assert r.status_code == 502, r.text  # the gateway's own credentials were refused: not the caller's
            seen.append(response_text(r))
            r = chat(gw, f"echo-400-{family}", protocol=protocol)
            assert r.status_code == 400, r.text
            seen.append(response_text(r))
            # Usually the error event comes after text reached the client (a mid-stream error event); if the
            # gateway happened to read both at once, nothing was sent yet and it is a plain 502.
            r = chat(gw, f"echo-stream-{family}", stream=True, protocol=protocol)
            assert (r.status_code == 200 and "partial" in r.text and "error" in r.text) or r.status_code == 502
            seen.append(response_text(r))
    for text in seen:
        assert leaks(text) == [], text[:3000]
        assert REDACTED in text

    # Every record of those requests is in, with its (scrubbed) error.
    deadline = time.monotonic() + 20
    while True:
        rows = admin_get(gw, "/admin/usage?limit=1000").json()["data"]
        echoed = [row for row in rows if str(row.get("model_requested", "")).startswith("echo-")]
        if len(echoed) >= len(seen) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(echoed) >= len(seen)
    assert all(row["error"] for row in echoed)
    usage_json = admin_get(gw, "/admin/usage?limit=1000").text
    usage_csv = admin_get(gw, "/admin/usage?limit=1000&format=csv").text
    channels = admin_get(gw, "/admin/channels").text
    assert REDACTED in usage_json and REDACTED in usage_csv and REDACTED in channels
    for name, text in [("usage json", usage_json), ("usage csv", usage_csv), ("channels", channels)]:
        assert leaks(text) == [], name

    # The log at DEBUG, and every file the gateway wrote (database, journal) but the config that holds the keys.
    assert "DEBUG" in gw.log_path.read_text(errors="replace")
    for path in gw.workdir.rglob("*"):
        if path.is_file() and path != gw.config_path:
            assert leaks(path.read_bytes().decode("latin-1")) == [], path.name


# -- big bodies -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_three_mib_reply_is_read_whole_in_one_attempt(gw: Gateway, hostile: HostileUpstream, family: str) -> None:
    r = chat(gw, f"big-{family}")
    assert r.status_code == 200, r.text[:500]
    data = r.json()
    text = data["choices"][0]["message"]["content"]
    assert len(text) == BIG_TEXT_BYTES and text == big_text()
    assert r.headers["x-omnirelay-attempts"] == "1"
    assert hostile.requests[("big", family)] == 1


@pytest.mark.parametrize("family", FAMILIES)
def test_three_mib_error_body_is_a_proper_error_in_one_attempt(
    gw: Gateway, hostile: HostileUpstream, family: str
) -> None:
    r = chat(gw, f"big-error-{family}")
    assert r.status_code == 400, r.text[:500]
    message = r.json()["error"]["message"]
    assert "the quick brown fox" in message and len(message) < 10_000
    assert hostile.requests[("big-error", family)] == 1


# -- nesting, Retry-After -----------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_json_nested_100k_deep_is_a_502(gw: Gateway, family: str) -> None:
    for protocol in ("openai", "anthropic"):
        r = chat(gw, f"deep-{family}", protocol=protocol)
        assert r.status_code == 502, r.text[:500]
        error = r.json()["error"]
        assert "could not be parsed" in error["message"]
        if protocol == "anthropic":
            assert r.json()["type"] == "error" and error["type"] == "api_error"


@pytest.mark.parametrize("family", FAMILIES)
def test_upstream_retry_after_reaches_the_client_capped(gw: Gateway, family: str) -> None:
    r = chat(gw, f"retry-999999-{family}")
    assert r.status_code == 429, r.text
    assert 0 <= float(r.headers["retry-after"]) <= MAX_RETRY_AFTER_S
    for garbage in ("nan", "inf"):
        r = chat(gw, f"retry-{garbage}-{family}", protocol="anthropic")
        assert r.status_code == 429, r.text
        assert "retry-after" not in r.headers


# -- memory ---------------------------------------------------------------------------------------------------


def _group_memory_kib(pgid: int, field: str) -> int:
    """The largest ``field`` (VmRSS, VmHWM) of /proc/<pid>/status over the gateway's process group."""
    best = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[2]) != pgid:
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith(field + ":"):
                    best = max(best, int(line.split()[1]))
        except (OSError, ValueError, IndexError):
            continue
    return best


@pytest.fixture
def memory_gw(hostile: HostileUpstream, tmp_path: Path) -> Iterator[Gateway]:
    """A fresh gateway per memory test: its peak RSS says what this one attack cost."""
    g = Gateway(gateway_config(hostile, ["ok", "bomb", "endless", "gzip-stream"]), tmp_path).start()
    assert chat(g, "ok-openai").status_code == 200  # warm: lazy imports and first-request allocations
    assert chat(g, "ok-openai", stream=True).status_code == 200
    yield g
    g.stop()


def _peak_growth_mib(g: Gateway, before_kib: int) -> float:
    assert g.proc is not None
    return (_group_memory_kib(g.proc.pid, "VmHWM") - before_kib) / 1024


def test_gzip_bomb_is_a_clean_502_with_bounded_memory(memory_gw: Gateway, hostile: HostileUpstream) -> None:
    assert memory_gw.proc is not None
    before = _group_memory_kib(memory_gw.proc.pid, "VmRSS")
    r = chat(memory_gw, "bomb-openai")
    assert r.status_code == 502, r.text[:500]
    assert "too large" in r.json()["error"]["message"]
    assert hostile.requests[("bomb", "openai")] == 1  # not retried: it would be as large again
    growth = _peak_growth_mib(memory_gw, before)
    assert growth < 64, f"worker peak grew {growth:.0f} MiB on a 256 MiB bomb (limit: 32 MiB decoded)"


def test_endless_sse_line_ends_the_stream_with_an_error_and_bounded_memory(memory_gw: Gateway) -> None:
    assert memory_gw.proc is not None
    before = _group_memory_kib(memory_gw.proc.pid, "VmRSS")
    started = time.monotonic()
    r = chat(memory_gw, "endless-openai", stream=True)
    assert r.status_code == 200
    frames = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
    assert any('"start "' in f for f in frames)  # the valid event before the endless line got through
    error = msgspec.json.decode(frames[-2])["error"]  # then the error frame, then [DONE]
    assert "too large" in error["message"] and frames[-1] == "[DONE]"
    assert time.monotonic() - started < 30
    growth = _peak_growth_mib(memory_gw, before)
    assert growth < 32, f"worker peak grew {growth:.0f} MiB on an endless line (limit: 8 MiB an event)"

    r = chat(memory_gw, "endless-anthropic", stream=True, protocol="anthropic")
    assert "event: error" in r.text and "too large" in r.text


def test_streamed_gzip_is_inflated_as_the_client_reads(memory_gw: Gateway) -> None:
    """A gzip stream inflating to about 24 MiB arrives whole, and is inflated a megabyte at a time as the
    relay forwards it rather than all at once when its few compressed kilobytes arrive."""
    assert memory_gw.proc is not None
    before = _group_memory_kib(memory_gw.proc.pid, "VmRSS")
    text: list[str] = []
    with httpx.stream(
        "POST",
        memory_gw.url + "/v1/chat/completions",
        json={"model": "gzip-stream-openai", "messages": [{"role": "user", "content": "hi"}], "stream": True},
        headers={"authorization": f"Bearer {ADMIN}"},
        timeout=120,
    ) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: {"):
                chunk = msgspec.json.decode(line[6:])
                assert "error" not in chunk, chunk
                text.extend(c["delta"].get("content") or "" for c in chunk["choices"])
    assert "".join(text) == GZIP_STREAM_PIECE * GZIP_STREAM_EVENTS
    growth = _peak_growth_mib(memory_gw, before)
    assert growth < 32, f"worker peak grew {growth:.0f} MiB on a 24 MiB gzip stream"


# -- pure parts --------------------------------------------------------------------------------------------


def test_scrubber_leaves_no_fragment_of_a_secret() -> None:
    key = KEYS["openai"]
    s = Scrubber([key, None, "k"])  # too-short secrets are ignored rather than shredding the text
    text = f"bad key {key}! starts {key[:9]} ends {key[-7:]}, upper {key.upper()}, cut {key[:20]}"
    out = s.scrub(text)
    assert leaks(out) == [] and out.startswith("bad key [redacted]! starts [redacted] ends [redacted]")
    assert s.scrub("nothing secret here, mock failure k") == "nothing secret here, mock failure k"
    # Key-shaped tokens go whoever's they are.
    other = Scrubber([]).scrub(
        "keys sk-proj-abcdefghijklmnop1234 xai-abcdefghijklmnopqrstu AIzaSyA1234567890abcdefghij"
    )
    assert other == f"keys {REDACTED} {REDACTED} {REDACTED}"
    assert Scrubber([]).scrub("echoed Bearer abc123def456") == f"echoed {REDACTED}"
    assert Scrubber([]).scrub("Bearer authentication failed") == "Bearer authentication failed"
    assert Scrubber([]).scrub("task-abcdefghijklmnop failed") == "task-abcdefghijklmnop failed"
    assert s.scrub_bytes(b'{"m": "' + key.encode() + b'"}') == b'{"m": "[redacted]"}'
    assert len(s.scrub("x" * 100_000)) == 2000


def test_sse_decoder_bounds_an_unending_line_in_linear_time() -> None:
    dec = SSEDecoder(max_event_bytes=8 << 20)
    piece = b"x" * 4096
    started = time.perf_counter()
    dec.feed(b'data: {"a": "')
    with pytest.raises(SSEEventTooLarge):
        for _ in range(4096):  # 16 MiB in 4 KiB pieces: quadratic re-copying would move 16 GiB
            dec.feed(piece)
    assert time.perf_counter() - started < 2.0
    # Many data lines without the blank line that ends the event are bounded too.
    dec = SSEDecoder(max_event_bytes=1 << 16)
    with pytest.raises(SSEEventTooLarge):
        for _ in range(100):
            dec.feed(b"data: " + b"y" * 1000 + b"\n")
    # Events still decode across any split, CRLF included.
    dec = SSEDecoder()
    stream = b'event: a\r\ndata: {"x": 1}\r\n\r\ndata: two\r\n: comment\r\n\r\n'
    events = [e for i in range(len(stream)) for e in dec.feed(stream[i : i + 1])]
    assert [(e.event, e.data) for e in events] == [("a", '{"x": 1}'), (None, "two")]


def test_retry_after_header_is_capped_and_garbage_ignored() -> None:
    assert retry_after_header({"Retry-After": "999999"}) == MAX_RETRY_AFTER_S
    assert retry_after_header({"retry-after": "7"}) == 7.0
    assert retry_after_header({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    for garbage in ("nan", "inf", "-inf", "-5", "soon", "1e400", "9" * 400):
        assert retry_after_header({"retry-after": garbage}) is None, garbage
    assert retry_after_header({}) is None
