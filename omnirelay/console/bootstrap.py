"""The first administrator: from ``OMNIRELAY_ADMIN_EMAIL`` and ``OMNIRELAY_ADMIN_PASSWORD`` at start, created only
while the database holds no user at all (so changing the variables later never resets anyone's password)."""

from __future__ import annotations

import logging
import os

from omnirelay.core.errors import GatewayError
from omnirelay.state.accounts import AccountStore
from omnirelay.state.passwords import hash_password_async, password_problem

log = logging.getLogger("omnirelay.console")


async def bootstrap_admin(accounts: AccountStore, env: dict[str, str] | None = None) -> bool:
    """Create the first admin from the environment if no user exists; whether one was created."""
    env = dict(os.environ) if env is None else env
    email = (env.get("OMNIRELAY_ADMIN_EMAIL") or "").strip().lower()
    password = env.get("OMNIRELAY_ADMIN_PASSWORD") or ""
    if not email or not password or await accounts.count_users() > 0:
        return False
    problem = password_problem(password)
    if problem is not None:
        log.error("OMNIRELAY_ADMIN_PASSWORD refused (%s): no console admin created", problem)
        return False
    try:
        await accounts.create_user(email, await hash_password_async(password), "admin")
    except GatewayError:  # another worker created it a moment ago (409)
        return False
    log.info("console: created the first admin %s", email)
    return True
