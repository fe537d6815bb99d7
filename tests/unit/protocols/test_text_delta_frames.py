"""The hand-built text-delta frames of the Anthropic and Responses stream encoders (their most frequent frame, built
from bytes parts instead of encoding a Struct each time) are byte for byte what encoding the wire Struct gives, for
texts that need JSON escaping and multi-byte UTF-8."""

from __future__ import annotations

import msgspec
import pytest

from omnirelay.core.events import StreamStart, TextDelta
from omnirelay.protocols.anthropic_messages import PROTOCOL as ANTHROPIC
from omnirelay.protocols.openai_responses import PROTOCOL as RESPONSES
from omnirelay.wire import anthropic_messages as anthropic_wire
from omnirelay.wire import openai_responses as responses_wire
from omnirelay.wire.sse import encode_event

TEXTS = ["plain", 'quote " and \\ backslash', "line\nbreak\ttab", "Grüß dich 👋", "\u2028 \x01 </script>"]
ENC = msgspec.json.Encoder()


def _data_of(frame: bytes) -> dict[str, object]:
    line = next(x for x in frame.split(b"\n") if x.startswith(b"data: "))
    decoded: dict[str, object] = msgspec.json.decode(line[6:])
    return decoded


@pytest.mark.parametrize("text", TEXTS)
def test_anthropic_text_delta_is_the_struct_encoding(text: str) -> None:
    req = ANTHROPIC.parse_request(
        msgspec.json.encode(
            {"model": "m", "max_tokens": 5, "stream": True, "messages": [{"role": "user", "content": "x"}]}
        ),
        {},
    )
    enc = ANTHROPIC.stream_encoder(req)
    enc.encode(StreamStart(id="msg_1", model="m"))
    enc.encode(TextDelta(text="first"))  # opens the text block (the general path)
    frame = enc.encode(TextDelta(text=text))  # the fast path
    delta = anthropic_wire.AnyDelta(type="text_delta", text=text)
    expected = encode_event(
        ENC.encode(anthropic_wire.ContentBlockDeltaEvent(index=0, delta=delta)), "content_block_delta"
    )
    assert frame == expected


@pytest.mark.parametrize("text", TEXTS)
def test_responses_text_delta_is_the_struct_encoding(text: str) -> None:
    req = RESPONSES.parse_request(msgspec.json.encode({"model": "m", "input": "x", "stream": True}), {})
    enc = RESPONSES.stream_encoder(req)
    enc.encode(StreamStart(id="r", model="m"))
    opening = enc.encode(TextDelta(text="first"))  # opens the message item (the general path)
    item_id = str(_data_of(opening.split(b"\n\n")[-2])["item_id"])
    frame = enc.encode(TextDelta(text=text))  # the fast path
    seq = int(str(_data_of(frame)["sequence_number"]))
    event = responses_wire.OutputTextDelta(
        sequence_number=seq, item_id=item_id, output_index=0, content_index=0, delta=text
    )
    assert frame == encode_event(ENC.encode(event), "response.output_text.delta")
    assert seq == int(str(_data_of(opening.split(b"\n\n")[-2])["sequence_number"])) + 1
