"""Console sessions: the cookie, CSRF, sign-in throttling, and the guard every console API route goes through.

The session cookie ``omnirelay_session`` holds a random id (192 bits); the database keeps only its SHA-256 and
the SHA-256 of its CSRF token (derived from the id, ``accounts.csrf_of``). The cookie is HttpOnly,
SameSite=Strict, Path=/console, Secure over https (or with ``console.secure_cookies``). Every request but GET
needs ``X-CSRF-Token`` equal to the session's token (403 ``csrf_failed``); sign-in needs a JSON body, which a
cross-site form cannot send. Each sign-in makes a new session id (the one the browser had, if any, is revoked),
so an id planted before sign-in is worthless after it; sign-out deletes the session server-side.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from omnirelay.config import ConsoleConfig
from omnirelay.console.common import Caller, CallerHandler
from omnirelay.core.errors import GatewayError
from omnirelay.state.accounts import AccountStore, User, csrf_of
from omnirelay.state.passwords import verify_password_async
from omnirelay.web.exchange import Exchange
from omnirelay.web.routes import Handler

COOKIE = "omnirelay_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = ("GET", "HEAD")
INVALID_CREDENTIALS = "Invalid email or password."


def session_cookie(headers: Mapping[str, str]) -> str | None:
    raw = headers.get("cookie")
    if not raw:
        return None
    for part in raw.split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE and value and len(value) <= 128:
            return value
    return None


def is_https(request: Exchange, config: ConsoleConfig) -> bool:
    forwarded = request.headers.get("x-forwarded-proto", "").lower()
    return config.secure_cookies or request.scheme() == "https" or forwarded == "https"


def set_cookie(session_id: str, config: ConsoleConfig, request: Exchange) -> str:
    secure = "; Secure" if is_https(request, config) else ""
    return (
        f"{COOKIE}={session_id}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={int(config.session_ttl_s)}{secure}"
    )


def clear_cookie(config: ConsoleConfig, request: Exchange) -> str:
    secure = "; Secure" if is_https(request, config) else ""
    return f"{COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0{secure}"


def client_address(request: Exchange, config: ConsoleConfig) -> str:
    """The client's address for sign-in throttling: the connection's, or what the operator's proxy says."""
    if config.client_ip_header:
        forwarded = request.headers.get(config.client_ip_header.lower(), "")
        last = forwarded.rsplit(",", 1)[-1].strip()
        if last:
            return last[:64]
    return request.peer()


def not_signed_in() -> GatewayError:
    return GatewayError("authentication", "Sign in to the console first.", code="not_signed_in")


class Sessions:
    """Sign-in, sign-out and the guard, over the accounts store."""

    def __init__(self, accounts: AccountStore, config: ConsoleConfig) -> None:
        self.accounts = accounts
        self.config = config

    def guard(self, handler: CallerHandler, admin: bool = False) -> Handler:
        """``handler`` for signed-in users only (401), with the CSRF check on every unsafe method (403), and for
        admins only when ``admin`` (403 ``admin_required``)."""

        async def guarded(request: Exchange) -> None:
            session_id = session_cookie(request.headers)
            user = await self.accounts.session_user(session_id) if session_id else None
            if user is None or session_id is None:
                raise not_signed_in()
            if request.method not in SAFE_METHODS:
                check_csrf(request.headers, session_id)
            if admin and user.role != "admin":
                raise GatewayError("permission", "This needs an administrator.", code="admin_required")
            await handler(request, Caller(user=user, session_id=session_id))

        return guarded

    async def sign_in(self, request: Exchange, email: str, password: str) -> tuple[User, str]:
        """The user and a new session id; 401 for a wrong email or password (one message for both), 429 past
        the allowed failures per email or per client address."""
        cfg = self.config
        email_scope, ip_scope = f"email:{email}", f"ip:{client_address(request, cfg)}"
        by_email = await self.accounts.login_failures([email_scope], cfg.login_window_s)
        by_ip = await self.accounts.login_failures([ip_scope], cfg.login_window_s)
        if by_email >= cfg.login_max_failures_per_email or by_ip >= cfg.login_max_failures_per_ip:
            raise GatewayError(
                "rate_limit",
                "Too many failed sign-in attempts; try again later.",
                code="too_many_login_attempts",
                retry_after=cfg.login_window_s,
                retryable=False,
            )
        found = await self.accounts.user_by_email(email)
        ok = await verify_password_async(password, found[1] if found is not None else None)
        if not ok or found is None or found[0].disabled:
            await self.accounts.record_login_failure([email_scope, ip_scope], cfg.login_window_s)
            raise GatewayError("authentication", INVALID_CREDENTIALS, code="invalid_credentials")
        await self.accounts.clear_login_failures(email_scope)
        previous = session_cookie(request.headers)
        if previous is not None:  # no fixation: whatever id the browser came with is dead from now on
            await self.accounts.delete_session(previous)
        return found[0], await self.accounts.create_session(found[0].id, cfg.session_ttl_s)


def check_csrf(headers: Mapping[str, str], session_id: str) -> None:
    sent = headers.get(CSRF_HEADER, "")
    if not sent or not hmac.compare_digest(sent.encode(), csrf_of(session_id).encode()):
        raise GatewayError("permission", "Missing or wrong X-CSRF-Token header.", code="csrf_failed")
