"""Server-side tools on their own: fetch's SSRF and size/type rules, the python sandbox's limits, and the HTTP
search adapters against local mocks of SearXNG, Tavily and Brave's documented JSON."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web

from omnirelay.tools.fetch import FetchRefused, address_allowed, fetch
from omnirelay.tools.python_sandbox import run_python
from omnirelay.tools.search.http import BraveBackend, SearxngBackend, TavilyBackend
from omnirelay.tools.settings import FetchSettings, PythonSettings

T = TypeVar("T")


def _serve(app: web.Application, body: Callable[[str], Awaitable[T]]) -> T:
    async def main() -> T:
        runner = web.AppRunner(app)
        await runner.setup()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        try:
            return await body(f"http://127.0.0.1:{port}")
        finally:
            await runner.cleanup()

    return asyncio.run(main())


def _pages() -> web.Application:
    async def page(request: web.Request) -> web.Response:
        return web.Response(
            text="<html><head><title>T</title><style>x{}</style></head><body><p>Hello <b>page</b></p></body></html>",
            content_type="text/html",
        )

    async def image(request: web.Request) -> web.Response:
        return web.Response(body=b"\x89PNG", content_type="image/png")

    async def big(request: web.Request) -> web.Response:
        return web.Response(text="x" * 5000, content_type="text/plain")

    async def hop(request: web.Request) -> web.Response:
        raise web.HTTPFound("http://169.254.169.254/latest/meta-data/")

    app = web.Application()
    app.router.add_get("/page", page)
    app.router.add_get("/image", image)
    app.router.add_get("/big", big)
    app.router.add_get("/hop", hop)
    return app


# -- fetch ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ip", ["127.0.0.1", "10.1.2.3", "192.168.0.1", "172.16.5.5", "169.254.169.254", "::1", "fe80::1", "100.64.0.1",
           "0.0.0.0", "::ffff:127.0.0.1"]
)  # fmt: skip
def test_private_addresses_are_not_allowed(ip: str) -> None:
    assert not address_allowed(ip)


def test_public_addresses_are_allowed() -> None:
    assert address_allowed("93.184.216.34") and address_allowed("2606:4700::1111")


def test_fetch_refuses_loopback_link_local_and_names_resolving_to_them() -> None:
    settings = FetchSettings()

    async def body(base: str) -> None:
        for url in (base + "/page", "http://169.254.169.254/latest/meta-data/", "http://[::1]/"):
            with pytest.raises(FetchRefused, match="private or reserved"):
                await fetch(url, settings)
        port = base.rsplit(":", 1)[1]
        with pytest.raises(FetchRefused, match="resolves to a private"):
            await fetch(f"http://localhost:{port}/page", settings)
        with pytest.raises(FetchRefused, match="only http"):
            await fetch("file:///etc/passwd", settings)

    _serve(_pages(), body)


def test_fetch_allowed_private_reads_html_as_text_and_checks_redirects_type_size() -> None:
    settings = FetchSettings(allow_private=True, max_bytes=1000)

    async def body(base: str) -> None:
        doc = await fetch(base + "/page", settings)
        assert doc.title == "T" and doc.text == "Hello page"
        with pytest.raises(FetchRefused, match="content type image/png"):
            await fetch(base + "/image", settings)
        with pytest.raises(FetchRefused, match="1000-byte limit"):
            await fetch(base + "/big", settings)
        # allow_hosts trusts one name only; a redirect to the metadata address is checked again and refused.
        strict = FetchSettings(allow_hosts=["localhost"])
        port = base.rsplit(":", 1)[1]
        assert (await fetch(f"http://localhost:{port}/page", strict)).text == "Hello page"
        with pytest.raises(FetchRefused, match="private or reserved"):
            await fetch(f"http://localhost:{port}/hop", strict)

    _serve(_pages(), body)


# -- python sandbox --------------------------------------------------------------------------------------------


def _run(code: str, **limits: Any) -> Any:
    return asyncio.run(run_python(code, PythonSettings(**limits)))


def test_python_runs_code_in_an_empty_temp_dir_with_a_clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-should-not-leak")
    r = _run("import os\nprint(6 * 7)\nprint(os.listdir('.'))\nprint(sorted(os.environ))")
    assert r.exit_code == 0
    lines = r.stdout.splitlines()
    assert lines[0] == "42" and lines[1] == "[]"
    assert "OPENAI_API_KEY" not in r.stdout and "sk-secret" not in r.stdout


def test_python_runaway_loop_is_killed() -> None:
    r = _run("while True:\n    pass", cpu_seconds=1, wall_seconds=10)
    assert r.exit_code is None and "killed: CPU-time limit" in r.as_text()


def test_python_wall_time_limit() -> None:
    # The sandboxed code sleeps past the limit on purpose: the wall-time limit must end it.
    r = _run("import time\ntime.sleep(30)", wall_seconds=1)
    assert r.timed_out and "wall-time" in r.as_text()


def test_python_memory_limit() -> None:
    r = _run("x = bytearray(2_000_000_000)\nprint('allocated')", memory_mb=256)
    assert r.exit_code != 0 and "MemoryError" in r.stderr and "allocated" not in r.stdout


def test_python_cannot_write_outside_its_directory(tmp_path: Path) -> None:
    # The host's paths do not exist in the sandbox, and what does (/usr, /) is read-only.
    target = tmp_path / "escape.txt"
    r = _run(f"open({str(target)!r}, 'w').write('x')")
    assert r.exit_code == 1 and "FileNotFoundError" in r.stderr
    assert not target.exists()
    r = _run("open('/usr/escape.txt', 'w').write('x')")
    assert r.exit_code == 1 and "Read-only file system" in r.stderr
    ok = _run("open('inside.txt', 'w').write('fine')\nprint(open('inside.txt').read())")
    assert ok.stdout.strip() == "fine"


def test_python_sandboxes_beyond_max_concurrent_wait_their_turn() -> None:
    # CLOCK_MONOTONIC is the host's in every sandbox (no time namespace): the runs' intervals must not overlap.
    code = "import time\nt0 = time.monotonic()\ntime.sleep(0.3)\nprint(t0, time.monotonic())"
    settings = PythonSettings(max_concurrent=1)

    async def three() -> list[Any]:
        return list(await asyncio.gather(*(run_python(code, settings) for _ in range(3))))

    spans = sorted(tuple(map(float, r.stdout.split())) for r in asyncio.run(three()))
    assert len(spans) == 3
    assert all(spans[i][1] <= spans[i + 1][0] for i in range(2)), spans


def test_python_has_no_network() -> None:
    r = _run("import socket\ns = socket.create_connection(('127.0.0.1', 9), timeout=1)")
    assert r.exit_code == 1 and "ConnectionRefusedError" in r.stderr
    r = _run("import socket\nprint(socket.getaddrinfo('example.com', 80))")
    assert r.exit_code == 1 and "gaierror" in r.stderr


# -- HTTP search adapters ---------------------------------------------------------------------------------------


def _search_app(seen: list[dict[str, Any]]) -> web.Application:
    async def searxng(request: web.Request) -> web.Response:
        seen.append({"q": request.query.get("q"), "format": request.query.get("format")})
        return web.json_response(
            {
                "query": request.query["q"],
                "number_of_results": 2,
                "results": [
                    {"url": "https://a.example/1", "title": "A1", "content": "first", "engine": "bing",
                     "publishedDate": "2024-01-02T00:00:00"},
                    {"url": "https://a.example/2", "title": "A2", "content": "second", "engine": "ddg"},
                ],
                "answers": [], "suggestions": [], "unresponsive_engines": [],
            }
        )  # fmt: skip

    async def tavily(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append({"auth": request.headers.get("Authorization"), **body})
        return web.json_response(
            {
                "query": body["query"],
                "answer": None,
                "images": [],
                "results": [{"title": "T1", "url": "https://t.example/1", "content": "tav", "score": 0.9,
                             "raw_content": None}],
                "response_time": 0.5,
            }
        )  # fmt: skip

    async def brave(request: web.Request) -> web.Response:
        seen.append({"token": request.headers.get("X-Subscription-Token"), "count": request.query.get("count")})
        return web.json_response(
            {
                "type": "search",
                "query": {"original": request.query["q"]},
                "web": {"type": "search", "results": [
                    {"title": "B1", "url": "https://b.example/1", "description": "brave <strong>one</strong>",
                     "page_age": "2023-05-01T00:00:00", "age": "May 1, 2023"}]},
            }
        )  # fmt: skip

    app = web.Application()
    app.router.add_get("/search", searxng)
    app.router.add_post("/search", tavily)
    app.router.add_get("/res/v1/web/search", brave)
    return app


def test_http_search_adapters_speak_each_documented_format() -> None:
    seen: list[dict[str, Any]] = []

    async def body(base: str) -> None:
        sx = SearxngBackend(base, None, 5)
        res = await sx.search("zorblax", 5)
        assert [r.url for r in res] == ["https://a.example/1", "https://a.example/2"]
        assert res[0].snippet == "first" and res[0].date == "2024-01-02T00:00:00"
        tv = TavilyBackend(base, "tvly-key", 5)
        res = await tv.search("zorblax", 3)
        assert res[0].title == "T1" and res[0].snippet == "tav"
        br = BraveBackend(base, "brave-key", 5)
        res = await br.search("zorblax", 4)
        assert res[0].url == "https://b.example/1" and res[0].date == "2023-05-01T00:00:00"
        for b in (sx, tv, br):
            await b.aclose()

    _serve(_search_app(seen), body)
    assert seen[0] == {"q": "zorblax", "format": "json"}
    assert seen[1]["auth"] == "Bearer tvly-key" and seen[1]["query"] == "zorblax" and seen[1]["max_results"] == 3
    assert seen[2] == {"token": "brave-key", "count": "4"}
