"""The console's JSON API as a test drives it: one signed-in browser-like client per user (its own cookie jar,
the CSRF token sent on every unsafe request), and a gateway with a bootstrapped admin."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai

from tests.gateway import Gateway
from tests.mocks.server import MockUpstreams
from tests.state_helpers import backend, start_gateway, state_config

ADMIN_EMAIL = "root@example.com"
ADMIN_PASSWORD = "correct horse battery staple"
MEMBER_PASSWORD = "member-password-1"
API = "/console/api"


class Console:
    """One user's session: ``login`` keeps the cookie (httpx's jar) and the CSRF token."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=30)
        self.csrf: str | None = None

    def login(self, email: str, password: str) -> httpx.Response:
        r = self.http.post(f"{API}/login", json={"email": email, "password": password})
        if r.status_code == 200:
            self.csrf = r.json()["csrf_token"]
        return r

    def _headers(self) -> dict[str, str]:
        return {"x-csrf-token": self.csrf} if self.csrf else {}

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.http.get(API + path, params=params)

    def post(self, path: str, body: Any = None, **kw: Any) -> httpx.Response:
        return self.http.post(API + path, json=body if body is not None else {}, headers=self._headers(), **kw)

    def patch(self, path: str, body: Any) -> httpx.Response:
        return self.http.patch(API + path, json=body, headers=self._headers())

    def delete(self, path: str) -> httpx.Response:
        return self.http.delete(API + path, headers=self._headers())

    def ok(self, response: httpx.Response, status: int = 200) -> Any:
        assert response.status_code == status, (response.status_code, response.text)
        return response.json() if response.content else None

    def session_id(self) -> str | None:
        return self.http.cookies.get("omnirelay_session")

    def openai(self, secret: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=secret, max_retries=0, timeout=30)


class ConsoleEnv:
    def __init__(self, gw: Gateway, kind: str, database_url: str) -> None:
        self.gw = gw
        self.kind = kind
        self.database_url = database_url

    def console(self) -> Console:
        return Console(self.gw.url)

    def admin(self) -> Console:
        c = self.console()
        c.ok(c.login(ADMIN_EMAIL, ADMIN_PASSWORD))
        return c

    def member(self, admin: Console, **fields: Any) -> tuple[Console, dict[str, Any]]:
        """A new member (created by ``admin``), signed in."""
        email = f"m-{uuid.uuid4().hex[:8]}@example.com"
        user = admin.ok(admin.post("/admin/users", {"email": email, "password": MEMBER_PASSWORD, **fields}), 201)
        c = self.console()
        c.ok(c.login(email, MEMBER_PASSWORD))
        return c, user


@contextmanager
def console_gateway(kind: str, mocks: MockUpstreams, workdir: Path, **console: Any) -> Iterator[ConsoleEnv]:
    with backend(kind, workdir) as b:
        b.env.update({"OMNIRELAY_ADMIN_EMAIL": ADMIN_EMAIL, "OMNIRELAY_ADMIN_PASSWORD": ADMIN_PASSWORD})
        cfg = state_config((mocks.url("openai"), mocks.url("anthropic"), mocks.url("gemini")))
        cfg["console"] = console
        gw = start_gateway(cfg, workdir, b)
        try:
            yield ConsoleEnv(gw, kind, b.database_url)
        finally:
            gw.stop()
