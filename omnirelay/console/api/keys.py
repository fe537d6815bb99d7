"""Tokens: the signed-in user's own keys (admins too see only their own here; /admin/keys lists every key).

  GET    /keys          -> {data: [Key]}
  POST   /keys          {name, models?, rpm?, tpm?, credit_usd?, expires_at?} -> 201 Key + {secret}
  PATCH  /keys/{id}     {name?, models?, rpm?, tpm?, credit_usd?, expires_at?, disabled?} -> Key
  DELETE /keys/{id}     -> 204
  GET    /keys/{id}     -> Key (beyond the contract: one key by id)

Another user's key id answers 404, exactly as an unknown one does.
"""

from __future__ import annotations

from typing import Any

from omnirelay.console.common import ApiRoute, Caller, json_object, no_content, not_found, path_id, send, usd
from omnirelay.console.context import ConsoleContext
from omnirelay.state.fields import bad, key_fields
from omnirelay.state.keys import KeyRecord, display_prefix, new_key
from omnirelay.web.exchange import Exchange

PLAYGROUND_KEY_NAME = "console playground"


def key_body(body: dict[str, Any], creating: bool) -> dict[str, Any]:
    """The console's spelling (credit_usd) to the store's fields, validated as the admin API does."""
    if "credit" in body:
        raise bad("credit", "the console spells it credit_usd")
    if "credit_usd" in body:
        body = {("credit" if k == "credit_usd" else k): v for k, v in body.items()}
    return key_fields(body, creating=creating)


class KeysApi:
    def __init__(self, ctx: ConsoleContext) -> None:
        self.ctx = ctx

    def key_view(self, rec: KeyRecord) -> dict[str, Any]:
        spent = rec.spent_units + self.ctx.gate.pending_units.get(rec.id, 0)
        return {
            "id": rec.id,
            "name": rec.name,
            "prefix": display_prefix(rec.id),
            "created_at": rec.created_at,
            "expires_at": rec.expires_at,
            "disabled": rec.disabled,
            "models": rec.models,
            "rpm": rec.rpm,
            "tpm": rec.tpm,
            "credit_usd": None if rec.credit_units is None else usd(rec.credit_units),
            "spent_usd": usd(spent),
        }

    async def own_key(self, caller: Caller, key_id: str) -> KeyRecord:
        """The caller's key with this id; 404 for anyone else's."""
        assert caller.user is not None
        rec = await self.ctx.store.get_key(key_id)
        if rec is None or rec.owner_user_id != caller.user.id:
            raise not_found(f"no key {key_id!r}")
        return rec

    async def list_keys(self, request: Exchange, caller: Caller) -> None:
        assert caller.user is not None
        keys = await self.ctx.accounts.keys_of(caller.user.id)
        await send(request, 200, {"data": [self.key_view(k) for k in keys]})

    async def create_key(self, request: Exchange, caller: Caller) -> None:
        assert caller.user is not None
        fields = key_body(await json_object(request), creating=True)
        rec, secret = new_key(fields.pop("name"), owner_user_id=caller.user.id)
        for name, value in fields.items():
            setattr(rec, name, value)
        await self.ctx.store.insert_key(rec)
        await self.ctx.gate.refresh()
        await send(request, 201, {**self.key_view(rec), "secret": secret})

    async def one_key(self, request: Exchange, caller: Caller) -> None:
        key_id, action = path_id(request, "/keys/")
        if action:
            raise not_found(f"no route for {request.method} {request.path}")
        rec = await self.own_key(caller, key_id)
        if request.method == "GET":
            await send(request, 200, self.key_view(rec))
            return
        if request.method == "DELETE":
            await self.ctx.store.delete_key(key_id)
            await self.ctx.gate.refresh()
            await no_content(request)
            return
        fields = key_body(await json_object(request), creating=False)
        updated = await self.ctx.store.update_key(key_id, fields) if fields else rec
        if updated is None:
            raise not_found(f"no key {key_id!r}")
        await self.ctx.gate.refresh()
        await send(request, 200, self.key_view(updated))

    async def playground_key(self, caller: Caller) -> KeyRecord:
        """The user's "console playground" key, made on first use (its secret is never shown: the console
        authenticates it by id, in process)."""
        assert caller.user is not None
        for rec in await self.ctx.accounts.keys_of(caller.user.id):
            if rec.name == PLAYGROUND_KEY_NAME:
                return rec
        rec, _secret = new_key(PLAYGROUND_KEY_NAME, owner_user_id=caller.user.id)
        await self.ctx.store.insert_key(rec)
        await self.ctx.gate.refresh()
        return rec

    def routes(self) -> list[ApiRoute]:
        return [
            ("GET", "/keys", self.list_keys),
            ("POST", "/keys", self.create_key),
            ("GET", "/keys/*", self.one_key),
            ("PATCH", "/keys/*", self.one_key),
            ("DELETE", "/keys/*", self.one_key),
        ]
