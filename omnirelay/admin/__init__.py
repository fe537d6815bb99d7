"""The admin HTTP API, mounted once under ``/admin``, every endpoint behind the one admin-auth check
(``admin/auth.py``): keys (``keys.py``), usage records (``usage.py``), channel states and debug views
(``channels.py``). A new admin view is one more route list here."""

from __future__ import annotations

from collections.abc import Sequence

from omnirelay.admin.auth import guarded
from omnirelay.admin.channels import channel_endpoints
from omnirelay.admin.keys import KeysApi
from omnirelay.admin.usage import UsageApi
from omnirelay.config import Config
from omnirelay.routing.table import RouteTable
from omnirelay.state.gate import KeyGate
from omnirelay.web.routes import Endpoint, ErrorRenderer, Mount

PREFIX = "/admin"


def admin_mount(
    config: Config,
    gate: KeyGate,
    routes: RouteTable,
    render_error: ErrorRenderer,
    extra: Sequence[Endpoint] = (),
) -> Mount:
    """Every admin endpoint under ``/admin``, its errors rendered by ``render_error``; ``extra``: route lists of
    packages above this one (the console's account administration: users, teams, groups, codes, top-ups)."""
    endpoints = [*KeysApi(gate).endpoints(), *UsageApi(gate).endpoints(), *channel_endpoints(routes), *extra]
    return Mount(PREFIX, [Endpoint(ep.method, ep.path, guarded(config, ep.handler)) for ep in endpoints], render_error)
