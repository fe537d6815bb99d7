"""The admin HTTP API: keys and usage, behind the admin key (``OMNIRELAY_ADMIN_KEY`` or ``state.admin_key``;
unset: the server master key; neither: the admin API answers 403).

  POST   /admin/keys                 {name, credit?, models?, rpm?, tpm?, expires_at?} -> 201 {key, secret}
  GET    /admin/keys                 -> {data: [key...]}
  GET    /admin/keys/{id}            -> key
  PATCH  /admin/keys/{id}            any of {name, credit, models, rpm, tpm, expires_at, disabled}; null clears
  POST   /admin/keys/{id}/disable    (and /enable) -> key
  DELETE /admin/keys/{id}            -> {id, deleted: true}
  GET    /admin/usage                ?since&until&key&model&limit&format=json|csv -> records
  GET    /admin/usage/summary        ?since&until&key&model&by=key_id,model_requested -> totals

Times are unix seconds, ISO 8601 (``2027-01-01``, ``2027-01-01T12:00:00Z``) or relative (``90s``, ``15m``,
``24h``, ``7d`` ago). The secret of a new key is returned once and never again.
"""

from __future__ import annotations

import csv
import hmac
import io
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import msgspec

from omnirelay.core.errors import GatewayError
from omnirelay.server.exchange import Exchange
from omnirelay.server.gate import bearer_token
from omnirelay.state.gate import KeyGate
from omnirelay.state.keys import KeyRecord, new_key, parse_models, to_units
from omnirelay.state.store import SUMMARY_DIMENSIONS, USAGE_COLUMNS, UsageFilter

if TYPE_CHECKING:
    from omnirelay.server.app import App

ADMIN_BODY_LIMIT = 64 * 1024
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DIMENSION_ALIASES = {"key": "key_id", "model": "model_requested"}


def parse_time(text: str, field: str = "time") -> float:
    """Unix seconds from a timestamp, an ISO 8601 date/datetime (UTC if no zone) or ``<n><s|m|h|d|w>`` ago."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    rel = _RELATIVE.match(text)
    if rel:
        return time.time() - float(rel.group(1)) * _UNIT_S[rel.group(2)]
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise GatewayError(
            "invalid_request", f"cannot read {field} {text!r}: use unix seconds, ISO 8601 or 7d", param=field
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def dimensions(text: str | None) -> list[str]:
    by = [_DIMENSION_ALIASES.get(d.strip(), d.strip()) for d in (text or "").split(",") if d.strip()]
    for d in by:
        if d not in SUMMARY_DIMENSIONS:
            raise GatewayError(
                "invalid_request",
                f"cannot group by {d!r}: choose from key, model, {', '.join(SUMMARY_DIMENSIONS)}",
                param="by",
            )
    return by


def key_fields(body: dict[str, Any], creating: bool) -> dict[str, Any]:
    """Validate key settings from a JSON body into store fields (credit in USD -> credit_units)."""
    allowed = {"name", "credit", "models", "rpm", "tpm", "expires_at", "disabled"}
    fields: dict[str, Any] = {}
    for name, value in body.items():
        if name not in allowed:
            raise GatewayError("invalid_request", f"unknown key field {name!r}", param=name)
        if name == "name":
            if not isinstance(value, str) or not value.strip():
                raise GatewayError("invalid_request", "name must be a non-empty string", param="name")
            fields["name"] = value.strip()
        elif name == "credit":
            if value is not None and (not isinstance(value, int | float) or isinstance(value, bool) or value < 0):
                raise GatewayError(
                    "invalid_request", "credit must be a non-negative number of USD or null", param="credit"
                )
            fields["credit_units"] = None if value is None else to_units(float(value))
        elif name == "models":
            if value is None:
                value = []
            if isinstance(value, str):
                value = parse_models(value)
            if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
                raise GatewayError("invalid_request", "models must be a list of glob patterns", param="models")
            fields["models"] = value
        elif name in ("rpm", "tpm"):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
                raise GatewayError("invalid_request", f"{name} must be a positive integer or null", param=name)
            fields[name] = value
        elif name == "expires_at":
            if value is None:
                fields["expires_at"] = None
            elif isinstance(value, int | float) and not isinstance(value, bool):
                fields["expires_at"] = float(value)
            elif isinstance(value, str):
                fields["expires_at"] = parse_time(value, "expires_at")
            else:
                raise GatewayError("invalid_request", "expires_at must be a time or null", param="expires_at")
        elif name == "disabled":
            if not isinstance(value, bool):
                raise GatewayError("invalid_request", "disabled must be true or false", param="disabled")
            fields["disabled"] = value
    if creating and "name" not in fields:
        raise GatewayError("invalid_request", "name is required", param="name")
    return fields


def usage_csv(rows: list[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    columns = [c for c in USAGE_COLUMNS if c != "cost_units"] + ["cost"]
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    return out.getvalue().encode()


class AdminApi:
    def __init__(self, gate: KeyGate) -> None:
        self.gate = gate
        self.store = gate.store

    def register(self, app: App) -> None:
        app.route("POST", "/admin/keys", self._guard(self.create_key))
        app.route("GET", "/admin/keys", self._guard(self.list_keys))
        for method in ("GET", "PATCH", "POST", "DELETE"):
            app.route(method, "/admin/keys/*", self._guard(self.one_key))
        app.route("GET", "/admin/usage", self._guard(self.usage))
        app.route("GET", "/admin/usage/summary", self._guard(self.usage_summary))

    def _guard(self, handler: Callable[[Exchange], Awaitable[None]]) -> Callable[[Exchange], Awaitable[None]]:
        async def guarded(request: Exchange) -> None:
            admin = self.gate.config.state.admin_key or self.gate.config.server.master_key
            if admin is None:
                raise GatewayError("permission", "the admin API is disabled: set OMNIRELAY_ADMIN_KEY")
            token = bearer_token(request.headers)
            if token is None or not hmac.compare_digest(token.encode(), admin.encode()):
                raise GatewayError("authentication", "Incorrect admin key provided.", code="invalid_api_key")
            await handler(request)

        return guarded

    # -- helpers -----------------------------------------------------------------------------------------

    async def _json_body(self, request: Exchange) -> dict[str, Any]:
        raw = await request.body(ADMIN_BODY_LIMIT)
        if not raw.strip():
            return {}
        try:
            body = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            raise GatewayError("invalid_request", "the body is not valid JSON") from None
        except RecursionError:
            raise GatewayError("invalid_request", "the body nests arrays and objects too deeply") from None
        if not isinstance(body, dict):
            raise GatewayError("invalid_request", "the body must be a JSON object")
        return body

    def _key_view(self, rec: KeyRecord) -> dict[str, object]:
        view = rec.public()
        pending = self.gate.pending_units.get(rec.id, 0)
        view["spent"] = (rec.spent_units + pending) / 1e10
        balance = self.gate.balance_units(rec)
        view["balance"] = None if balance is None else balance / 1e10
        return view

    @staticmethod
    async def _send(request: Exchange, status: int, body: Any) -> None:
        await request.respond(status, msgspec.json.encode(body))

    @staticmethod
    def _query(request: Exchange) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(request.query_string).items()}

    def _filter(self, q: dict[str, str]) -> UsageFilter:
        limit = q.get("limit")
        if limit is not None and not limit.isdigit():
            raise GatewayError("invalid_request", "limit must be a positive integer", param="limit")
        return UsageFilter(
            since=parse_time(q["since"], "since") if "since" in q else None,
            until=parse_time(q["until"], "until") if "until" in q else None,
            key_id=q.get("key") or q.get("key_id"),
            model=q.get("model"),
            limit=int(limit) if limit else None,
        )

    # -- handlers ----------------------------------------------------------------------------------------

    async def create_key(self, request: Exchange) -> None:
        fields = key_fields(await self._json_body(request), creating=True)
        rec, secret = new_key(fields.pop("name"))
        for name, value in fields.items():
            setattr(rec, name, value)
        await self.store.insert_key(rec)
        await self.gate.refresh()
        await self._send(request, 201, {"key": self._key_view(rec), "secret": secret})

    async def list_keys(self, request: Exchange) -> None:
        keys = sorted(await self.store.load_keys(), key=lambda k: k.created_at)
        await self._send(request, 200, {"data": [self._key_view(k) for k in keys]})

    async def one_key(self, request: Exchange) -> None:
        rest = request.path.rstrip("/").removeprefix("/admin/keys/")
        key_id, _, action = rest.partition("/")
        method = request.method
        if method == "GET" and not action:
            rec = await self.store.get_key(key_id)
        elif method == "PATCH" and not action:
            rec = await self.store.update_key(key_id, key_fields(await self._json_body(request), creating=False))
        elif method == "POST" and action in ("disable", "enable"):
            rec = await self.store.update_key(key_id, {"disabled": action == "disable"})
        elif method == "DELETE" and not action:
            if not await self.store.delete_key(key_id):
                raise GatewayError("not_found", f"no key {key_id!r}")
            await self.gate.refresh()
            await self._send(request, 200, {"id": key_id, "deleted": True})
            return
        else:
            raise GatewayError("not_found", f"no route for {method} {request.path}", code="unknown_url")
        if rec is None:
            raise GatewayError("not_found", f"no key {key_id!r}")
        if method != "GET":
            await self.gate.refresh()
        await self._send(request, 200, self._key_view(rec))

    async def usage(self, request: Exchange) -> None:
        q = self._query(request)
        flt = self._filter(q)
        await self.gate.writer.flush()  # this replica's settled records become visible at once
        rows = [r.public() for r in await self.store.query_usage(flt)]
        if q.get("format") == "csv":
            await request.respond(200, usage_csv(rows), content_type="text/csv; charset=utf-8")
            return
        await self._send(request, 200, {"data": rows})

    async def usage_summary(self, request: Exchange) -> None:
        q = self._query(request)
        flt = self._filter(q)
        await self.gate.writer.flush()
        by = dimensions(q.get("by", "key_id,model_requested"))
        await self._send(request, 200, {"data": await self.store.summarize_usage(flt, by)})
