"""The caller's wallet (their team's, for a team member): ``GET /wallet`` (balance and ledger, newest first) and
``POST /redeem`` {code}."""

from __future__ import annotations

from typing import Any

from omnirelay.admin.common import query
from omnirelay.console.common import ApiRoute, Caller, decode_cursor, encode_cursor, json_object, page_limit, send, usd
from omnirelay.console.context import ConsoleContext
from omnirelay.state.accounts import LedgerEntry
from omnirelay.state.fields import bad
from omnirelay.web.exchange import Exchange


def entry_view(e: LedgerEntry) -> dict[str, Any]:
    return {
        "id": e.id,
        "created_at": e.created_at,
        "amount_usd": usd(e.amount_units),
        "kind": e.kind,
        "reason": e.reason,
        "actor": e.actor,
        "ref": e.ref,
    }


async def ledger_page(ctx: ConsoleContext, request: Exchange, wallet_id: str, wallet: str) -> None:
    """A wallet's balance and one page of its ledger (the shape of /wallet and /admin/ledger)."""
    q = query(request)
    limit = page_limit(q)
    cursor = decode_cursor(q.get("cursor"))
    before: int | None = None
    if cursor is not None:
        if len(cursor) != 1 or not isinstance(cursor[0], int) or isinstance(cursor[0], bool):
            raise bad("cursor", "cursor is not one this API returned")
        before = cursor[0]
    balance = await ctx.balance_units(wallet_id)
    entries = await ctx.accounts.ledger(wallet_id, limit + 1, before)
    page = entries[:limit]
    more = len(entries) > limit
    body = {
        "balance_usd": usd(balance),
        "wallet": wallet,
        "wallet_id": wallet_id,
        "ledger": [entry_view(e) for e in page],
        "next_cursor": encode_cursor(page[-1].id) if more and page else None,
    }
    await send(request, 200, body)


class WalletApi:
    def __init__(self, ctx: ConsoleContext) -> None:
        self.ctx = ctx

    async def wallet(self, request: Exchange, caller: Caller) -> None:
        user = caller.user
        assert user is not None
        await ledger_page(self.ctx, request, user.wallet_id, "team" if user.team_id is not None else "user")

    async def redeem(self, request: Exchange, caller: Caller) -> None:
        assert caller.user is not None
        code = (await json_object(request)).get("code")
        if not isinstance(code, str) or not code.strip() or len(code) > 200:
            raise bad("code", "code must be a string")
        amount, _ = await self.ctx.accounts.redeem(code.strip(), caller.user)
        await self.ctx.after_money_moved()
        balance = await self.ctx.balance_units(caller.user.wallet_id)
        await send(request, 200, {"amount_usd": usd(amount), "balance_usd": usd(balance)})

    def routes(self) -> list[ApiRoute]:
        return [("GET", "/wallet", self.wallet), ("POST", "/redeem", self.redeem)]
