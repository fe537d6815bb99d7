"""The one admin-auth check: every ``/admin`` endpoint needs the admin key (``Config.admin_key``) as a bearer
token; with no admin key configured the admin API answers 403."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from omnirelay.config import Config
from omnirelay.core.errors import GatewayError
from omnirelay.pipeline.gate import bearer_token
from omnirelay.web.exchange import Exchange
from omnirelay.web.routes import Handler

DISABLED = "the admin API is disabled: set OMNIRELAY_ADMIN_KEY (or state.admin_key, or server.master_key)"
WRONG_KEY = "Incorrect admin key provided."


def check_admin(config: Config, headers: Mapping[str, str]) -> None:
    """403 if no admin key is configured, 401 if the request does not carry it."""
    key = config.admin_key()
    if key is None:
        raise GatewayError("permission", DISABLED)
    token = bearer_token(headers)
    if token is None or not hmac.compare_digest(token.encode(), key.encode()):
        raise GatewayError("authentication", WRONG_KEY, code="invalid_api_key")


def guarded(config: Config, handler: Handler) -> Handler:
    """``handler`` behind ``check_admin``."""

    async def guarded_handler(request: Exchange) -> None:
        check_admin(config, request.headers)
        await handler(request)

    return guarded_handler
