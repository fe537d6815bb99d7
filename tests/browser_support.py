"""Shared pieces of the console tests: a gateway with accounts over the mocks, signed-in API sessions (cookie +
CSRF header, as the pages use them) and the Playwright browser on Debian's chromium."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx

from tests.gateway import ROOT, Gateway

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = ROOT / "test-output" / "console"
PASSWORD = "correct horse battery staple"


class ConsoleSession:
    """One signed-in user of the console API: the session cookie and the CSRF header on every non-GET."""

    def __init__(self, url: str, email: str, password: str = PASSWORD) -> None:
        self.http = httpx.Client(base_url=url + "/console/api", timeout=30)
        r = self.http.post("/login", json={"email": email, "password": password})
        assert r.status_code == 200, r.text
        self.me: dict[str, Any] = r.json()["user"]
        self.csrf: str = r.json()["csrf_token"]

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.http.get(path, params=params)

    def send(self, method: str, path: str, body: Any = None, csrf: bool = True) -> httpx.Response:
        headers = {"X-CSRF-Token": self.csrf} if csrf else {}
        return self.http.request(method, path, json=body, headers=headers)

    def ok(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        r = self.send(method, path, body)
        assert r.status_code == status, f"{method} {path}: {r.status_code} {r.text}"
        return r.json() if r.content else None


def new_email(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}@example.com"


def create_user(admin: ConsoleSession, role: str = "member", email: str | None = None) -> str:
    email = email or new_email(role)
    admin.ok("POST", "/admin/users", {"email": email, "password": PASSWORD, "role": role}, status=201)
    return email


def balance(gw: Gateway, email: str) -> float:
    value: float = ConsoleSession(gw.url, email).ok("GET", "/me")["balance_usd"]
    return value
