"""The web console: its JSON API under ``/console/api`` (one module per area in ``api/``, every route but sign-in
behind the session guard of ``session.py``, ``/console/api/admin/*`` for admins only) and its static pages
(``static.py``). ``server/app.py`` mounts it; the admin handlers are also offered to the ``/admin`` API, behind
the admin key, so both APIs share one implementation."""

from __future__ import annotations

from omnirelay.console.api.admin import AdminApi
from omnirelay.console.api.catalog import CatalogApi
from omnirelay.console.api.channels import ChannelsApi
from omnirelay.console.api.keys import KeysApi
from omnirelay.console.api.playground import PlaygroundApi
from omnirelay.console.api.session import SessionApi
from omnirelay.console.api.usage import UsageApi
from omnirelay.console.api.wallet import WalletApi
from omnirelay.console.common import ApiRoute, Caller, CallerHandler
from omnirelay.console.context import ConsoleContext
from omnirelay.console.static import StaticPages
from omnirelay.web.exchange import Exchange
from omnirelay.web.routes import SUBTREE, Endpoint, ErrorRenderer, Handler, Mount

API_PREFIX = "/console/api"


def console_mounts(ctx: ConsoleContext, render_error: ErrorRenderer) -> list[Mount]:
    guard = ctx.sessions.guard
    session = SessionApi(ctx)
    keys = KeysApi(ctx)
    member_routes: list[ApiRoute] = [
        *keys.routes(),
        *UsageApi(ctx).routes(),
        *CatalogApi(ctx).routes(),
        *WalletApi(ctx).routes(),
        *PlaygroundApi(ctx, keys).routes(),
        ("POST", "/logout", session.logout),
        ("GET", "/me", session.me),
    ]
    admin_routes = [*AdminApi(ctx).routes(), *ChannelsApi(ctx).routes()]
    endpoints = [Endpoint("POST", "/login", session.login)]
    endpoints += [Endpoint(method, path, guard(handler)) for method, path, handler in member_routes]
    endpoints += [Endpoint(m, "/admin" + path, guard(handler, admin=True)) for m, path, handler in admin_routes]
    pages = StaticPages()
    static = Mount("/console", [Endpoint("GET", "", pages.serve), Endpoint("GET", SUBTREE, pages.serve)], render_error)
    return [Mount(API_PREFIX, endpoints, render_error), static]


def admin_key_endpoints(ctx: ConsoleContext) -> list[Endpoint]:
    """The console's account administration for the ``/admin`` API (which puts its admin-key check in front)."""
    return [Endpoint(m, path, _as_admin_key(handler)) for m, path, handler in AdminApi(ctx).routes()]


def _as_admin_key(handler: CallerHandler) -> Handler:
    async def handle(request: Exchange) -> None:
        await handler(request, Caller(user=None))

    return handle
