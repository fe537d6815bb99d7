"""Virtual API keys: the secret format, how it is hashed, and the record the store keeps.

A secret looks like ``sk-or-<id>-<random>``: ``id`` (12 characters) is public, stored in clear and shown in
listings and usage records; ``<random>`` is 32 bytes from ``secrets``. Only SHA-256 of the whole secret is
stored. A plain hash (no per-key salt, no slow KDF) is right here: the secret has 256 bits of entropy, so
there is nothing to brute-force, and the hot path needs the hash to cost microseconds. The lookup goes by
the public id and the hashes are then compared with ``hmac.compare_digest``.

Money is kept as integers in units of 1e-10 USD (``UNITS_PER_USD``): ``core.pricing.cost_of`` rounds to ten
decimals, so every cost is an exact integer number of units and sums never drift.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import re
import secrets
import string
import time

import msgspec

SECRET_PREFIX = "sk-or-"
ID_LENGTH = 12
UNITS_PER_USD = 10_000_000_000
_ID_ALPHABET = string.ascii_lowercase + string.digits


def to_units(usd: float) -> int:
    return round(usd * UNITS_PER_USD)


def to_usd(units: int) -> float:
    return units / UNITS_PER_USD


class KeyRecord(msgspec.Struct, kw_only=True):
    id: str
    name: str
    secret_hash: str  # hex SHA-256 of the full secret
    created_at: float
    updated_at: float
    expires_at: float | None = None
    disabled: bool = False
    models: list[str] = []  # glob patterns; empty: every model
    rpm: int | None = None
    tpm: int | None = None
    credit_units: int | None = None  # total credit granted; None: unlimited
    spent_units: int = 0  # charged so far (committed usage records)
    owner_user_id: str | None = None  # a console user's key draws from their (or their team's) wallet too

    def public(self) -> dict[str, object]:
        """The key as the admin API and CLI show it: never the hash."""
        return {
            "id": self.id,
            "name": self.name,
            "prefix": display_prefix(self.id),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "expires_at": self.expires_at,
            "disabled": self.disabled,
            "models": self.models,
            "rpm": self.rpm,
            "tpm": self.tpm,
            "credit": None if self.credit_units is None else to_usd(self.credit_units),
            "spent": to_usd(self.spent_units),
            "balance": None if self.credit_units is None else to_usd(self.credit_units - self.spent_units),
            "owner_user_id": self.owner_user_id,
        }


def new_key(
    name: str,
    *,
    credit: float | None = None,
    models: list[str] | None = None,
    rpm: int | None = None,
    tpm: int | None = None,
    expires_at: float | None = None,
    owner_user_id: str | None = None,
) -> tuple[KeyRecord, str]:
    """A fresh key and its secret (the only time the secret exists outside the caller's hands)."""
    key_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(ID_LENGTH))
    secret = f"{SECRET_PREFIX}{key_id}-{secrets.token_urlsafe(32)}"
    now = time.time()
    record = KeyRecord(
        id=key_id,
        name=name,
        secret_hash=hash_secret(secret),
        created_at=now,
        updated_at=now,
        expires_at=expires_at,
        models=list(models or []),
        rpm=rpm,
        tpm=tpm,
        credit_units=None if credit is None else to_units(credit),
        owner_user_id=owner_user_id,
    )
    return record, secret


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def key_id_of(token: str) -> str | None:
    """The public id inside a secret, or None if the token is not one of ours."""
    if not token.startswith(SECRET_PREFIX):
        return None
    rest = token[len(SECRET_PREFIX) :]
    key_id, sep, _random = rest.partition("-")
    return key_id if sep and len(key_id) == ID_LENGTH else None


def secret_matches(token: str, record: KeyRecord) -> bool:
    return hmac.compare_digest(hash_secret(token).encode(), record.secret_hash.encode())


def display_prefix(key_id: str) -> str:
    return f"{SECRET_PREFIX}{key_id}-..."


class ModelMatcher:
    """The allow-list: glob patterns (``*``, ``?``, ``[...]``) against the requested model name,
    compiled once per key version. Empty list: everything allowed."""

    __slots__ = ("_cache", "_regex", "everything")

    def __init__(self, patterns: list[str]) -> None:
        self.everything = not patterns
        self._regex = re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns)) if patterns else None
        self._cache: dict[str, bool] = {}

    def allows(self, model: str) -> bool:
        if self._regex is None:
            return True
        hit = self._cache.get(model)
        if hit is None:
            hit = self._regex.match(model) is not None
            if len(self._cache) < 4096:
                self._cache[model] = hit
        return hit


def parse_models(text: str | None) -> list[str]:
    """``'gpt-4.1*,claude-*'`` -> the pattern list (CLI and admin API both accept this form)."""
    if not text:
        return []
    return [p.strip() for p in text.split(",") if p.strip()]
