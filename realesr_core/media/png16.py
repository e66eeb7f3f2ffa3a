"""16-bit PNG reading and writing, which Pillow cannot do for colour images (it truncates them to 8 bits).

Non-interlaced PNGs of bit depth 16 in every colour type (gray, gray+alpha, RGB, RGBA); everything else is left
to Pillow.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import ImageError

SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHANNELS = {0: 1, 4: 2, 2: 3, 6: 4}  # PNG colour type -> channels


def is_16bit_png(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            head = handle.read(33)
    except OSError:
        return False
    return head[:8] == SIGNATURE and head[12:16] == b"IHDR" and head[24] == 16


def read_png16(path: Path) -> np.ndarray:
    """HWC uint16."""
    data = Path(path).read_bytes()
    offset, idat, header = 8, [], None
    while offset + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        body = data[offset + 8 : offset + 8 + length]
        if len(body) != length:
            raise ImageError(f"{Path(path).name}: PNG chunk {kind!r} is truncated")
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        offset += 12 + length
    if header is None:
        raise ImageError(f"{Path(path).name}: PNG has no header")
    width, height, depth, colour, _compression, _filter, interlace = header
    if depth != 16 or colour not in CHANNELS or interlace:
        raise ImageError(f"{Path(path).name}: only non-interlaced 16-bit PNGs are read here")
    if width == 0 or height == 0:
        raise ImageError(f"{Path(path).name}: image has no pixels ({width}x{height})")
    channels = CHANNELS[colour]
    try:
        raw = zlib.decompress(b"".join(idat))
    except zlib.error as exc:
        raise ImageError(f"{Path(path).name}: PNG image data is damaged: {exc}") from exc
    stride = width * channels * 2
    if len(raw) != height * (stride + 1):
        raise ImageError(f"{Path(path).name}: PNG image data has {len(raw)} bytes, expected {height * (stride + 1)}")
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(height, stride + 1)
    pixels = _unfilter(rows[:, 0], rows[:, 1:].astype(np.int32), bpp=channels * 2)
    return pixels.view(">u2").reshape(height, width, channels).astype(np.uint16)


def _unfilter(filters: np.ndarray, rows: np.ndarray, bpp: int) -> np.ndarray:
    out = np.zeros_like(rows, dtype=np.uint8)
    previous = np.zeros(rows.shape[1], dtype=np.int32)
    for y, kind in enumerate(filters):
        line = rows[y]
        if kind == 0:
            current = line
        elif kind == 2:
            current = (line + previous) & 0xFF
        elif kind == 1:  # Sub: a running sum along each byte lane
            current = (np.cumsum(line.reshape(-1, bpp), axis=0) & 0xFF).reshape(-1)
        elif kind in (3, 4):
            current = _unfilter_sequential(int(kind), line, previous, bpp)
        else:
            raise ImageError(f"PNG row {y} has unknown filter type {kind}")
        out[y] = current
        previous = current.astype(np.int32)
    return out


def _unfilter_sequential(kind: int, line: np.ndarray, previous: np.ndarray, bpp: int) -> np.ndarray:
    """Average and Paeth depend on the already decoded left pixel: decode one pixel at a time."""
    current = np.zeros_like(line)
    for x in range(0, line.shape[0], bpp):
        left = current[x - bpp : x] if x else np.zeros(bpp, dtype=np.int32)
        up = previous[x : x + bpp]
        if kind == 3:
            predictor = (left + up) // 2
        else:
            up_left = previous[x - bpp : x] if x else np.zeros(bpp, dtype=np.int32)
            p = left + up - up_left
            pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - up_left)
            predictor = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, up_left))
        current[x : x + bpp] = (line[x : x + bpp] + predictor) & 0xFF
    return current


def write_png16(path: Path, pixels: np.ndarray) -> None:
    """HWC uint16 (C = 1..4) as a 16-bit PNG, rows filtered with 'Up' for a smaller file."""
    height, width, channels = pixels.shape
    colour = {v: k for k, v in CHANNELS.items()}[channels]
    rows = np.ascontiguousarray(pixels, dtype=">u2").view(np.uint8).reshape(height, width * channels * 2).astype(np.int16)
    up = np.diff(rows, axis=0, prepend=np.zeros((1, rows.shape[1]), np.int16)) & 0xFF
    filtered = np.concatenate([np.full((height, 1), 2, np.uint8), up.astype(np.uint8)], axis=1)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 16, colour, 0, 0, 0)
    data = SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(filtered.tobytes(), 6)) + chunk(b"IEND", b"")
    Path(path).write_bytes(data)
