"""What the admin endpoints share: reading a JSON body or the query string, answering JSON."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs

import msgspec

from omnirelay.state.fields import bad
from omnirelay.web.exchange import Exchange
from omnirelay.web.json_body import read_json_object

ADMIN_BODY_LIMIT = 64 * 1024
MAX_QUERY_LIMIT = 1_000_000_000
_LIMIT_DIGITS = re.compile(r"^[0-9]{1,10}$")


async def json_body(request: Exchange) -> dict[str, Any]:
    """The request's JSON object (an empty body reads as ``{}``)."""
    return await read_json_object(request, ADMIN_BODY_LIMIT)


async def send_json(request: Exchange, status: int, body: Any) -> None:
    await request.respond(status, msgspec.json.encode(body))


def query(request: Exchange) -> dict[str, str]:
    """The query string's parameters, the last value of each."""
    return {k: v[-1] for k, v in parse_qs(request.query_string).items()}


def query_limit(q: dict[str, str]) -> int | None:
    limit = q.get("limit")
    if limit is None or limit == "":
        return None
    if not _LIMIT_DIGITS.match(limit) or not 0 < int(limit) <= MAX_QUERY_LIMIT:
        raise bad("limit", f"limit must be an integer between 1 and {MAX_QUERY_LIMIT}")
    return int(limit)
