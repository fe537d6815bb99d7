"""``POST /login``, ``POST /logout``, ``GET /me``."""

from __future__ import annotations

from omnirelay.console.common import Caller, json_object, send
from omnirelay.console.context import ConsoleContext
from omnirelay.console.session import clear_cookie, set_cookie
from omnirelay.core.errors import GatewayError
from omnirelay.state.accounts import csrf_of
from omnirelay.state.fields import bad
from omnirelay.web.exchange import Exchange


class SessionApi:
    def __init__(self, ctx: ConsoleContext) -> None:
        self.ctx = ctx

    async def login(self, request: Exchange) -> None:
        if not request.headers.get("content-type", "").lower().startswith("application/json"):
            raise GatewayError("invalid_request", "sign in with a JSON body (Content-Type: application/json)")
        body = await json_object(request, 8 * 1024)
        email, password = body.get("email"), body.get("password")
        if not isinstance(email, str) or not email.strip() or len(email) > 320:
            raise bad("email", "email must be a string")
        if not isinstance(password, str) or len(password) > 1024:
            raise bad("password", "password must be a string")
        user, session_id = await self.ctx.sessions.sign_in(request, email.strip().lower(), password)
        me = await self.ctx.user_view(user)
        csrf = csrf_of(session_id)
        me["csrf_token"] = csrf
        cookie = set_cookie(session_id, self.ctx.config.console, request)
        await send(request, 200, {"user": me, "csrf_token": csrf}, headers={"set-cookie": cookie})

    async def logout(self, request: Exchange, caller: Caller) -> None:
        assert caller.session_id is not None
        await self.ctx.accounts.delete_session(caller.session_id)
        await request.respond(204, b"", headers={"set-cookie": clear_cookie(self.ctx.config.console, request)})

    async def me(self, request: Exchange, caller: Caller) -> None:
        assert caller.user is not None and caller.session_id is not None
        view = await self.ctx.user_view(caller.user)
        view["csrf_token"] = csrf_of(caller.session_id)
        await send(request, 200, view)
