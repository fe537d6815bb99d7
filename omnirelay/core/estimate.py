"""Token estimates for when an upstream reports none: credit reservations before a call, and the charge for
a stream cut off before its usage arrived. About four characters per token for English text and code; images
at a flat 1,000 tokens. Deliberately simple: exact counts always replace these when the upstream reports them.
"""

from __future__ import annotations

from omnirelay.core.types import ChatRequest, ImagePart, TextPart, Usage

CHARS_PER_TOKEN = 4
IMAGE_TOKENS = 1000
MESSAGE_OVERHEAD = 4


def estimate_text_tokens(chars: int) -> int:
    return -(-chars // CHARS_PER_TOKEN)


def estimate_request_tokens(req: ChatRequest) -> int:
    total = 0
    for msg in req.messages:
        total += MESSAGE_OVERHEAD
        for part in msg.content:
            if isinstance(part, TextPart):
                total += estimate_text_tokens(len(part.text))
            elif isinstance(part, ImagePart):
                total += IMAGE_TOKENS
        for call in msg.tool_calls:
            total += estimate_text_tokens(len(call.name) + len(call.arguments))
    for tool in req.tools:
        total += estimate_text_tokens(len(tool.name) + len(tool.description or "") + len(str(tool.parameters)))
    return total


def estimated_usage(req: ChatRequest, produced_chars: int = 0) -> Usage:
    """The usage to charge for a call that ended before its upstream reported any: the prompt as sent and the
    text produced so far (none for a call cancelled before it answered)."""
    return Usage(input_tokens=estimate_request_tokens(req), output_tokens=estimate_text_tokens(produced_chars))
