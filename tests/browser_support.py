"""What the console's browser tests add to tests/console_support.py: Debian's chromium for Playwright, where the
screenshots go, and users made through the admin API."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from tests.console_support import MEMBER_PASSWORD, Console
from tests.gateway import ROOT

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


def signed_in(url: str, email: str, password: str = MEMBER_PASSWORD) -> Console:
    c = Console(url)
    c.ok(c.login(email, password))
    return c


def create_user(admin: Console, role: str = "member", topup_usd: float = 0.0) -> str:
    """A new user's email (password MEMBER_PASSWORD), topped up by ``topup_usd`` when given."""
    email = f"{role}-{uuid.uuid4().hex[:8]}@example.com"
    user: dict[str, Any] = admin.ok(
        admin.post("/admin/users", {"email": email, "password": MEMBER_PASSWORD, "role": role}), 201
    )
    if topup_usd:
        admin.ok(admin.post(f"/admin/users/{user['id']}/topup", {"amount_usd": topup_usd, "reason": "browser test"}))
    return email
