"""A small PNG decoder for screenshot checks (8-bit RGB/RGBA, not interlaced), stdlib only.

Chromium writes exactly that kind of PNG. Decoding it here spares a Pillow
dependency: the test needs only the size and the pixels' colours.
"""

from __future__ import annotations

import struct
import zlib
from collections import Counter
from dataclasses import dataclass

SIGNATURE = b"\x89PNG\r\n\x1a\n"


class PNGError(ValueError):
    """Not a PNG this decoder reads (or a corrupt one)."""


@dataclass(frozen=True)
class Image:
    """Decoded pixels: `rows[y]` holds `width * channels` bytes."""

    width: int
    height: int
    channels: int
    rows: list[bytes]

    def pixel(self, x: int, y: int) -> tuple[int, int, int]:
        """The RGB colour at (x, y)."""
        i = x * self.channels
        r, g, b = self.rows[y][i : i + 3]
        return r, g, b

    def colours(self) -> Counter[tuple[int, int, int]]:
        """How many pixels have each RGB colour."""
        n = self.channels
        counts: Counter[tuple[int, int, int]] = Counter()
        for row in self.rows:
            counts.update(zip(row[0::n], row[1::n], row[2::n], strict=True))
        return counts


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    if data[:8] != SIGNATURE:
        raise PNGError("no PNG signature")
    chunks, pos = [], 8
    while pos < len(data):
        if pos + 12 > len(data):
            raise PNGError("truncated chunk")
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        if zlib.crc32(kind + body) != crc:
            raise PNGError(f"bad CRC in {kind!r}")
        chunks.append((kind, body))
        pos += 12 + length
    if not chunks or chunks[0][0] != b"IHDR" or chunks[-1][0] != b"IEND":
        raise PNGError("IHDR must come first and IEND last")
    return chunks


def decode(data: bytes) -> Image:
    """Decode an 8-bit truecolour PNG (with or without alpha)."""
    chunks = _chunks(data)
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    if depth != 8 or colour not in (2, 6) or interlace:
        raise PNGError(
            f"unsupported PNG: depth {depth}, colour type {colour}, interlace {interlace}"
        )
    channels = 3 if colour == 2 else 4
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    stride = width * channels
    if len(raw) != height * (stride + 1):
        raise PNGError("pixel data does not match the header's size")
    masks = (int.from_bytes(b"\x7f" * stride, "big"), int.from_bytes(b"\x80" * stride, "big"))
    rows, prior = [], bytes(stride)
    for y in range(height):
        start = y * (stride + 1)
        line = raw[start + 1 : start + 1 + stride]
        prior = _unfilter(raw[start], line, prior, channels, masks)
        rows.append(prior)
    return Image(width, height, channels, rows)


def _add(a: bytes, b: bytes, masks: tuple[int, int]) -> bytes:
    """Bytewise a + b mod 256, on whole rows at once (SIMD within a Python int)."""
    low, high = masks
    x, y = int.from_bytes(a, "big"), int.from_bytes(b, "big")
    return (((x & low) + (y & low)) ^ ((x ^ y) & high)).to_bytes(len(a), "big")


def _unfilter(kind: int, line: bytes, prior: bytes, bpp: int, masks: tuple[int, int]) -> bytes:
    # https://www.w3.org/TR/png-3/#9Filter-types
    if kind == 0:
        return line
    if kind == 2:
        return _add(line, prior, masks)
    out = bytearray(line)
    for i in range(len(out)):
        left = out[i - bpp] if i >= bpp else 0
        up = prior[i]
        if kind == 1:
            out[i] = (out[i] + left) & 255
        elif kind == 3:
            out[i] = (out[i] + ((left + up) >> 1)) & 255
        elif kind == 4:
            corner = prior[i - bpp] if i >= bpp else 0
            p = left + up - corner
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
            pred = left if pa <= pb and pa <= pc else up if pb <= pc else corner
            out[i] = (out[i] + pred) & 255
        else:
            raise PNGError(f"unknown filter type {kind}")
    return bytes(out)
