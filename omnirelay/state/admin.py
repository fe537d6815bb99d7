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
  GET    /admin/usage/rejected       ?limit -> records the database could not store (see state/usage.py)

Times are unix seconds, ISO 8601 (``2027-01-01``, ``2027-01-01T12:00:00Z``) or relative (``90s``, ``15m``,
``24h``, ``7d`` ago). The secret of a new key is returned once and never again. Numbers out of range (credit
above MAX_CREDIT_USD, rpm/tpm above a 32-bit integer, limit above MAX_QUERY_LIMIT, negative ones) and text
holding NUL are refused with 400 naming the field, never stored.
"""

from __future__ import annotations

import csv
import hmac
import io
import math
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import msgspec

from omnirelay.core.errors import GatewayError
from omnirelay.pipeline.gate import bearer_token
from omnirelay.server.exchange import Exchange
from omnirelay.state.gate import KeyGate
from omnirelay.state.keys import KeyRecord, new_key, parse_models, to_units
from omnirelay.state.store import SUMMARY_DIMENSIONS, USAGE_COLUMNS, UsageFilter

if TYPE_CHECKING:
    from omnirelay.server.app import App

ADMIN_BODY_LIMIT = 64 * 1024
# Bounds that every store holds: credit in units of 1e-10 USD must fit a signed 64-bit integer with room for
# what is spent; rpm/tpm are INTEGER (32 bits) in PostgreSQL.
MAX_CREDIT_USD = 100_000_000
MAX_RATE_LIMIT = 2**31 - 1
MAX_QUERY_LIMIT = 1_000_000_000
MAX_NAME_LENGTH = 200
MAX_TIME = 253402300799.0  # 9999-12-31T23:59:59Z
_LIMIT_DIGITS = re.compile(r"^[0-9]{1,10}$")
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


def _bad(field: str, message: str) -> GatewayError:
    return GatewayError("invalid_request", message, param=field)


def checked_time(text: str, field: str) -> float:
    """parse_time, refusing what no store can compare (NaN, infinities) or what is not a date (beyond 9999)."""
    value = parse_time(text, field)
    if not math.isfinite(value) or abs(value) > MAX_TIME:
        raise _bad(field, f"{field} is out of range: use a time between 1970 and 9999")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _text_without_nul(value: str, field: str) -> str:
    if "\x00" in value:
        raise _bad(field, f"{field} must not contain NUL characters")
    return value


def _credit_units(value: Any) -> int | None:
    # Compared before float(): an integer too large for a float would raise OverflowError.
    if value is None:
        return None
    if not _is_number(value) or value != value or not 0 <= value <= MAX_CREDIT_USD:
        raise _bad("credit", f"credit must be a number of USD between 0 and {MAX_CREDIT_USD}, or null")
    return to_units(float(value))


def _rate(value: Any, field: str) -> int | None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= MAX_RATE_LIMIT):
        raise _bad(field, f"{field} must be an integer between 1 and {MAX_RATE_LIMIT}, or null")
    return None if value is None else int(value)


def _expiry(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        return checked_time(value, "expires_at")
    if not _is_number(value) or value != value or not 0 <= value <= MAX_TIME:
        raise _bad("expires_at", "expires_at must be a time (unix seconds up to year 9999, ISO 8601) or null")
    return float(value)


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
            if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME_LENGTH:
                raise _bad("name", f"name must be a non-empty string of at most {MAX_NAME_LENGTH} characters")
            fields["name"] = _text_without_nul(value.strip(), "name")
        elif name == "credit":
            fields["credit_units"] = _credit_units(value)
        elif name == "models":
            if value is None:
                value = []
            if isinstance(value, str):
                value = parse_models(value)
            if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
                raise _bad("models", "models must be a list of glob patterns")
            fields["models"] = [_text_without_nul(p, "models") for p in value]
        elif name in ("rpm", "tpm"):
            fields[name] = _rate(value, name)
        elif name == "expires_at":
            fields["expires_at"] = _expiry(value)
        elif name == "disabled":
            if not isinstance(value, bool):
                raise _bad("disabled", "disabled must be true or false")
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
        app.route("GET", "/admin/usage/rejected", self._guard(self.usage_rejected))

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

    @staticmethod
    def _limit(q: dict[str, str]) -> int | None:
        limit = q.get("limit")
        if limit is None or limit == "":
            return None
        if not _LIMIT_DIGITS.match(limit) or not 0 < int(limit) <= MAX_QUERY_LIMIT:
            raise _bad("limit", f"limit must be an integer between 1 and {MAX_QUERY_LIMIT}")
        return int(limit)

    def _filter(self, q: dict[str, str]) -> UsageFilter:
        key_id = q.get("key") or q.get("key_id")
        model = q.get("model")
        return UsageFilter(
            since=checked_time(q["since"], "since") if "since" in q else None,
            until=checked_time(q["until"], "until") if "until" in q else None,
            key_id=None if key_id is None else _text_without_nul(key_id, "key"),
            model=None if model is None else _text_without_nul(model, "model"),
            limit=self._limit(q),
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
        if "\x00" in key_id:  # no key has one, and PostgreSQL cannot even compare it
            raise GatewayError("not_found", "no such key")
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

    async def usage_rejected(self, request: Exchange) -> None:
        limit = self._limit(self._query(request))
        await self.gate.writer.flush()
        rows = [r.public() for r in await self.store.query_rejected(limit)]
        await self._send(request, 200, {"data": rows})
