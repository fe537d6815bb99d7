"""The read side of the Responses API over the stored responses (``state/responses.py``):

  GET    /v1/responses/{id}               the Responses object as it was returned
  DELETE /v1/responses/{id}               {"id", "object": "response", "deleted": true}
  GET    /v1/responses/{id}/input_items   that request's input items, paged: after, limit (1-100, default 20),
                                          order (asc | desc, default desc)

(and the same without ``/v1``). The caller is authenticated like any ``/v1`` request and sees only the responses
its key stored (with the gateway open, requests without a key see only those stored without one); anything else
is answered as OpenAI answers a missing response: 404 ``Response with id '...' not found.``
"""

from __future__ import annotations

from urllib.parse import parse_qs

import msgspec

from omnirelay.core.errors import GatewayError
from omnirelay.core.records import StoredResponse
from omnirelay.pipeline.gate import authenticated, bearer_token
from omnirelay.state.gate import KeyGate
from omnirelay.web.exchange import Exchange
from omnirelay.web.routes import SUBTREE, Endpoint, ErrorRenderer, Mount

PREFIXES = ("/v1/responses", "/responses")
INPUT_ITEMS = "input_items"
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
# What ``include`` may name (the Responses API's ResponseIncludable). Stored items already hold everything the
# upstream returned, so a valid value changes nothing; an unknown one is refused as OpenAI does.
INCLUDABLE = frozenset(
    {
        "file_search_call.results",
        "web_search_call.results",
        "web_search_call.action.sources",
        "message.input_image.image_url",
        "computer_call_output.output.image_url",
        "code_interpreter_call.outputs",
        "reasoning.encrypted_content",
        "message.output_text.logprobs",
    }
)


class ItemId(msgspec.Struct):
    """An input item as far as paging reads it (the rest is passed on as stored)."""

    id: str | None = None


class DeletedResponse(msgspec.Struct):
    id: str
    object: str = "response"
    deleted: bool = True


class ItemPage(msgspec.Struct):
    data: list[msgspec.Raw]
    first_id: str | None
    last_id: str | None
    has_more: bool
    object: str = "list"


_items_decoder = msgspec.json.Decoder(list[msgspec.Raw])
_ids_decoder = msgspec.json.Decoder(list[ItemId])
_encoder = msgspec.json.Encoder()


def not_found(response_id: str) -> GatewayError:
    # OpenAI's answer for a missing response: type invalid_request_error, no code, status 404.
    return GatewayError("invalid_request", f"Response with id '{response_id}' not found.", status=404)


def bad_param(param: str, message: str) -> GatewayError:
    return GatewayError("invalid_request", message, param=param)


class PageQuery(msgspec.Struct, kw_only=True):
    after: str | None = None
    limit: int = DEFAULT_LIMIT
    descending: bool = True


def page_query(query_string: str) -> PageQuery:
    """The paging parameters of ``input_items``, each checked (400 naming the one at fault)."""
    q = parse_qs(query_string, keep_blank_values=True)
    out = PageQuery()
    if "limit" in q:
        text = q["limit"][-1].strip()
        if not (text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_LIMIT):
            raise bad_param("limit", f"Invalid 'limit': expected an integer between 1 and {MAX_LIMIT}, got {text!r}.")
        out.limit = int(text)
    if "order" in q:
        order = q["order"][-1]
        if order not in ("asc", "desc"):
            raise bad_param("order", f"Invalid 'order': expected 'asc' or 'desc', got {order!r}.")
        out.descending = order == "desc"
    if "after" in q and q["after"][-1]:
        out.after = q["after"][-1]
    check_include(q)
    return out


def check_include(q: dict[str, list[str]]) -> None:
    """``include`` (repeated, ``include[]=``, or comma-separated) may only name includable fields."""
    for name in ("include", "include[]"):
        for value in q.get(name, []):
            for field in value.split(","):
                if field.strip() and field.strip() not in INCLUDABLE:
                    raise bad_param("include", f"Invalid 'include': {field.strip()!r} is not an includable field.")


def item_page(stored: StoredResponse, query: PageQuery) -> ItemPage:
    """One page of the stored input items: ``limit`` of them after the item ``after`` in the chosen order."""
    try:
        items = _items_decoder.decode(stored.input_items)
        ids = [item.id for item in _ids_decoder.decode(stored.input_items)]
    except msgspec.DecodeError:
        raise GatewayError("internal", f"the stored input items of {stored.id} are not readable") from None
    order = list(range(len(items)))
    if query.descending:
        order.reverse()
    start = 0
    if query.after is not None:
        try:
            start = [ids[i] for i in order].index(query.after) + 1
        except ValueError:
            message = f"Invalid 'after': no input item with id '{query.after}' in response '{stored.id}'."
            raise bad_param("after", message) from None
    chosen = order[start : start + query.limit]
    return ItemPage(
        data=[items[i] for i in chosen],
        first_id=ids[chosen[0]] if chosen else None,
        last_id=ids[chosen[-1]] if chosen else None,
        has_more=start + len(chosen) < len(order),
    )


class StoredResponsesApi:
    """The endpoints over one gate's stored responses."""

    def __init__(self, gate: KeyGate) -> None:
        self.gate = gate

    def mount(self, render_error: ErrorRenderer) -> Mount:
        endpoints = [
            Endpoint(method, prefix + SUBTREE, handler)
            for prefix in PREFIXES
            for method, handler in (("GET", self.read), ("DELETE", self.delete))
        ]
        endpoints += [Endpoint("GET", prefix, refuse_websocket) for prefix in PREFIXES]
        return Mount("", endpoints, render_error)

    async def _caller(self, request: Exchange) -> str | None:
        """The key id of the caller (401 for a caller the gate does not let in)."""
        return (await authenticated(self.gate, bearer_token(request.headers))).key_id

    async def read(self, request: Exchange) -> None:
        response_id, sub = _target(request.path)
        key_id = await self._caller(request)
        if sub == INPUT_ITEMS:
            query = page_query(request.query_string)
            stored = await self.gate.responses.get(response_id, key_id)
            if stored is None:
                raise not_found(response_id)
            await request.respond(200, _encoder.encode(item_page(stored, query)))
            return
        if sub:
            raise _no_route(request)
        stream = parse_qs(request.query_string).get("stream", ["false"])[-1].lower()
        if stream not in ("false", "0", ""):
            raise bad_param("stream", "Streaming a stored response is not supported: retrieve it without 'stream'.")
        stored = await self.gate.responses.get(response_id, key_id)
        if stored is None:
            raise not_found(response_id)
        await request.respond(200, stored.response)

    async def delete(self, request: Exchange) -> None:
        response_id, sub = _target(request.path)
        if sub:
            raise _no_route(request)
        if not await self.gate.responses.delete(response_id, await self._caller(request)):
            raise not_found(response_id)
        await request.respond(200, _encoder.encode(DeletedResponse(id=response_id)))


def _target(path: str) -> tuple[str, str]:
    """The response id and what follows it (``input_items`` or nothing) in a path under one of PREFIXES."""
    path = path.rstrip("/")
    for prefix in PREFIXES:
        if path.startswith(prefix + "/"):
            response_id, _, sub = path.removeprefix(prefix + "/").partition("/")
            return response_id, sub
    return "", ""  # the router sends only paths below a prefix here


def _no_route(request: Exchange) -> GatewayError:
    return GatewayError("not_found", f"no route for {request.method} {request.path}", code="unknown_url")


async def refuse_websocket(request: Exchange) -> None:
    """``GET /v1/responses``: Codex CLI tries the Responses API over a WebSocket first (an ``Upgrade: websocket``
    GET). 426 makes it fall back to HTTP POST at once; 404 or 405 cost it five reconnects with backoff (about
    6 s) first. Any other GET on the collection is a wrong method, as before."""
    if request.headers.get("upgrade", "").lower() == "websocket":
        raise GatewayError(
            "invalid_request",
            "WebSocket is not supported here: send the request with HTTP POST /v1/responses",
            status=426,
            code="websocket_not_supported",
        )
    raise GatewayError("invalid_request", f"method GET not allowed on {request.path}", status=405)
