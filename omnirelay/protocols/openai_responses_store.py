"""Stored responses for the Responses API: ``previous_response_id`` continues a stored conversation, and
``store`` (true unless the caller says false) keeps each answer with its input for the next turn.

The storage itself is the state backend's (``core.records.ResponseStore`` is the interface it implements, reached as
the gate's ``responses`` attribute). With no store the gateway behaves as if every request said ``store: false``,
and any ``previous_response_id`` is unknown. A key reads only its own responses: the store answers None for
another key's, which is the same 404 as for a missing one (as OpenAI answers).
"""

from __future__ import annotations

import logging
import time

import msgspec

from omnirelay.core.errors import GatewayError
from omnirelay.core.ids import new_id
from omnirelay.core.records import ResponseStore, StoredResponse
from omnirelay.core.types import ChatRequest
from omnirelay.protocols.base import RequestHooks
from omnirelay.protocols.openai_responses_input import ResponsesChatRequest, decode_items, items_to_messages
from omnirelay.wire import openai_responses as wire

log = logging.getLogger("omnirelay.responses")

_ITEM_ID_PREFIX = {"message": "msg_", "function_call": "fc_", "function_call_output": "fco_", "reasoning": "rs_"}
_encoder = msgspec.json.Encoder()
_raw_items = msgspec.json.Decoder(list[msgspec.Raw])


class _FinalResponse(msgspec.Struct):
    id: str
    output: list[msgspec.Raw] = []


_final_decoder = msgspec.json.Decoder(_FinalResponse)


class PendingStore(msgspec.Struct, kw_only=True):
    """What is kept after the call: the store, the owner, this request's items, the history before them."""

    store: ResponseStore
    key_id: str | None
    input_items: list[bytes]
    history: list[bytes]


def not_found(response_id: str) -> GatewayError:
    return GatewayError(
        "not_found",
        f"Previous response with id '{response_id}' not found.",
        param="previous_response_id",
        code="previous_response_not_found",
    )


def input_items(r: wire.ResponsesRequest) -> list[bytes]:
    """This request's items as stored (and listed by ``input_items``): each with an id."""
    items = r.input
    if isinstance(items, str):
        items = [wire.InputItem(type="message", role="user", content=[wire.InputText(text=items)])]
    out: list[bytes] = []
    for item in items:
        if item.id is None:
            item = msgspec.structs.replace(item, id=new_id(_ITEM_ID_PREFIX.get(item.type, "item_")))
        out.append(_encoder.encode({"type": item.type, **msgspec.to_builtins(item)}))  # "message" is a default
    return out


class ResponsesHooks(RequestHooks):
    async def prepare(self, req: ChatRequest, key_id: str | None, state: object) -> object | None:
        r = req.wire_request if isinstance(req, ResponsesChatRequest) else None
        if r is None:
            return None
        store: ResponseStore | None = getattr(state, "responses", None)
        history: list[bytes] = []
        if r.previous_response_id is not None:
            stored = await store.get(r.previous_response_id, key_id) if store is not None else None
            if stored is None:
                raise not_found(r.previous_response_id)
            history = [bytes(item) for item in _raw_items.decode(stored.conversation)]
            earlier = items_to_messages(decode_items(stored.conversation), "previous_response")
            at = 1 if r.instructions else 0  # the earlier turns' instructions are not carried over (OpenAI's rule)
            req.messages[at:at] = earlier
        if store is None or r.store is False:
            return None
        return PendingStore(store=store, key_id=key_id, input_items=input_items(r), history=history)

    async def finished(self, pending: object, response: bytes) -> None:
        if not isinstance(pending, PendingStore):
            return
        final = _final_decoder.decode(response)
        conversation = [*pending.history, *pending.input_items, *(bytes(item) for item in final.output)]
        created = time.time()
        retention = pending.store.retention_s
        record = StoredResponse(
            id=final.id,
            key_id=pending.key_id,
            created_at=created,
            expires_at=created + retention,
            response=response,
            input_items=b"[" + b",".join(pending.input_items) + b"]",
            conversation=b"[" + b",".join(conversation) + b"]",
        )
        try:
            await pending.store.put(record)
        except Exception:  # the answer is still good; only the next turn's continuation is lost
            log.exception("could not store response %s", final.id)
