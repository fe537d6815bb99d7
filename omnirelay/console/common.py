"""What the console's API modules share: the signed-in caller, JSON in and out, money and ids in JSON, paging."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from omnirelay.core.errors import GatewayError
from omnirelay.state.accounts import Group, User
from omnirelay.state.fields import bad, is_number
from omnirelay.state.keys import UNITS_PER_USD, to_units
from omnirelay.web.exchange import Exchange
from omnirelay.web.json_body import read_json_object

BODY_LIMIT = 64 * 1024  # every console JSON body but the playground's (which has the chat endpoints' limit)
MAX_PAGE = 500
MAX_AMOUNT_USD = 1_000_000.0


class Caller(msgspec.Struct, kw_only=True):
    """Who a console or admin handler acts for: a signed-in user (with their session), or the admin key."""

    user: User | None  # None: the admin API's master key
    session_id: str | None = None

    @property
    def actor(self) -> str:
        return self.user.email if self.user is not None else "admin-key"

    @property
    def is_admin(self) -> bool:
        return self.user is None or self.user.role == "admin"


CallerHandler = Callable[[Exchange, Caller], Awaitable[None]]
ApiRoute = tuple[str, str, CallerHandler]  # method, path below /console/api (or /admin), handler


async def json_object(request: Exchange, limit: int = BODY_LIMIT) -> dict[str, Any]:
    return await read_json_object(request, limit)


async def send(request: Exchange, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
    await request.respond(status, msgspec.json.encode(body), headers={"cache-control": "no-store", **(headers or {})})


async def no_content(request: Exchange) -> None:
    await request.respond(204, b"", headers={"cache-control": "no-store"})


async def send_csv(request: Exchange, text: str, filename: str) -> None:
    headers = {"cache-control": "no-store", "content-disposition": f'attachment; filename="{filename}"'}
    await request.respond(200, text.encode(), content_type="text/csv; charset=utf-8", headers=headers)


def csv_cell(value: Any) -> Any:
    """A value for a CSV export: text a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@`` first, as
    a client-chosen model name can be) gets a leading apostrophe; everything else as it is."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def usd(units: int) -> float:
    return units / UNITS_PER_USD


def amount_units(body: dict[str, Any], field: str = "amount_usd", allow_negative: bool = False) -> int:
    value: Any = body.get(field)
    low = -MAX_AMOUNT_USD if allow_negative else 0.0
    if not is_number(value) or value != value or not low <= value <= MAX_AMOUNT_USD or value == 0:
        sign = "a non-zero" if allow_negative else "a positive"
        raise bad(field, f"{field} must be {sign} number of USD of at most {MAX_AMOUNT_USD:g}")
    return to_units(float(value))


def text_field(body: dict[str, Any], field: str, max_len: int = 200, required: bool = True) -> str | None:
    value = body.get(field)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > max_len or "\x00" in value:
        raise bad(field, f"{field} must be a non-empty string of at most {max_len} characters")
    return value.strip()


def required_text(body: dict[str, Any], field: str, max_len: int = 200) -> str:
    value = text_field(body, field, max_len)
    assert value is not None
    return value


def path_id(request: Exchange, prefix: str) -> tuple[str, str]:
    """The id after ``prefix`` in the path and what follows it (``/users/<id>/topup`` -> (id, "topup"))."""
    rest = request.path.rstrip("/").split(prefix, 1)[-1]
    ident, _, action = rest.partition("/")
    if not ident or "\x00" in ident or len(ident) > 200:
        raise not_found("no such object")
    return ident, action


def not_found(message: str) -> GatewayError:
    return GatewayError("not_found", message)


def page_limit(q: dict[str, str], default: int = 50) -> int:
    text = q.get("limit") or str(default)
    if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE:
        raise bad("limit", f"limit must be an integer between 1 and {MAX_PAGE}")
    return int(text)


def encode_cursor(*parts: Any) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(list(parts))).decode().rstrip("=")


def decode_cursor(text: str | None) -> list[Any] | None:
    if not text:
        return None
    try:
        parts = msgspec.json.decode(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise bad("cursor", "cursor is not one this API returned") from None
    if not isinstance(parts, list):
        raise bad("cursor", "cursor is not one this API returned")
    return parts


def user_view(user: User, group: Group, balance_units: int, team: dict[str, str] | None) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "role": user.role,
        "team": team,
        "team_id": user.team_id,
        "group": group.name,
        "multiplier": group.multiplier,
        "balance_usd": usd(balance_units),
        "wallet": "team" if user.team_id is not None else "user",
        "disabled": user.disabled,
        "created_at": user.created_at,
    }
