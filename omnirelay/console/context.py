"""What the console's route modules are built from: the gate (keys, the store, the usage writer), the route table,
the session guard, and the two things only the server can do, handed in by it: run a chat request through the
relay as a given admission, and send a test call to a channel."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from omnirelay.config import Config
from omnirelay.console.common import user_view
from omnirelay.console.session import Sessions
from omnirelay.pipeline.gate import Admission
from omnirelay.routing.table import RouteTable
from omnirelay.state.accounts import AccountStore, User
from omnirelay.state.gate import KeyGate
from omnirelay.web.exchange import Exchange

# Serve ``body`` (an OpenAI chat completions request) on ``exchange`` as ``admission``'s caller.
ChatRunner = Callable[[Exchange, bytes, Admission], Awaitable[None]]
# One small call to (upstream, model or None: the upstream's first model): {ok, latency_ms, status, error}.
ChannelTester = Callable[[str, str | None], Awaitable[dict[str, Any]]]


class ConsoleContext:
    def __init__(
        self, config: Config, gate: KeyGate, routes: RouteTable, chat: ChatRunner, test_channel: ChannelTester
    ) -> None:
        self.config = config
        self.gate = gate
        self.store = gate.store
        self.routes = routes
        self.chat = chat
        self.test_channel = test_channel
        self.sessions = Sessions(gate.store.accounts, config.console)

    @property
    def accounts(self) -> AccountStore:
        return self.store.accounts

    async def balance_units(self, wallet_id: str) -> int:
        """The wallet's balance with every usage record this replica settled written first."""
        await self.gate.writer.flush()
        return (await self.accounts.wallet(wallet_id)).balance_units

    async def user_view(self, user: User) -> dict[str, Any]:
        team = await self.accounts.get_team(user.team_id) if user.team_id is not None else None
        group = await self.accounts.group_of(user)
        balance = await self.balance_units(user.wallet_id)
        return user_view(user, group, balance, {"id": team.id, "name": team.name} if team is not None else None)

    async def after_money_moved(self) -> None:
        """A wallet's credit changed (top-up, code): the gate sees it now, not at its next refresh."""
        await self.gate.refresh()
