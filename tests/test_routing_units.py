"""The routing admin handlers in-process, through the App (with its state store): not a unit test, so not
under tests/unit/ (the pure routing parts are in tests/unit/routing/)."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from omnirelay.config import parse_config


async def _call(app: Any, path: str, token: str | None) -> tuple[int, Any]:
    headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
    scope = {"type": "http", "method": "GET", "path": path, "headers": headers, "query_string": b""}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], msgspec.json.decode(body)


def test_admin_handlers_in_process(tmp_path: Any) -> None:
    from omnirelay.server.app import App

    cfg = parse_config(
        {
            "server": {"master_key": "sk-admin"},
            "state": {"data_dir": str(tmp_path)},
            "upstreams": [{"name": "u1", "provider": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": "k"}],
            "models": {"m": {"upstream": "u1", "max_concurrency": 3}},
        }
    )
    app = App(cfg)
    status, body = asyncio.run(_call(app, "/admin/channels", "sk-admin"))
    assert status == 200
    (ch,) = body["data"]
    assert ch["channel"] == "u1/m" and ch["state"] == "closed" and ch["routes"][0]["model"] == "m"
    assert asyncio.run(_call(app, "/admin/channels", "nope"))[0] == 401
    status, tasks = asyncio.run(_call(app, "/admin/debug/tasks", "sk-admin"))
    assert status == 200 and tasks["tasks"] >= 1
