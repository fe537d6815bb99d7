"""The gate's in-memory view of the wallets keys draw from (refreshed with the keys, see state/gate.py).

A wallet's credit check works like a key's: ``credited - spent - reserved`` must cover the request's worst case.
``spent`` is what the database had committed at the last refresh plus what this process committed since;
``pending`` (charged by settled requests, not yet written) is the sum of the pending charges of the wallet's keys,
so a key moving to another wallet never leaves a charge counted in the wrong one beyond the next refresh. In the
limiter (in-process or Redis) a wallet is the pseudo-key ``wallet:<id>``: with Redis its spending and
reservations are shared by every replica, and its credit comes from the database on every refresh."""

from __future__ import annotations

from omnirelay.state.accounts import Owner, Wallet
from omnirelay.state.keys import KeyRecord


class CachedWallet:
    __slots__ = ("credited_units", "id", "key_ids", "limiter_id", "spent_units")

    def __init__(self, wallet: Wallet) -> None:
        self.id = wallet.id
        self.limiter_id = "wallet:" + wallet.id
        self.credited_units = wallet.credited_units
        self.spent_units = wallet.spent_units
        self.key_ids: list[str] = []

    def pending_units(self, pending: dict[str, int]) -> int:
        return sum(pending.get(k, 0) for k in self.key_ids)

    def balance_units(self, pending: dict[str, int]) -> int:
        return self.credited_units - self.spent_units - self.pending_units(pending)


class KeyOwnership:
    """For one key: its owner (None: the owner is gone or disabled, the key does not work) and wallet."""

    __slots__ = ("multiplier", "owner", "wallet")

    def __init__(self, owner: Owner | None, wallet: CachedWallet | None) -> None:
        self.owner = owner
        self.wallet = wallet
        self.multiplier = owner.multiplier if owner is not None else 1.0


def ownerships(
    records: list[KeyRecord], owners: list[Owner], wallets: list[Wallet]
) -> tuple[dict[str, KeyOwnership], dict[str, CachedWallet]]:
    """Each owned key's ownership (by key id) and the wallets (by wallet id)."""
    by_user = {o.user_id: o for o in owners}
    cached = {w.id: CachedWallet(w) for w in wallets}
    out: dict[str, KeyOwnership] = {}
    for rec in records:
        if rec.owner_user_id is None:
            continue
        owner = by_user.get(rec.owner_user_id)
        if owner is None or owner.disabled:
            out[rec.id] = KeyOwnership(None, None)
            continue
        wallet = cached.get(owner.wallet_id)
        if wallet is None:
            wallet = cached[owner.wallet_id] = CachedWallet(Wallet(id=owner.wallet_id))
        wallet.key_ids.append(rec.id)
        out[rec.id] = KeyOwnership(owner, wallet)
    return out, cached
