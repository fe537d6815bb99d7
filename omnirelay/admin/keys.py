"""``/admin/keys``: virtual keys.

  POST   /admin/keys                 {name, credit?, models?, rpm?, tpm?, expires_at?} -> 201 {key, secret}
  GET    /admin/keys                 -> {data: [key...]}
  GET    /admin/keys/{id}            -> key
  PATCH  /admin/keys/{id}            any of {name, credit, models, rpm, tpm, expires_at, disabled}; null clears
  POST   /admin/keys/{id}/disable    (and /enable) -> key
  DELETE /admin/keys/{id}            -> {id, deleted: true}

The secret of a new key is returned once and never again; the settings are checked by ``state/fields.py``.
"""

from __future__ import annotations

from omnirelay.admin.common import json_body, send_json
from omnirelay.core.errors import GatewayError
from omnirelay.state.fields import key_fields
from omnirelay.state.gate import KeyGate
from omnirelay.state.keys import KeyRecord, new_key
from omnirelay.web.exchange import Exchange
from omnirelay.web.routes import Endpoint


class KeysApi:
    """The key endpoints over one gate's store; every change refreshes the gate's cached keys at once."""

    def __init__(self, gate: KeyGate) -> None:
        self.gate = gate
        self.store = gate.store

    def endpoints(self) -> list[Endpoint]:
        one_key = [Endpoint(method, "/keys/*", self.one_key) for method in ("GET", "PATCH", "POST", "DELETE")]
        return [Endpoint("POST", "/keys", self.create_key), Endpoint("GET", "/keys", self.list_keys), *one_key]

    def _key_view(self, rec: KeyRecord) -> dict[str, object]:
        view = rec.public()
        pending = self.gate.pending_units.get(rec.id, 0)
        view["spent"] = (rec.spent_units + pending) / 1e10
        balance = self.gate.balance_units(rec)
        view["balance"] = None if balance is None else balance / 1e10
        return view

    async def create_key(self, request: Exchange) -> None:
        fields = key_fields(await json_body(request), creating=True)
        rec, secret = new_key(fields.pop("name"))
        for name, value in fields.items():
            setattr(rec, name, value)
        await self.store.insert_key(rec)
        await self.gate.refresh()
        await send_json(request, 201, {"key": self._key_view(rec), "secret": secret})

    async def list_keys(self, request: Exchange) -> None:
        keys = sorted(await self.store.load_keys(), key=lambda k: k.created_at)
        await send_json(request, 200, {"data": [self._key_view(k) for k in keys]})

    async def one_key(self, request: Exchange) -> None:
        rest = request.path.rstrip("/").removeprefix("/admin/keys/")
        key_id, _, action = rest.partition("/")
        if "\x00" in key_id:  # no key has one, and PostgreSQL cannot even compare it
            raise GatewayError("not_found", "no such key")
        method = request.method
        if method == "GET" and not action:
            rec = await self.store.get_key(key_id)
        elif method == "PATCH" and not action:
            rec = await self.store.update_key(key_id, key_fields(await json_body(request), creating=False))
        elif method == "POST" and action in ("disable", "enable"):
            rec = await self.store.update_key(key_id, {"disabled": action == "disable"})
        elif method == "DELETE" and not action:
            if not await self.store.delete_key(key_id):
                raise GatewayError("not_found", f"no key {key_id!r}")
            await self.gate.refresh()
            await send_json(request, 200, {"id": key_id, "deleted": True})
            return
        else:
            raise GatewayError("not_found", f"no route for {method} {request.path}", code="unknown_url")
        if rec is None:
            raise GatewayError("not_found", f"no key {key_id!r}")
        if method != "GET":
            await self.gate.refresh()
        await send_json(request, 200, self._key_view(rec))
