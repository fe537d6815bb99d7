"""Token estimates for when an upstream reports none: credit reservations and TPM before a call, and the charge
for a stream cut off before its usage arrived. About four characters per token for ASCII text and code, plus
one token per two bytes of UTF-8 beyond the first of each non-ASCII character (CJK text, about one token per
character, comes out at 1.25); images and documents from their real size (``core.images``). Deliberately
simple: exact counts always replace these when the upstream reports them.
"""

from __future__ import annotations

from omnirelay.core.images import image_tokens
from omnirelay.core.types import ChatRequest, ImagePart, TextPart, Usage

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD = 4


def estimate_text_tokens(chars: int) -> int:
    return -(-chars // CHARS_PER_TOKEN)


def estimate_tokens_of(text: str) -> int:
    tokens = -(-len(text) // CHARS_PER_TOKEN)
    if not text.isascii():  # one C pass; only non-ASCII text pays for the encode
        tokens += (len(text.encode("utf-8", "surrogatepass")) - len(text)) // 2
    return tokens


def estimate_request_tokens(req: ChatRequest) -> int:
    total = 0
    for msg in req.messages:
        total += MESSAGE_OVERHEAD
        for part in msg.content:
            if isinstance(part, TextPart):
                total += estimate_tokens_of(part.text)
            elif isinstance(part, ImagePart):
                total += image_tokens(part)
        for call in msg.tool_calls:
            total += estimate_text_tokens(len(call.name) + len(call.arguments))
    for tool in req.tools:
        total += estimate_text_tokens(len(tool.name) + len(tool.description or "") + len(str(tool.parameters)))
    return total


def estimated_usage(req: ChatRequest, produced_chars: int = 0) -> Usage:
    """The usage to charge for a call that ended before its upstream reported any: the prompt as sent and the
    text produced so far (none for a call cancelled before it answered)."""
    return Usage(input_tokens=estimate_request_tokens(req), output_tokens=estimate_text_tokens(produced_chars))
