"""Image sizes read from the first bytes of an image, and the token counts of images."""

from __future__ import annotations

import base64

import pytest

from omnirelay.core.images import (
    UNKNOWN_IMAGE_TOKENS,
    anthropic_image_tokens,
    image_size,
    image_tokens,
    openai_image_tokens,
)
from omnirelay.core.types import ImagePart


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _png(w: int, h: int) -> bytes:
    ihdr = w.to_bytes(4, "big") + h.to_bytes(4, "big") + b"\x08\x02\x00\x00\x00"
    return b"\x89PNG\r\n\x1a\n" + (13).to_bytes(4, "big") + b"IHDR" + ihdr + b"\0" * 4 + b"IDATjunk"


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload


def _jpeg(w: int, h: int, frame: int = 0xC0) -> bytes:
    sof = b"\x08" + h.to_bytes(2, "big") + w.to_bytes(2, "big") + b"\x03" + b"\x01\x22\x00" * 3
    return (
        b"\xff\xd8"
        + _segment(0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0")
        + _segment(0xE1, b"Exif\0\0" + b"\x5a" * 20_000)  # a large EXIF block before the frame header
        + _segment(0xDB, b"\0" * 65)
        + _segment(0xC4, b"\0" * 30)  # a Huffman table: a 0xC_ marker that is not a frame
        + _segment(frame, sof)
        + b"\xff\xda\0\x0c"
        + b"\0" * 100
    )


def _riff(kind: bytes, body: bytes) -> bytes:
    chunk = kind + len(body).to_bytes(4, "little") + body
    return b"RIFF" + (4 + len(chunk)).to_bytes(4, "little") + b"WEBP" + chunk


@pytest.mark.parametrize(
    ("raw", "size"),
    [
        (_png(4000, 3000), (4000, 3000)),
        (b"GIF89a" + (640).to_bytes(2, "little") + (480).to_bytes(2, "little") + b"\0" * 20, (640, 480)),
        (_jpeg(3000, 2000), (3000, 2000)),
        (_jpeg(800, 600, frame=0xC2), (800, 600)),  # progressive
        (
            _riff(b"VP8 ", b"\x10\x02\x00\x9d\x01\x2a" + (1024).to_bytes(2, "little") + (768).to_bytes(2, "little")),
            (1024, 768),
        ),
        (_riff(b"VP8L", b"\x2f" + (511 | (255 << 14)).to_bytes(4, "little")), (512, 256)),
        (_riff(b"VP8X", b"\0" * 4 + (1999).to_bytes(3, "little") + (999).to_bytes(3, "little")), (2000, 1000)),
    ],
    ids=["png", "gif", "jpeg-exif", "jpeg-progressive", "webp-vp8", "webp-vp8l", "webp-vp8x"],
)
def test_image_size_from_the_header(raw: bytes, size: tuple[int, int]) -> None:
    assert image_size(_b64(raw)) == size


@pytest.mark.parametrize(
    "data",
    [
        _b64(b"not an image at all, just text"),
        "%%%not base64%%%",
        "",
        _b64(b"\xff\xd8\xff\xda\0\x02"),
        _b64(_png(0, 9)),
    ],
    ids=["text", "bad-base64", "empty", "jpeg-without-frame", "zero-width"],
)
def test_unreadable_images_have_no_size(data: str) -> None:
    assert image_size(data) is None
    assert image_tokens(ImagePart(data=data or None, media_type="image/png")) == UNKNOWN_IMAGE_TOKENS


def test_openai_tile_formula_matches_the_documented_examples() -> None:
    assert openai_image_tokens(1024, 1024, "high") == 765
    assert openai_image_tokens(2048, 4096, "high") == 1105
    assert openai_image_tokens(4096, 8192, None) == 1105  # auto counts as high; fitted in 2048 first
    assert openai_image_tokens(4096, 8192, "low") == 85
    assert openai_image_tokens(100, 100, "high") == 255  # no upscaling


def test_anthropic_formula_and_cap() -> None:
    assert anthropic_image_tokens(1092, 1092) == 1590
    assert anthropic_image_tokens(200, 200) == 54
    assert anthropic_image_tokens(8000, 8000) == 1600


def test_an_image_counts_as_the_larger_of_both_and_pdfs_by_size() -> None:
    assert image_tokens(ImagePart(data=_b64(_png(1092, 1092)), detail="low")) == 1590
    assert image_tokens(ImagePart(data=_b64(_png(64, 64)))) == 255
    assert image_tokens(ImagePart(url="https://example.com/x.png")) == UNKNOWN_IMAGE_TOKENS
    pdf = _b64(b"%PDF-1.7" + b"x" * 100_000)
    assert image_tokens(ImagePart(data=pdf, media_type="application/pdf")) == 50_004
    assert image_tokens(ImagePart(url="https://example.com/x.pdf", media_type="application/pdf")) == 1600


def test_header_read_does_not_decode_the_whole_image() -> None:
    big = _b64(_png(10, 10) + b"\0" * 5_000_000)
    broken_tail = big[: len(big) // 2] + "!!!!" + big[len(big) // 2 :]  # only the head is ever decoded
    assert image_size(broken_tail) == (10, 10)
