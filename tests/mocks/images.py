"""Real PNG files for the image-generation mocks: a solid colour (from the prompt and the image's index, so the
images of one reply differ) at the size the upstream would return, encoded as a valid PNG (signature, IHDR,
zlib-compressed IDAT, IEND, each chunk with its CRC)."""

from __future__ import annotations

import base64
import functools
import hashlib
import struct
import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


@functools.lru_cache(maxsize=64)
def solid_png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    row = b"\x00" + bytes(rgb) * width  # filter type 0, then RGB pixels
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit truecolour
    idat = zlib.compress(row * height, 6)
    return PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def colour_of(prompt: str, index: int) -> tuple[int, int, int]:
    digest = hashlib.sha256(f"{prompt}#{index}".encode()).digest()
    return digest[0], digest[1], digest[2]


def png_b64(prompt: str, index: int, width: int, height: int) -> str:
    return base64.b64encode(solid_png(width, height, colour_of(prompt, index))).decode()
