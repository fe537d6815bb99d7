"""Image token counts for estimates (credit reservations, TPM), from the image's real size where it is known.

The size of an inline (base64) PNG, JPEG, GIF or WebP is read from its header: only the few bytes that hold it
are decoded, whatever the image's length (a JPEG is walked marker by marker, decoding each segment's 4-byte
head, never its data). Which provider answers is not known when the estimate is made, so an image counts as
the larger of what OpenAI (tiles of 512 px after fitting the image in 2048 px and its short side in 768 px;
85 tokens for ``detail: low``) and Anthropic (width * height / 750 after fitting the long edge in 1568 px, at
most about 1,600) charge for it. An image given by URL, or one whose header cannot be read, counts as
``UNKNOWN_IMAGE_TOKENS``: the most either provider charges for one image. An inline PDF document counts one
token per two bytes (about what a page of text costs on Anthropic), at least ``UNKNOWN_IMAGE_TOKENS``; a PDF
given by URL counts as ``UNKNOWN_IMAGE_TOKENS``, which underestimates a long one.
"""

from __future__ import annotations

import binascii
import math

from omnirelay.core.types import ImagePart

UNKNOWN_IMAGE_TOKENS = 1600
ANTHROPIC_MAX_IMAGE_TOKENS = 1600
MAX_JPEG_SEGMENTS = 64  # a JPEG whose frame header is not among its first segments counts as unknown


class _Base64Window:
    """Decodes byte ranges of a base64 text without decoding the rest of it."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def read(self, start: int, length: int) -> bytes:
        first = start // 3
        last = -(-(start + length) // 3)
        chunk = self.text[first * 4 : last * 4]
        try:
            raw = binascii.a2b_base64(chunk)
        except (binascii.Error, ValueError):
            return b""
        return raw[start - first * 3 : start - first * 3 + length]


def _png(head: bytes) -> tuple[int, int] | None:
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    return None


def _gif(head: bytes) -> tuple[int, int] | None:
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return int.from_bytes(head[6:8], "little"), int.from_bytes(head[8:10], "little")
    return None


def _webp(head: bytes) -> tuple[int, int] | None:
    if head[:4] != b"RIFF" or head[8:12] != b"WEBP":
        return None
    kind = head[12:16]
    if kind == b"VP8 " and head[23:26] == b"\x9d\x01\x2a":
        return int.from_bytes(head[26:28], "little") & 0x3FFF, int.from_bytes(head[28:30], "little") & 0x3FFF
    if kind == b"VP8L" and head[20:21] == b"\x2f":
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8X":
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    return None


def _jpeg(window: _Base64Window) -> tuple[int, int] | None:
    if window.read(0, 2) != b"\xff\xd8":
        return None
    at = 2
    for _ in range(MAX_JPEG_SEGMENTS):
        seg = window.read(at, 4)
        if len(seg) < 4 or seg[0] != 0xFF:
            return None
        marker = seg[1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            at += 2
            continue
        length = int.from_bytes(seg[2:4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
            frame = window.read(at + 5, 4)
            if len(frame) < 4:
                return None
            return int.from_bytes(frame[2:4], "big"), int.from_bytes(frame[0:2], "big")
        if marker == 0xDA or length < 2:  # start of scan before any frame header: not a valid JPEG
            return None
        at += 2 + length
    return None


def image_size(data: str) -> tuple[int, int] | None:
    """(width, height) of a base64 PNG, JPEG, GIF or WebP, read from its header; None if it is none of them."""
    window = _Base64Window(data)
    head = window.read(0, 32)
    size = _png(head) or _gif(head) or _webp(head)
    if size is None and head[:2] == b"\xff\xd8":
        size = _jpeg(window)
    if size is None or size[0] <= 0 or size[1] <= 0:
        return None
    return size


def openai_image_tokens(width: int, height: int, detail: str | None) -> int:
    if detail == "low":
        return 85
    w, h = float(width), float(height)
    if max(w, h) > 2048:
        scale = 2048 / max(w, h)
        w, h = w * scale, h * scale
    if min(w, h) > 768:
        scale = 768 / min(w, h)
        w, h = w * scale, h * scale
    return 85 + 170 * math.ceil(w / 512) * math.ceil(h / 512)


def anthropic_image_tokens(width: int, height: int) -> int:
    w, h = float(width), float(height)
    if max(w, h) > 1568:
        scale = 1568 / max(w, h)
        w, h = w * scale, h * scale
    return min(ANTHROPIC_MAX_IMAGE_TOKENS, math.ceil(w * h / 750))


def image_tokens(part: ImagePart) -> int:
    if part.media_type == "application/pdf":
        decoded = len(part.data) * 3 // 4 if part.data else 0
        return max(UNKNOWN_IMAGE_TOKENS, decoded // 2)
    size = image_size(part.data) if part.data else None
    if size is None:
        return UNKNOWN_IMAGE_TOKENS
    width, height = size
    return max(openai_image_tokens(width, height, part.detail), anthropic_image_tokens(width, height))
