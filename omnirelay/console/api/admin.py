"""Administration: users, teams, groups, top-ups, redemption codes and any wallet's ledger. The same handlers
serve ``/console/api/admin/*`` (a signed-in admin, with CSRF) and ``/admin/*`` (the admin key), so the two APIs
cannot drift apart.

  GET/POST /users {email, password, role, team_id?, group?};  PATCH/DELETE /users/{id} (role, team_id, group,
           disabled, password);  POST /users/{id}/topup {amount_usd, reason}
  GET/POST /teams {name, group?};  PATCH/DELETE /teams/{id};  POST /teams/{id}/topup
  GET/POST /groups {name, multiplier};  PATCH /groups/{name}
  GET/POST /codes {count, amount_usd, expires_at?, note?} (?format=csv);  GET /codes?batch_id=
  GET /ledger?user_id=|team_id=
"""

from __future__ import annotations

import csv
import io
import math
from typing import Any

from omnirelay.admin.common import query
from omnirelay.console.api.wallet import ledger_page
from omnirelay.console.common import (
    ApiRoute,
    Caller,
    amount_units,
    json_object,
    no_content,
    not_found,
    path_id,
    required_text,
    send,
    send_csv,
    text_field,
    usd,
)
from omnirelay.console.context import ConsoleContext
from omnirelay.core.errors import GatewayError
from omnirelay.state.accounts import ROLES, AccountStore, Code, Team, User
from omnirelay.state.fields import bad, checked_time, is_number
from omnirelay.state.passwords import hash_password_async, password_problem
from omnirelay.web.exchange import Exchange

MAX_CODES_PER_BATCH = 1000
MAX_MULTIPLIER = 1000.0
MAX_EMAIL_LENGTH = 320


def email_field(body: dict[str, Any]) -> str:
    email = body.get("email")
    if not isinstance(email, str) or "@" not in email or len(email) > MAX_EMAIL_LENGTH or "\x00" in email:
        raise bad("email", "email must be an email address")
    return email.strip().lower()


def role_field(body: dict[str, Any]) -> str:
    role = body.get("role", "member")
    if role not in ROLES:
        raise bad("role", "role must be admin or member")
    return str(role)


def multiplier_field(body: dict[str, Any]) -> float:
    value: Any = body.get("multiplier")
    if not is_number(value) or not math.isfinite(value) or not 0 <= value <= MAX_MULTIPLIER:
        raise bad("multiplier", f"multiplier must be a number between 0 and {MAX_MULTIPLIER:g}")
    return float(value)


def optional_id(body: dict[str, Any], field: str) -> str | None:
    value = body.get(field)
    if value is not None and (not isinstance(value, str) or not value or len(value) > 200 or "\x00" in value):
        raise bad(field, f"{field} must be a string or null")
    return value


def code_view(c: Code) -> dict[str, Any]:
    return {
        "id": c.id,
        "batch_id": c.batch_id,
        "amount_usd": usd(c.amount_units),
        "created_at": c.created_at,
        "expires_at": c.expires_at,
        "redeemed_by": c.redeemed_by,
        "redeemed_at": c.redeemed_at,
        "note": c.note,
    }


class AdminApi:
    def __init__(self, ctx: ConsoleContext) -> None:
        self.ctx = ctx

    @property
    def accounts(self) -> AccountStore:
        return self.ctx.accounts

    # -- users -------------------------------------------------------------------------------------------

    async def list_users(self, request: Exchange, caller: Caller) -> None:
        users: list[User] = await self.accounts.list_users()
        await send(request, 200, {"data": [await self.ctx.user_view(u) for u in users]})

    async def create_user(self, request: Exchange, caller: Caller) -> None:
        body = await json_object(request)
        email, role = email_field(body), role_field(body)
        problem = password_problem(body.get("password"))
        if problem is not None:
            raise bad("password", problem)
        user = await self.accounts.create_user(
            email,
            await hash_password_async(body["password"]),
            role,
            team_id=optional_id(body, "team_id"),
            group=optional_id(body, "group"),
        )
        await send(request, 201, await self.ctx.user_view(user))

    async def one_user(self, request: Exchange, caller: Caller) -> None:
        user_id, action = path_id(request, "/users/")
        user = await self.accounts.get_user(user_id)
        if user is None:
            raise not_found(f"no user {user_id!r}")
        if request.method == "POST" and action == "topup":
            await self._topup(request, caller, user.wallet_id)
            return
        if action:
            raise not_found(f"no route for {request.method} {request.path}")
        if request.method == "DELETE":
            if caller.user is not None and caller.user.id == user_id:
                raise GatewayError("invalid_request", "you cannot delete yourself", status=409, code="self_delete")
            await self.accounts.delete_user(user_id)
            await self.ctx.gate.refresh()
            await no_content(request)
            return
        fields = await self._user_fields(await json_object(request))
        updated = await self.accounts.update_user(user_id, fields)
        if updated is None:
            raise not_found(f"no user {user_id!r}")
        await self.ctx.gate.refresh()
        await send(request, 200, await self.ctx.user_view(updated))

    async def _user_fields(self, body: dict[str, Any]) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        for name in body:
            if name not in ("role", "team_id", "group", "disabled", "password", "email"):
                raise bad(name, f"unknown user field {name!r}")
        if "role" in body:
            fields["role"] = role_field(body)
        if "email" in body:
            fields["email"] = email_field(body)
        if "team_id" in body:
            fields["team_id"] = optional_id(body, "team_id")
        if "group" in body:
            fields["group_name"] = optional_id(body, "group")
        if "disabled" in body:
            if not isinstance(body["disabled"], bool):
                raise bad("disabled", "disabled must be true or false")
            fields["disabled"] = body["disabled"]
        if "password" in body:
            problem = password_problem(body["password"])
            if problem is not None:
                raise bad("password", problem)
            fields["password_hash"] = await hash_password_async(body["password"])
        return fields

    async def _topup(self, request: Exchange, caller: Caller, wallet_id: str) -> None:
        body = await json_object(request)
        amount = amount_units(body, allow_negative=True)
        reason = text_field(body, "reason", 500, required=False) or "top-up"
        kind = "topup" if amount > 0 else "adjust"
        await self.accounts.add_entry(wallet_id, amount, kind, reason, caller.actor)
        await self.ctx.after_money_moved()
        await send(request, 200, {"balance_usd": usd(await self.ctx.balance_units(wallet_id))})

    # -- teams and groups ----------------------------------------------------------------------------------

    def team_view(self, t: Team) -> dict[str, Any]:
        return {"id": t.id, "name": t.name, "group": t.group, "created_at": t.created_at, "wallet_id": f"team:{t.id}"}

    async def teams(self, request: Exchange, caller: Caller) -> None:
        if request.method == "GET":
            teams = await self.accounts.list_teams()
            data = []
            for t in teams:
                data.append({**self.team_view(t), "balance_usd": usd(await self.ctx.balance_units(f"team:{t.id}"))})
            await send(request, 200, {"data": data})
            return
        body = await json_object(request)
        team = await self.accounts.create_team(required_text(body, "name"), optional_id(body, "group"))
        await send(request, 201, {**self.team_view(team), "balance_usd": 0.0})

    async def one_team(self, request: Exchange, caller: Caller) -> None:
        team_id, action = path_id(request, "/teams/")
        team = await self.accounts.get_team(team_id)
        if team is None:
            raise not_found(f"no team {team_id!r}")
        if request.method == "POST" and action == "topup":
            await self._topup(request, caller, f"team:{team_id}")
            return
        if action:
            raise not_found(f"no route for {request.method} {request.path}")
        if request.method == "DELETE":
            await self.accounts.delete_team(team_id)
            await self.ctx.gate.refresh()
            await no_content(request)
            return
        body = await json_object(request)
        name = text_field(body, "name", required=False)
        updated = await self.accounts.update_team(team_id, name, optional_id(body, "group"), "group" in body)
        if updated is None:
            raise not_found(f"no team {team_id!r}")
        await self.ctx.gate.refresh()
        await send(request, 200, self.team_view(updated))

    async def groups(self, request: Exchange, caller: Caller) -> None:
        if request.method == "GET":
            groups = await self.accounts.list_groups()
            await send(request, 200, {"data": [{"name": g.name, "multiplier": g.multiplier} for g in groups]})
            return
        body = await json_object(request)
        group = await self.accounts.create_group(required_text(body, "name", 100), multiplier_field(body))
        await send(request, 201, {"name": group.name, "multiplier": group.multiplier})

    async def one_group(self, request: Exchange, caller: Caller) -> None:
        name, action = path_id(request, "/groups/")
        if action:
            raise not_found(f"no route for {request.method} {request.path}")
        group = await self.accounts.update_group(name, multiplier_field(await json_object(request)))
        if group is None:
            raise not_found(f"no group {name!r}")
        await self.ctx.gate.refresh()
        await send(request, 200, {"name": group.name, "multiplier": group.multiplier})

    # -- codes and ledgers ---------------------------------------------------------------------------------

    async def codes(self, request: Exchange, caller: Caller) -> None:
        q = query(request)
        if request.method == "GET":
            codes = await self.accounts.list_codes(q.get("batch_id") or None)
            await send(request, 200, {"data": [code_view(c) for c in codes]})
            return
        body = await json_object(request)
        count = body.get("count", 1)
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_CODES_PER_BATCH:
            raise bad("count", f"count must be an integer between 1 and {MAX_CODES_PER_BATCH}")
        amount = amount_units(body)
        expires_at = _expires(body.get("expires_at"))
        note = text_field(body, "note", 500, required=False)
        batch_id, made = await self.accounts.create_codes(count, amount, expires_at, note, caller.actor)
        if q.get("format") == "csv":
            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(["id", "code", "amount_usd", "expires_at"])
            for code_id, code in made:
                writer.writerow([code_id, code, usd(amount), "" if expires_at is None else expires_at])
            await send_csv(request, out.getvalue(), f"codes-{batch_id}.csv")
            return
        await send(request, 201, {"batch_id": batch_id, "codes": [{"id": i, "code": c} for i, c in made]})

    async def ledger(self, request: Exchange, caller: Caller) -> None:
        q = query(request)
        user_id, team_id = q.get("user_id") or None, q.get("team_id") or None
        if (user_id is None) == (team_id is None):
            raise bad("user_id", "give exactly one of user_id and team_id")
        if user_id is not None:
            user = await self.accounts.get_user(user_id)
            if user is None:
                raise not_found(f"no user {user_id!r}")
            await ledger_page(self.ctx, request, f"user:{user.id}", "user")
            return
        assert team_id is not None
        if await self.accounts.get_team(team_id) is None:
            raise not_found(f"no team {team_id!r}")
        await ledger_page(self.ctx, request, f"team:{team_id}", "team")

    def routes(self) -> list[ApiRoute]:
        """Paths below the admin prefix (``/console/api/admin`` or ``/admin``)."""
        return [
            ("GET", "/users", self.list_users),
            ("POST", "/users", self.create_user),
            *((m, "/users/*", self.one_user) for m in ("PATCH", "DELETE", "POST")),
            ("GET", "/teams", self.teams),
            ("POST", "/teams", self.teams),
            *((m, "/teams/*", self.one_team) for m in ("PATCH", "DELETE", "POST")),
            ("GET", "/groups", self.groups),
            ("POST", "/groups", self.groups),
            ("PATCH", "/groups/*", self.one_group),
            ("GET", "/codes", self.codes),
            ("POST", "/codes", self.codes),
            ("GET", "/ledger", self.ledger),
        ]


def _expires(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        return checked_time(value, "expires_at")
    if not is_number(value) or not math.isfinite(value) or value <= 0:
        raise bad("expires_at", "expires_at must be unix seconds, ISO 8601, or null")
    return float(value)
