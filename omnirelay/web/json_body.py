"""Reading a request body that must be one JSON object (the admin API and the console's API): a clear 400 for
what is not one, never a 500."""

from __future__ import annotations

from typing import Any

import msgspec

from omnirelay.core.errors import GatewayError
from omnirelay.web.exchange import Exchange


async def read_json_object(request: Exchange, limit: int) -> dict[str, Any]:
    """The body (at most ``limit`` bytes, else the exchange's 413) as a JSON object; an empty body reads as ``{}``."""
    raw = await request.body(limit)
    if not raw.strip():
        return {}
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        raise GatewayError("invalid_request", "the body is not valid JSON") from None
    except RecursionError:
        raise GatewayError("invalid_request", "the body nests arrays and objects too deeply") from None
    if not isinstance(body, dict):
        raise GatewayError("invalid_request", "the body must be a JSON object")
    return body
