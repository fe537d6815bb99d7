"""The gate every request passes: who is calling, may they, and what they used.

``authenticate`` runs first (who is calling); ``admit`` once the request's plan of models is known (the models
the caller may not call are dropped from it, then limits and the credit reservation); ``settle`` after the
call, once per admitted request whatever the outcome, with the usage record. A compound request's upstream
calls (``heavy:`` agents, ``think:`` passes, tool-loop turns) are each admitted on their own
(``sub_admission`` + ``admit``: allow-list, limits, reservation) and charged as they end (``settle_sub``); the
outer request's record, which sums them, then charges only what is left. The relay and the call pipeline never touch
storage themselves: a Gate implementation owns that (``omnirelay.state``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from contextvars import ContextVar

import msgspec

from omnirelay.config import Config
from omnirelay.core.catalog import Price
from omnirelay.core.errors import GatewayError
from omnirelay.core.pricing import price_for
from omnirelay.core.records import UsageRecord
from omnirelay.core.types import ChatRequest
from omnirelay.routing.table import Route

# A plan as the gate sees it: each model to try, as the request (or the config's fallbacks) named it, and its
# route (whose public name may be another spelling of it: an alias resolves to the model it names).
Plan = list[tuple[str, Route]]

# The provider name of the compound engines' virtual channels (``think:``, ``heavy:``, ``deepsearch:``, the tool
# loop): their records sum sub-calls that were admitted and charged one by one (``sub_admission``).
COMPOUND_PROVIDER = "compound"


class Admission(msgspec.Struct, kw_only=True):
    key_id: str | None = None
    key_name: str | None = None
    reserved: float = 0.0  # USD held against the key's credit until settle
    headers: dict[str, str] = {}  # e.g. rate-limit headers for the response
    # The caller's price multiplier (its account's group, see state/accounts.py): every priced cost is multiplied
    # by it before it is shown, recorded or charged.
    multiplier: float = 1.0


def priced_for(admission: Admission | None, cost: float) -> float:
    """``cost`` (USD at list price) as ``admission``'s caller pays it; ten decimals, as ``core.pricing`` rounds."""
    m = 1.0 if admission is None else admission.multiplier
    return cost if m == 1.0 else round(cost * m, 10)


# The admission of the compound request being served: its engine's upstream calls run in the request's task (or
# in tasks it starts, which copy the context), and are admitted against the same caller.
compound_admission: ContextVar[Admission | None] = ContextVar("compound_admission", default=None)


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The caller's key: ``Authorization: Bearer`` (OpenAI) or ``x-api-key`` (Anthropic)."""
    auth = headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    key = headers.get("x-api-key")
    return key.strip() if key else None


async def authenticated(gate: Gate, token: str | None) -> Admission:
    """``gate.authenticate(token)``, tried once more after ``gate.look_up`` when it refuses: a key issued a moment
    ago on another worker or replica is let in at once. Every endpoint authenticates through this."""
    try:
        return gate.authenticate(token)
    except GatewayError as err:
        if err.status != 401 or not await gate.look_up(token):
            raise
    return gate.authenticate(token)


class Gate(ABC):
    def __init__(self, config: Config) -> None:
        self.config = config

    async def start(self) -> None:
        """Open connections, load caches."""

    async def stop(self) -> None:
        """Flush pending records and close connections."""

    @abstractmethod
    def authenticate(self, token: str | None) -> Admission:
        """Who is calling: 401 for a caller the gate does not let in. ``admit`` completes the admission."""

    async def look_up(self, token: str | None) -> bool:
        """``authenticate`` refused ``token``: True if the gate has since learnt a key for it (one issued a moment
        ago elsewhere), so that authenticating again may succeed."""
        return False

    @abstractmethod
    async def admit(
        self, admission: Admission, req: ChatRequest, protocol: str, plan: Plan, reserve: float | None = None
    ) -> list[Route]:
        """May the caller make this request: the models of ``plan`` it may not call are dropped (403 when none
        is left), then rate limits and credit (429), holding a reservation until settle. The routes to try.
        ``reserve``: the worst-case cost in USD when the caller knows it better than a chat request's token
        estimate (an image generation request: per image)."""

    def permitted(self, admission: Admission, req: ChatRequest, plan: Plan) -> list[Route]:
        """The routes of ``plan`` the caller may call (403 when none), without limits or a reservation: for
        requests that use no model, such as counting tokens."""
        return [route for _name, route in plan]

    def sub_admission(self, outer: Admission) -> Admission:
        """A fresh admission for one upstream call of the compound request admitted as ``outer``: the same
        caller. ``admit`` it like a request, end it with ``settle_sub``."""
        return Admission(key_id=outer.key_id, key_name=outer.key_name, multiplier=outer.multiplier)

    async def settle_sub(self, admission: Admission, tokens: int, cost: float) -> None:
        """A compound sub-call ended (``tokens`` and ``cost`` USD: what it used, 0 if it was cut short
        unanswered): release its reservation and charge its cost now. Must not raise."""
        return None

    @abstractmethod
    async def settle(self, admission: Admission, record: UsageRecord) -> None:
        """Record usage and charge the key. Must not raise: the reply is already on its way. Idempotent per
        admission: the relay settles before a reply's last byte and again, as a no-op, when it finishes."""

    def price(self, model_used: str | None, model_requested: str) -> Price | None:
        overrides = self.config.prices
        found = price_for(model_used, overrides) if model_used else None
        return found if found is not None else price_for(model_requested, overrides)
