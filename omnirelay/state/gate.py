"""KeyGate: the Gate backed by issued keys, balances, limits and usage records.

Hot path: ``admit`` reads keys from an in-memory cache (refreshed from the database every
``state.key_refresh_s``, so a revoked, disabled or changed key takes effect within about twice that: one
interval plus the query) and checks limits in memory, or with one Redis round trip when Redis is
configured. ``settle`` journals the record (see state/usage.py for the guarantee), releases the reservation and
charges the key; the database insert is batched by ``UsageWriter``.

Rejections (the relay renders them in the caller's protocol):
  401 authentication / invalid_api_key   no key, unknown key, disabled key, expired key (as OpenAI does
                                         for revoked keys: a key that no longer works is not authenticated)
  403 permission / model_not_allowed     the key's allow-list matches none of the models of the request's plan
                                         (the requested model and its fallbacks; a fallback it does not match
                                         is skipped), or of a compound sub-call's
  403 permission / model_not_priced      a key with credit and a model without a price (it would be free)
  429 quota / insufficient_quota         the credit left (credit - spent - reservations in flight) cannot
                                         cover the request's worst case (see ``_reserve_units``)
  429 rate_limit / rate_limit_exceeded   RPM or TPM exceeded, with Retry-After and the rate-limit headers

Every upstream call a compound request makes is admitted like a request of its own (allow-list, RPM, TPM and
its own reservation) and charged as it ends; the outer request counts one request and charges only what its
calls did not. So with reservations at the worst case a key's spending stays within its credit, however many
agents run at once (as long as upstreams honour max_tokens).

Openness: with ``server.open`` unset the gateway is open only while no master key is set and the store has
never held a key (a laptop setup); the first key created closes it for good (deleting every key afterwards,
e.g. after a leak, leaves it closed). ``server.open: true`` / ``false`` decide it explicitly. The master key
(``server.master_key``) always passes, without limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import math
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omnirelay.config import Config
from omnirelay.core.errors import GatewayError
from omnirelay.core.estimate import estimate_request_tokens
from omnirelay.core.ids import new_id
from omnirelay.core.pricing import PER_TOKEN, max_output_for
from omnirelay.core.reasoning import budget_of
from omnirelay.core.records import ResponseStore, UsageRecord
from omnirelay.core.types import ChatRequest
from omnirelay.core.usage_bounds import sane_cost, sane_usage
from omnirelay.pipeline.gate import COMPOUND_PROVIDER, Admission, Gate
from omnirelay.state.backends import open_store
from omnirelay.state.keys import (
    UNITS_PER_USD,
    KeyRecord,
    ModelMatcher,
    hash_secret,
    key_id_of,
    secret_matches,
    to_units,
    to_usd,
)
from omnirelay.state.local_limits import Decision, Limiter, Limits, LocalLimiter
from omnirelay.state.responses import ResponseSweeper
from omnirelay.state.store import Store, UsageRow
from omnirelay.state.usage import UsageWriter
from omnirelay.state.wallet_cache import CachedWallet, KeyOwnership, ownerships

if TYPE_CHECKING:
    from omnirelay.pipeline.gate import Plan
    from omnirelay.routing.table import Route

# Store reads per second (per process) for key ids the cache does not know (KeyGate.look_up).
LOOKUPS_PER_SECOND = 50

log = logging.getLogger("omnirelay.state")

_DUMMY = KeyRecord(id="", name="", secret_hash=hash_secret("x"), created_at=0.0, updated_at=0.0)


class KeyAdmission(Admission, kw_only=True):
    """What admit and settle need back from authenticate and admit."""

    key: Any = None  # CachedKey; None: the master key or an open gateway
    reservation: str = ""
    est_tokens: int = 0
    tpm_tracked: bool = False
    credit_tracked: bool = False
    shared: bool = False  # limits were taken in Redis (False: in this process)
    settled: bool = False
    parent: Any = None  # a compound sub-call's: the outer request's KeyAdmission
    precharged_units: int = 0  # an outer compound request's: what its sub-calls charged already
    wallet_limiter_id: str = ""  # the owner's wallet holds a reservation of this request too (wallet_cache.py)
    wallet_shared: bool = False  # ... in Redis


# A route's worst-case rates: units per input token and per output token, and the most output one call makes.
RouteRates = tuple[float, float, int | None]
_UNPRICED: RouteRates = (-1.0, -1.0, None)


class CachedKey:
    __slots__ = ("matcher", "ownership", "record", "rpm_text", "tpm_text")

    def __init__(self, record: KeyRecord, matcher: ModelMatcher, ownership: KeyOwnership | None = None) -> None:
        self.record = record
        self.matcher = matcher
        self.ownership = ownership  # None: a key of its own (no console user owns it)
        # The limits as header values: once per key version rather than on every request.
        self.rpm_text = str(record.rpm)
        self.tpm_text = str(record.tpm)


def openai_reset(seconds: float) -> str:
    """OpenAI's duration spelling for x-ratelimit-reset-*: ``250ms``, ``1.5s``, ``6m0s``."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    if seconds < 60:
        return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"
    minutes, rest = divmod(math.ceil(seconds), 60)
    return f"{minutes}m{rest}s"


# The reset headers change with time, not with each request: their strings are cached at the headers'
# resolution (a millisecond for OpenAI's durations, a second for Anthropic's timestamps), so a busy key formats
# each one once. Under steady load the windows' oldest bucket always ends within the coming second, so the
# OpenAI cache holds about a thousand strings; both are emptied when full rather than tracking use.
_RESET_CACHE_SIZE = 4096
_openai_resets: dict[int, str] = {}
_rfc3339_resets: dict[int, str] = {}


def openai_reset_cached(seconds: float) -> str:
    ms = round(seconds * 1000)
    text = _openai_resets.get(ms)
    if text is None:
        if len(_openai_resets) >= _RESET_CACHE_SIZE:
            _openai_resets.clear()
        text = _openai_resets[ms] = openai_reset(ms / 1000)
    return text


def rfc3339_at(epoch_s: int) -> str:
    text = _rfc3339_resets.get(epoch_s)
    if text is None:
        if len(_rfc3339_resets) >= _RESET_CACHE_SIZE:
            _rfc3339_resets.clear()
        text = _rfc3339_resets[epoch_s] = datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return text


def rate_limit_headers(protocol: str, key: CachedKey, d: Decision) -> dict[str, str]:
    rec = key.record
    headers: dict[str, str] = {}
    if protocol == "anthropic":
        # A window resets when its oldest one-second bucket leaves it: a whole second, which rounding recovers
        # from the relative reset whatever the clock read in between (or Redis' clock).
        now = time.time()
        if rec.rpm is not None:
            headers["anthropic-ratelimit-requests-limit"] = key.rpm_text
            headers["anthropic-ratelimit-requests-remaining"] = str(d.rpm_remaining)
            headers["anthropic-ratelimit-requests-reset"] = rfc3339_at(round(now + d.rpm_reset_s))
        if rec.tpm is not None:
            headers["anthropic-ratelimit-tokens-limit"] = key.tpm_text
            headers["anthropic-ratelimit-tokens-remaining"] = str(d.tpm_remaining)
            headers["anthropic-ratelimit-tokens-reset"] = rfc3339_at(round(now + d.tpm_reset_s))
    else:
        if rec.rpm is not None:
            headers["x-ratelimit-limit-requests"] = key.rpm_text
            headers["x-ratelimit-remaining-requests"] = str(d.rpm_remaining)
            headers["x-ratelimit-reset-requests"] = openai_reset_cached(d.rpm_reset_s)
        if rec.tpm is not None:
            headers["x-ratelimit-limit-tokens"] = key.tpm_text
            headers["x-ratelimit-remaining-tokens"] = str(d.tpm_remaining)
            headers["x-ratelimit-reset-tokens"] = openai_reset_cached(d.tpm_reset_s)
    return headers


def _auth_error(message: str) -> GatewayError:
    return GatewayError("authentication", message, code="invalid_api_key")


class KeyGate(Gate):
    def __init__(self, config: Config, store: Store | None = None) -> None:
        super().__init__(config)
        st = config.state
        assert st.database_url is not None and st.data_dir is not None  # filled in by config loading
        self.store = store or open_store(st.database_url)
        self.local = LocalLimiter()
        self.shared: Limiter | None = None
        if st.redis_url:
            from omnirelay.state.redis_limits import RedisLimiter

            self.shared = RedisLimiter(st.redis_url, st.redis_prefix)
        self.writer = UsageWriter(
            self.store,
            Path(st.data_dir).expanduser() / "journal",
            flush_s=st.usage_flush_s,
            batch=st.usage_batch,
            fsync=st.journal_fsync,
            on_committed=self._committed,
        )
        self.keys: dict[str, CachedKey] = {}
        self.wallets: dict[str, CachedWallet] = {}
        self._route_rates: dict[str, RouteRates] = {}  # by route public name, see _rates
        # Tokens already checked against the current cache, so a known key costs a dict lookup instead of a
        # SHA-256; only tokens that matched get in (one per key), and every refresh starts it afresh.
        self._verified: dict[str, CachedKey] = {}
        self.pending_units: dict[str, int] = {}  # settled charges the database has not committed yet
        self.held_units: dict[str, int] = {}  # credit that open batches hold (omnirelay.batches refreshes it)
        self.open = False  # everyone is let in (see the module docstring)
        self.keys_ever_issued = False  # the store held a key once: never open by default again
        self.reserve_ttl_s = max((u.timeouts.total for u in config.upstreams), default=600.0) + 60.0
        self._refresher: asyncio.Task[None] | None = None
        self._redis_down_logged = False
        # Keys issued since the last refresh (another worker or replica made them): see look_up.
        self._lookup_lock = asyncio.Lock()
        self._lookup_window = 0.0
        self._absent_while_open: set[str] = set()  # tokens look_up found in no store while open (see _authenticate)
        self._lookups_in_window = 0
        self.store.responses.retention_s = config.state.responses_retention_s
        self.response_sweeper = ResponseSweeper(self.store.responses)

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.store.open()
        if self.shared is not None:
            await self.shared.start()
        await self.writer.start()
        await self.refresh()
        if self.open:
            why = (
                "server.open is true" if self.config.server.open else "no key was ever issued and no master key is set"
            )
            log.warning("the gateway is OPEN: requests without a key are served (%s)", why)
        self._refresher = asyncio.create_task(self._refresh_loop(), name="key-cache")
        self.response_sweeper.start()

    @property
    def responses(self) -> ResponseStore:
        """The stored Responses API objects (``state/responses.py``), in the same database as the keys."""
        return self.store.responses

    async def stop(self) -> None:
        await self.response_sweeper.stop()
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        await self.writer.stop()
        if self.shared is not None:
            await self.shared.close()
        await self.store.close()

    async def _refresh_loop(self) -> None:
        interval = self.config.state.key_refresh_s
        while True:
            await asyncio.sleep(interval)
            try:
                await self.refresh()
            except Exception as exc:  # keep serving from the cache while the database is away
                log.warning("key cache refresh failed: %s", exc)

    async def refresh(self) -> None:
        # Under the writer's lock: the keys' spent_units and pending_units must describe the same moment.
        async with self.writer.db_lock:
            records = await self.store.load_keys()
            if not records and not self.keys_ever_issued:
                self.keys_ever_issued = await self.store.keys_ever_issued()
            owned = any(rec.owner_user_id is not None for rec in records)
            accounts = self.store.accounts
            owners = await accounts.load_owners() if owned else []
            wallets = await accounts.load_wallets() if owned else []
        by_key, self.wallets = ownerships(records, owners, wallets)
        if records:
            self.keys_ever_issued = True
        old = self.keys
        fresh: dict[str, CachedKey] = {}
        for rec in records:
            prev = old.get(rec.id)
            matcher = prev.matcher if prev is not None and prev.record.models == rec.models else None
            fresh[rec.id] = CachedKey(rec, matcher or ModelMatcher(rec.models), by_key.get(rec.id))
        self.keys = fresh
        self._verified = {}
        self._absent_while_open = set()
        setting = self.config.server.open
        if setting is not None:
            self.open = setting
        else:
            self.open = not fresh and not self.keys_ever_issued and self.config.server.master_key is None

    def _committed(self, rows: list[UsageRow]) -> None:
        # Runs under the writer's db_lock right after the commit. The committed units move from pending to the
        # cached key's spent in the same step, so spent + pending never dips until the next refresh reloads
        # spent from the database (otherwise a key would look richer for up to one refresh interval).
        for row in rows:
            if row.key_id is not None and row.cost_units:
                cached = self.keys.get(row.key_id)
                if cached is not None:
                    cached.record.spent_units += row.cost_units
                    wallet = cached.ownership.wallet if cached.ownership is not None else None
                    if wallet is not None:
                        wallet.spent_units += row.cost_units
                left = self.pending_units.get(row.key_id, 0) - row.cost_units
                if left:
                    self.pending_units[row.key_id] = left
                else:
                    self.pending_units.pop(row.key_id, None)

    # -- admit -------------------------------------------------------------------------------------------

    def _authenticate(self, token: str | None) -> CachedKey | None:
        """The key for this token; None for the master key or an open gateway."""
        master = self.config.server.master_key
        if token is None:
            if self.open:
                return None
            raise _auth_error("You didn't provide an API key. Send it as 'Authorization: Bearer <key>' or 'x-api-key'.")
        if master is not None and hmac.compare_digest(token.encode(), master.encode()):
            return None
        known = self._verified.get(token)
        if known is not None:
            return known
        key_id = key_id_of(token)
        cached = self.keys.get(key_id) if key_id is not None else None
        # Hash and compare even for an unknown id, so timing does not tell which ids exist.
        matches = secret_matches(token, cached.record if cached is not None else _DUMMY)
        if cached is None or not matches:
            # Open, a key id of ours this process has not loaded is refused once so that ``look_up`` can check the
            # store: the key may have been issued since the last refresh (by another worker), which closes the
            # gateway; served open, its requests would go unattributed and uncharged.
            if self.open and (cached is not None or key_id is None or token in self._absent_while_open):
                return None
            raise _auth_error("Incorrect API key provided.")
        self._verified[token] = cached
        return cached

    async def look_up(self, token: str | None) -> bool:
        """A token whose key id this process does not know: is it a key issued since the last refresh (by another
        worker or replica)? If the store has it, refresh now, so a new key works at once everywhere instead of
        after up to ``key_refresh_s``. Bounded to LOOKUPS_PER_SECOND store reads, so made-up ids cannot turn
        every request into a database query."""
        key_id = key_id_of(token) if token is not None else None
        if token is None or key_id is None or key_id in self.keys:
            return False
        found = False
        if self._lookup_allowed():
            try:
                found = await self.store.get_key(key_id) is not None
                if found:
                    async with self._lookup_lock:  # concurrent first requests of one new key: one refresh
                        if key_id not in self.keys:
                            await self.refresh()
            except Exception as exc:  # the database is away: the key cache answers as before
                log.warning("looking up an unknown key id failed: %s", exc)
        if key_id in self.keys:
            return True
        if self.open:  # not a key of the store's: an open gateway serves it, as any other token
            if len(self._absent_while_open) >= 10_000:
                self._absent_while_open.clear()
            self._absent_while_open.add(token)
            return True
        return False

    def _lookup_allowed(self) -> bool:
        now = time.monotonic()
        if now - self._lookup_window >= 1.0:
            self._lookup_window, self._lookups_in_window = now, 0
        self._lookups_in_window += 1
        return self._lookups_in_window <= LOOKUPS_PER_SECOND

    def authenticate(self, token: str | None) -> Admission:
        cached = self._authenticate(token)
        if cached is None:
            return KeyAdmission(key_name="master" if token is not None and not self.open else None)
        return self._admission_of(cached)

    def multiplier_of(self, key_id: str | None) -> float:
        """The price multiplier of a key's owner (1.0 for a key of its own, or one this cache does not know)."""
        cached = self.keys.get(key_id) if key_id is not None else None
        return cached.ownership.multiplier if cached is not None and cached.ownership is not None else 1.0

    def authenticate_key_id(self, key_id: str) -> Admission:
        """``authenticate`` for an in-process caller that already knows whose key it uses (the console's
        playground, for its signed-in user's own key): by id, without the secret; 401 as for a bad key."""
        cached = self.keys.get(key_id)
        if cached is None:
            raise _auth_error("Incorrect API key provided.")
        return self._admission_of(cached)

    def _admission_of(self, cached: CachedKey) -> Admission:
        rec = cached.record
        if rec.disabled:
            raise _auth_error(f"API key {rec.id} has been disabled.")
        if rec.expires_at is not None and rec.expires_at <= time.time():
            raise _auth_error(f"API key {rec.id} expired.")
        ownership = cached.ownership
        if ownership is None:
            return KeyAdmission(key_id=rec.id, key_name=rec.name, key=cached)
        if ownership.owner is None:
            raise _auth_error(f"API key {rec.id} belongs to a user who is disabled or deleted.")
        return KeyAdmission(key_id=rec.id, key_name=rec.name, key=cached, multiplier=ownership.multiplier)

    async def admit(
        self, admission: Admission, req: ChatRequest, protocol: str, plan: Plan, reserve: float | None = None
    ) -> list[Route]:
        cached: CachedKey | None = admission.key if isinstance(admission, KeyAdmission) else None
        if cached is None:
            return [route for _name, route in plan]
        assert isinstance(admission, KeyAdmission)
        routes = self._permitted(cached, req, plan)
        rec = cached.record
        if rec.rpm is not None or rec.tpm is not None or rec.credit_units is not None or cached.ownership is not None:
            await self._limit(admission, cached, req, protocol, routes, reserve)
        return routes

    def permitted(self, admission: Admission, req: ChatRequest, plan: Plan) -> list[Route]:
        cached: CachedKey | None = admission.key if isinstance(admission, KeyAdmission) else None
        if cached is None:
            return [route for _name, route in plan]
        return self._permitted(cached, req, plan)

    def sub_admission(self, outer: Admission) -> Admission:
        if not isinstance(outer, KeyAdmission):
            return KeyAdmission(key_id=outer.key_id, key_name=outer.key_name)
        return KeyAdmission(
            key_id=outer.key_id, key_name=outer.key_name, key=outer.key, parent=outer, multiplier=outer.multiplier
        )

    def _permitted(self, cached: CachedKey, req: ChatRequest, plan: Plan) -> list[Route]:
        """The routes of ``plan`` the key may call: its allow-list matches the model's name (as the request or
        the config named it, or the route's own), and with credit the model has a price."""
        matcher = cached.matcher
        priced_only = cached.record.credit_units is not None or cached.ownership is not None
        if matcher.everything and not priced_only:
            return [route for _name, route in plan]
        routes: list[Route] = []
        unpriced: str | None = None
        for name, route in plan:
            if not matcher.allows(name) and (name == route.public_name or not matcher.allows(route.public_name)):
                log.debug("key %s may not call %s: skipped", cached.record.id, name)
                continue
            if priced_only and not _is_virtual(route) and self._rates(route) is _UNPRICED:
                unpriced = unpriced or name
                continue
            routes.append(route)
        if routes:
            return routes
        key_id = cached.record.id
        if unpriced is not None:
            raise GatewayError(
                "permission",
                f"Model {unpriced} has no price configured, so API key {key_id}, which has a credit limit, cannot "
                "use it (the operator can add it under `prices:`).",
                code="model_not_priced",
                param="model",
            )
        raise GatewayError(
            "permission",
            f"API key {key_id} is not allowed to use model {req.model}.",
            code="model_not_allowed",
            param="model",
        )

    def _rates(self, route: Route) -> RouteRates:
        """The worst case over the route's channels (any of them may answer), computed once per route."""
        rates = self._route_rates.get(route.public_name)
        if rates is None:
            rates = self._compute_rates(route)
            if len(self._route_rates) >= 4096:  # model names come from clients: keep it bounded
                self._route_rates.clear()
            self._route_rates[route.public_name] = rates
        return rates

    def _compute_rates(self, route: Route) -> RouteRates:
        per_token = PER_TOKEN * UNITS_PER_USD
        in_rate = out_rate = 0.0
        max_out: int | None = 0
        for channel in route.channels:
            price = self.price(channel.model, route.public_name)
            if price is None:
                return _UNPRICED
            # Input may be written to a prompt cache, which costs more than plain input (Anthropic: 1.25x).
            in_rate = max(in_rate, price.input * per_token, (price.cache_write or 0.0) * per_token)
            out_rate = max(out_rate, price.output * per_token)
            ceiling = max_output_for(channel.model) or max_output_for(route.public_name)
            max_out = None if ceiling is None or max_out is None else max(max_out, ceiling)
        return in_rate, out_rate, max_out

    def worst_case_units(self, req: ChatRequest, routes: list[Route]) -> int:
        """The most ``req`` can cost on ``routes`` at full price, in units (what admit would reserve)."""
        return self._reserve_units(req, estimate_request_tokens(req), routes)

    def _reserve_units(self, req: ChatRequest, est_in: int, routes: list[Route]) -> int:
        """The most the request can cost: its estimated input and all the output it may produce (max_tokens, the
        thinking budget on top where a provider adds it, else the model's ceiling; times ``n``), at the dearest
        rates of the routes it may be served by. Compound routes reserve nothing themselves: each of their
        upstream calls reserves its own."""
        worst = 0.0
        default_out = self.config.state.reserve_output_tokens
        for route in routes:
            if _is_virtual(route):
                continue
            in_rate, out_rate, ceiling = self._rates(route)
            if in_rate < 0:
                continue  # unpriced: only a key without credit gets here, and it reserves nothing
            if req.max_tokens is None:
                out = ceiling or default_out
            else:
                out = req.max_tokens + (budget_of(req.reasoning) or 0)
                if ceiling is not None:
                    out = min(out, ceiling)
            worst = max(worst, est_in * in_rate + out * max(1, req.n) * out_rate)
        return math.ceil(worst)

    async def _limit(
        self,
        admission: KeyAdmission,
        cached: CachedKey,
        req: ChatRequest,
        protocol: str,
        routes: list[Route],
        reserve: float | None = None,
    ) -> None:
        rec = cached.record
        wallet = cached.ownership.wallet if cached.ownership is not None else None
        # A compound request's own tokens are its calls', each counted (and reserved for) as it is made.
        compound = len(routes) == 1 and _is_virtual(routes[0])
        est_in = 0 if compound else estimate_request_tokens(req)
        reserve_units = 0
        if rec.credit_units is not None or wallet is not None:
            worst = reserve * UNITS_PER_USD if reserve is not None else self._reserve_units(req, est_in, routes)
            reserve_units = math.ceil(worst * admission.multiplier)
        lim = Limits(
            key_id=rec.id,
            request_id=new_id(""),
            rpm=rec.rpm,
            tpm=rec.tpm,
            est_tokens=0 if compound else est_in + (req.max_tokens or 0),
            credit_units=rec.credit_units,
            spent_units=rec.spent_units + self.pending_units.get(rec.id, 0),
            reserve_units=reserve_units,
            reserve_ttl_s=self.reserve_ttl_s,
            held_units=self.held_units.get(rec.id, 0),  # what the key's open batches hold
        )
        if wallet is not None:  # the owner's wallet first: refusing there leaves the key's windows untouched
            await self._reserve_wallet(admission, wallet, lim)
        try:
            decision, shared = await self._admit_limits(lim)
        except BaseException:
            await self._release_wallet(admission, 0, lim.request_id)
            raise
        if decision.verdict != "ok":
            await self._release_wallet(admission, 0, lim.request_id)
        headers = rate_limit_headers(protocol, cached, decision)
        if decision.verdict in ("rpm", "tpm"):
            what = "requests" if decision.verdict == "rpm" else "tokens"
            limit = rec.rpm if decision.verdict == "rpm" else rec.tpm
            wait = decision.rpm_reset_s if decision.verdict == "rpm" else decision.tpm_reset_s
            raise GatewayError(
                "rate_limit",
                f"Rate limit reached for API key {rec.id} on {what} per minute: limit {limit}. "
                f"Please try again in {openai_reset(wait)}.",
                code="rate_limit_exceeded",
                retry_after=max(1, math.ceil(wait)),
                retryable=False,
                headers=headers,
            )
        if decision.verdict == "credit":
            raise _quota_error(f"API key {rec.id} has not enough credit left", lim.reserve_units, headers)
        admission.reserved = to_usd(lim.reserve_units)
        admission.headers = headers
        admission.reservation = lim.request_id
        admission.est_tokens = lim.est_tokens
        admission.tpm_tracked = rec.tpm is not None
        admission.credit_tracked = rec.credit_units is not None
        admission.shared = shared

    async def _admit_limits(self, lim: Limits) -> tuple[Decision, bool]:
        """The limiter's decision (Redis when configured and reachable, else this process) and whether it was
        Redis'."""
        if self.shared is not None:
            import redis.exceptions  # here, not at the top: a deployment without Redis never imports it (RSS)

            try:
                decision = await self.shared.admit(lim)
                self._redis_down_logged = False
                return decision, True
            except (redis.exceptions.RedisError, OSError) as exc:
                if not self._redis_down_logged:
                    log.error("Redis unavailable, limits fall back to this process only: %s", exc)
                    self._redis_down_logged = True
        return self.local.admit_now(lim), False

    async def _reserve_wallet(self, admission: KeyAdmission, wallet: CachedWallet, key_lim: Limits) -> None:
        """Hold the request's worst case against the owner's wallet (429 when its balance cannot cover it)."""
        lim = Limits(
            key_id=wallet.limiter_id,
            request_id=key_lim.request_id,
            rpm=None,
            tpm=None,
            est_tokens=0,
            credit_units=wallet.credited_units,
            spent_units=wallet.spent_units + wallet.pending_units(self.pending_units),
            reserve_units=key_lim.reserve_units,
            reserve_ttl_s=self.reserve_ttl_s,
            held_units=self._wallet_held(wallet),
        )
        decision, shared = await self._admit_limits(lim)
        if decision.verdict == "credit":
            raise _quota_error(
                f"the wallet of API key {key_lim.key_id}'s owner has not enough balance left", lim.reserve_units, {}
            )
        admission.wallet_limiter_id = wallet.limiter_id
        admission.wallet_shared = shared

    def _wallet_held(self, wallet: CachedWallet) -> int:
        """What open batches of the wallet's keys hold."""
        if not self.held_units:
            return 0
        return sum(self.held_units.get(k, 0) for k in wallet.key_ids)

    async def _release_wallet(self, admission: KeyAdmission, cost_units: int, reservation: str) -> None:
        """Give the wallet's reservation back and (with Redis) charge the shared wallet ``cost_units``."""
        limiter_id = admission.wallet_limiter_id
        if not limiter_id:
            return
        admission.wallet_limiter_id = ""
        if not admission.wallet_shared or self.shared is None:
            self.local.settle_now(limiter_id, reservation, token_delta=0, tpm=False)
            return
        import redis.exceptions  # see _admit_limits

        try:
            await self.shared.settle(
                limiter_id, reservation, cost_units=cost_units, token_delta=0, tpm=False, credit=True
            )
        except (redis.exceptions.RedisError, OSError) as exc:
            log.error("Redis settle failed for %s: %s", limiter_id, exc)

    # -- settle ------------------------------------------------------------------------------------------

    async def settle(self, admission: Admission, record: UsageRecord) -> None:
        """Charge the key and release its reservation, then journal the record. Idempotent per admission
        (the relay may call it early, before the last byte, and again in its ``finally``)."""
        try:
            record.usage, record.cost = sane_usage(record.usage), sane_cost(record.cost)  # see core.usage_bounds
            precharged = 0
            if isinstance(admission, KeyAdmission):
                if admission.settled:
                    return
                admission.settled = True
                precharged = admission.precharged_units
                if precharged > to_units(record.cost):  # the record shows at least what its calls were charged
                    record.cost = to_usd(precharged)
            row = UsageRow.from_record(record)
            key_id = admission.key_id
            if key_id is not None:
                # A compound engine's tokens were counted call by call (see _limit).
                tokens = 0 if record.provider == COMPOUND_PROVIDER else record.usage.total_tokens
                await self._charge(admission, key_id, row.cost_units - precharged, tokens)
            await self.writer.record(row)
        except Exception:
            log.exception("settling request %s failed", record.request_id)

    async def settle_sub(self, admission: Admission, tokens: int, cost: float) -> None:
        try:
            if not isinstance(admission, KeyAdmission) or admission.key_id is None or admission.settled:
                return
            admission.settled = True
            units = to_units(cost)
            parent = admission.parent
            if isinstance(parent, KeyAdmission):
                if parent.settled:  # too late for the outer record: the charge would never reach the database
                    log.error("compound sub-call of key %s ended after its request was settled", admission.key_id)
                    units = 0
                parent.precharged_units += units
            await self._charge(admission, admission.key_id, units, tokens)
        except Exception:
            log.exception("settling a compound sub-call of key %s failed", admission.key_id)

    async def _charge(self, admission: Admission, key_id: str, cost_units: int, tokens: int) -> None:
        # In-process accounting first and with no await in between: the charge becomes pending in the same
        # step as the reservation is released, so no admit sees neither (or both).
        if cost_units:
            self.pending_units[key_id] = self.pending_units.get(key_id, 0) + cost_units
        if not isinstance(admission, KeyAdmission) or not admission.reservation:
            return
        if admission.wallet_limiter_id:
            await self._release_wallet(admission, cost_units, admission.reservation)
        delta = tokens - admission.est_tokens
        if not admission.shared or self.shared is None:
            self.local.settle_now(key_id, admission.reservation, token_delta=delta, tpm=admission.tpm_tracked)
            return
        import redis.exceptions  # see _limit

        try:
            await self.shared.settle(
                key_id,
                admission.reservation,
                cost_units=cost_units,
                token_delta=delta,
                tpm=admission.tpm_tracked,
                credit=admission.credit_tracked,
            )
        except (redis.exceptions.RedisError, OSError) as exc:
            # The reservation expires on its own; the charge reaches Redis' counter when it is reseeded.
            log.error("Redis settle failed for key %s: %s", key_id, exc)

    # -- for the admin API ---------------------------------------------------------------------------------

    def balance_units(self, rec: KeyRecord) -> int | None:
        if rec.credit_units is None:
            return None
        return rec.credit_units - rec.spent_units - self.pending_units.get(rec.id, 0)


def _quota_error(whose: str, reserve_units: int, headers: dict[str, str]) -> GatewayError:
    return GatewayError(
        "quota",
        f"You exceeded your current quota: {whose} for this request, which may cost up to "
        f"${to_usd(reserve_units):.6f} (a lower max_tokens costs less at most).",
        code="insufficient_quota",
        retryable=False,
        headers=headers,
    )


def _is_virtual(route: Route) -> bool:
    """A compound engine's route (think:/heavy:/deepsearch:, the tool loop): one channel to the engine."""
    return route.channels[0].upstream.provider == COMPOUND_PROVIDER if route.channels else False
