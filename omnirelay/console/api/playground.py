"""``POST /playground/chat``: an OpenAI chat completions request, answered exactly as ``/v1/chat/completions``
answers it (SSE with ``stream: true``), served by the relay as the signed-in user's "console playground" key:
the same allow-list, limits, wallet reservation, usage record and charge as any of their keys."""

from __future__ import annotations

from omnirelay.console.api.keys import KeysApi
from omnirelay.console.common import ApiRoute, Caller
from omnirelay.console.context import ConsoleContext
from omnirelay.web.exchange import Exchange


class PlaygroundApi:
    def __init__(self, ctx: ConsoleContext, keys: KeysApi) -> None:
        self.ctx = ctx
        self.keys = keys

    async def chat(self, request: Exchange, caller: Caller) -> None:
        body = await request.body(self.ctx.config.server.max_body_bytes)
        key = await self.keys.playground_key(caller)
        admission = self.ctx.gate.authenticate_key_id(key.id)
        await self.ctx.chat(request, body, admission)

    def routes(self) -> list[ApiRoute]:
        return [("POST", "/playground/chat", self.chat)]
