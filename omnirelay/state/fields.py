"""The checks on values for the stores, shared by the admin API and the ``omnirelay keys``/``usage`` commands:
key settings, times and grouping dimensions. Numbers out of range (credit above MAX_CREDIT_USD, rpm/tpm above a
32-bit integer, negative ones, times beyond 9999) and text holding NUL are refused with a 400 naming the
field, never stored."""

from __future__ import annotations

import math
import re
import time
from datetime import UTC, datetime
from typing import Any

from omnirelay.core.errors import GatewayError
from omnirelay.state.keys import parse_models, to_units
from omnirelay.state.store import SUMMARY_DIMENSIONS

MAX_TIME = 253402300799.0  # 9999-12-31T23:59:59Z
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DIMENSION_ALIASES = {"key": "key_id", "model": "model_requested"}


def bad(field: str, message: str) -> GatewayError:
    return GatewayError("invalid_request", message, param=field)


def parse_time(text: str, field: str = "time") -> float:
    """Unix seconds from a timestamp, an ISO 8601 date/datetime (UTC if no zone) or ``<n><s|m|h|d|w>`` ago."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    rel = _RELATIVE.match(text)
    if rel:
        return time.time() - float(rel.group(1)) * _UNIT_S[rel.group(2)]
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise GatewayError(
            "invalid_request", f"cannot read {field} {text!r}: use unix seconds, ISO 8601 or 7d", param=field
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def checked_time(text: str, field: str) -> float:
    """parse_time, refusing what no store can compare (NaN, infinities) or what is not a date (beyond 9999)."""
    value = parse_time(text, field)
    if not math.isfinite(value) or abs(value) > MAX_TIME:
        raise bad(field, f"{field} is out of range: use a time between 1970 and 9999")
    return value


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def text_without_nul(value: str, field: str) -> str:
    if "\x00" in value:
        raise bad(field, f"{field} must not contain NUL characters")
    return value


# Bounds that every store holds: credit in units of 1e-10 USD must fit a signed 64-bit integer with room for
# what is spent; rpm/tpm are INTEGER (32 bits) in PostgreSQL.
MAX_CREDIT_USD = 100_000_000
MAX_RATE_LIMIT = 2**31 - 1
MAX_NAME_LENGTH = 200


def _credit_units(value: Any) -> int | None:
    # Compared before float(): an integer too large for a float would raise OverflowError.
    if value is None:
        return None
    if not is_number(value) or value != value or not 0 <= value <= MAX_CREDIT_USD:
        raise bad("credit", f"credit must be a number of USD between 0 and {MAX_CREDIT_USD}, or null")
    return to_units(float(value))


def _rate(value: Any, field: str) -> int | None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= MAX_RATE_LIMIT):
        raise bad(field, f"{field} must be an integer between 1 and {MAX_RATE_LIMIT}, or null")
    return None if value is None else int(value)


def _expiry(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        return checked_time(value, "expires_at")
    if not is_number(value) or value != value or not 0 <= value <= MAX_TIME:
        raise bad("expires_at", "expires_at must be a time (unix seconds up to year 9999, ISO 8601) or null")
    return float(value)


def key_fields(body: dict[str, Any], creating: bool) -> dict[str, Any]:
    """Validate key settings from a JSON body into store fields (credit in USD -> credit_units)."""
    allowed = {"name", "credit", "models", "rpm", "tpm", "expires_at", "disabled"}
    fields: dict[str, Any] = {}
    for name, value in body.items():
        if name not in allowed:
            raise GatewayError("invalid_request", f"unknown key field {name!r}", param=name)
        if name == "name":
            if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME_LENGTH:
                raise bad("name", f"name must be a non-empty string of at most {MAX_NAME_LENGTH} characters")
            fields["name"] = text_without_nul(value.strip(), "name")
        elif name == "credit":
            fields["credit_units"] = _credit_units(value)
        elif name == "models":
            if value is None:
                value = []
            if isinstance(value, str):
                value = parse_models(value)
            if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
                raise bad("models", "models must be a list of glob patterns")
            fields["models"] = [text_without_nul(p, "models") for p in value]
        elif name in ("rpm", "tpm"):
            fields[name] = _rate(value, name)
        elif name == "expires_at":
            fields["expires_at"] = _expiry(value)
        elif name == "disabled":
            if not isinstance(value, bool):
                raise bad("disabled", "disabled must be true or false")
            fields["disabled"] = value
    if creating and "name" not in fields:
        raise GatewayError("invalid_request", "name is required", param="name")
    return fields


def dimensions(text: str | None) -> list[str]:
    by = [_DIMENSION_ALIASES.get(d.strip(), d.strip()) for d in (text or "").split(",") if d.strip()]
    for d in by:
        if d not in SUMMARY_DIMENSIONS:
            raise GatewayError(
                "invalid_request",
                f"cannot group by {d!r}: choose from key, model, {', '.join(SUMMARY_DIMENSIONS)}",
                param="by",
            )
    return by
