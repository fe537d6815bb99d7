"""Shared pieces of the key/state tests: backends (SQLite, PostgreSQL + Redis, each test run isolated in its
own schema and Redis prefix), a gateway with an admin key, and admin API helpers."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import redis

from tests.gateway import Gateway, mock_config

ADMIN_KEY = "adm-test-secret"
PG_BASE = "postgresql://postgres@localhost:5432/test"
REDIS_URL = "redis://localhost:6379/0"
BACKENDS = ["sqlite", "postgres"]


async def drop_schema(tag: str) -> None:
    """Remove the PostgreSQL schema ``omni_<tag>`` a test's store ran in, with everything in it."""
    conn = await asyncpg.connect(PG_BASE)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "omni_{tag}" CASCADE')
    finally:
        await conn.close()


class Backend:
    """Where state lives for one test module: env for the gateway and the database URL for direct checks."""

    def __init__(self, kind: str, workdir: Path) -> None:
        self.kind = kind
        self.tag = "t" + uuid.uuid4().hex[:12]
        self.workdir = workdir
        if kind == "postgres":
            self.database_url = f"{PG_BASE}?schema=omni_{self.tag}"
            self.env = {
                "OMNIRELAY_DATABASE_URL": self.database_url,
                "OMNIRELAY_REDIS_URL": REDIS_URL,
                "OMNIRELAY_REDIS_PREFIX": f"omni-{self.tag}:",
            }
        else:
            self.database_url = "sqlite:///" + str(workdir / "shared.db")
            self.env = {"OMNIRELAY_DATABASE_URL": self.database_url}

    def cleanup(self) -> None:
        if self.kind != "postgres":
            return

        asyncio.run(drop_schema(self.tag))
        r = redis.Redis.from_url(REDIS_URL)
        for name in r.scan_iter(f"omni-{self.tag}:*"):
            r.delete(name)
        r.close()


@contextmanager
def backend(kind: str, workdir: Path) -> Iterator[Backend]:
    b = Backend(kind, workdir)
    try:
        yield b
    finally:
        b.cleanup()


def state_config(mocks_urls: tuple[str, str, str], **state: Any) -> dict[str, Any]:
    cfg = mock_config(*mocks_urls)
    cfg["state"] = {"admin_key": ADMIN_KEY, "key_refresh_s": 0.2, "usage_flush_s": 0.1, **state}
    return cfg


def start_gateway(cfg: dict[str, Any], workdir: Path, b: Backend) -> Gateway:
    return Gateway(cfg, workdir, env=b.env).start()


class Admin:
    """The admin API of one gateway."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)

    def create_key(self, **fields: Any) -> tuple[str, str]:
        fields.setdefault("name", "test-" + uuid.uuid4().hex[:6])
        r = self.http.post("/admin/keys", json=fields)
        assert r.status_code == 201, r.text
        body = r.json()
        return body["key"]["id"], body["secret"]

    def key(self, key_id: str) -> dict[str, Any]:
        r = self.http.get(f"/admin/keys/{key_id}")
        assert r.status_code == 200, r.text
        out: dict[str, Any] = r.json()
        return out

    def patch(self, key_id: str, **fields: Any) -> dict[str, Any]:
        r = self.http.patch(f"/admin/keys/{key_id}", json=fields)
        assert r.status_code == 200, r.text
        out: dict[str, Any] = r.json()
        return out

    def usage(self, **params: Any) -> list[dict[str, Any]]:
        r = self.http.get("/admin/usage", params=params)
        assert r.status_code == 200, r.text
        data: list[dict[str, Any]] = r.json()["data"]
        return data

    def wait_usage(self, count: int, timeout: float = 15.0, **params: Any) -> list[dict[str, Any]]:
        """The records matching ``params`` once there are ``count`` of them. The gateway settles a request
        right after its last byte is sent, so the client can be a few milliseconds ahead of the record."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.usage(**params)
            if len(rows) >= count or time.monotonic() > deadline:
                return rows
            time.sleep(0.05)
