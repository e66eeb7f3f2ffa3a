"""16-bit TIFF reading and writing for colour images, which Pillow truncates to 8 bits.

Baseline uncompressed TIFFs with 16 bits per sample, chunky (interleaved) samples, in strips, either byte order;
everything else is left to Pillow.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from ..errors import ImageError

TAGS = {"width": 256, "height": 257, "bits": 258, "compression": 259, "photometric": 262, "strip_offsets": 273,
        "samples": 277, "rows_per_strip": 278, "strip_counts": 279, "planar": 284, "extra": 338}
TYPE_SIZES = {3: 2, 4: 4}  # SHORT, LONG


def _ifd(data: bytes) -> tuple[str, dict[int, list[int]]] | None:
    if data[:4] not in (b"II*\0", b"MM\0*"):
        return None
    order = "<" if data[:2] == b"II" else ">"
    (offset,) = struct.unpack(order + "I", data[4:8])
    (count,) = struct.unpack(order + "H", data[offset : offset + 2])
    tags: dict[int, list[int]] = {}
    for i in range(count):
        entry = data[offset + 2 + 12 * i : offset + 14 + 12 * i]
        tag, kind, n = struct.unpack(order + "HHI", entry[:8])
        if kind not in TYPE_SIZES:
            continue
        size = TYPE_SIZES[kind] * n
        raw = entry[8 : 8 + size] if size <= 4 else data[struct.unpack(order + "I", entry[8:12])[0] :][:size]
        tags[tag] = list(struct.unpack(order + ("H" if kind == 3 else "I") * n, raw))
    return order, tags


def is_16bit_tiff(path: Path) -> bool:
    try:
        parsed = _ifd(Path(path).read_bytes())
    except (OSError, struct.error):
        return False
    if parsed is None:
        return False
    tags = parsed[1]
    return tags.get(TAGS["bits"], [0])[0] == 16 and tags.get(TAGS["compression"], [1])[0] == 1 \
        and tags.get(TAGS["planar"], [1])[0] == 1


def read_tiff16(path: Path) -> np.ndarray:
    """HWC uint16."""
    data = Path(path).read_bytes()
    parsed = _ifd(data)
    if parsed is None:
        raise ImageError(f"{Path(path).name}: not a TIFF file")
    order, tags = parsed
    try:
        width, height = tags[TAGS["width"]][0], tags[TAGS["height"]][0]
        channels = tags.get(TAGS["samples"], [1])[0]
        offsets, counts = tags[TAGS["strip_offsets"]], tags[TAGS["strip_counts"]]
        strips = b"".join(data[o : o + n] for o, n in zip(offsets, counts, strict=False))
    except KeyError as exc:
        raise ImageError(f"{Path(path).name}: TIFF tag {exc} is missing") from exc
    expected = width * height * channels * 2
    if width == 0 or height == 0 or len(strips) < expected:
        raise ImageError(f"{Path(path).name}: TIFF image data has {len(strips)} bytes, expected {expected}")
    pixels = np.frombuffer(strips[:expected], dtype=order + "u2").reshape(height, width, channels)
    return pixels.astype(np.uint16)


def write_tiff16(path: Path, pixels: np.ndarray) -> None:
    """HWC uint16 (C = 1..4) as an uncompressed little-endian TIFF; a 2nd or 4th channel is unassociated alpha."""
    height, width, channels = pixels.shape
    body = np.ascontiguousarray(pixels, dtype="<u2").tobytes()
    entries = [
        (TAGS["width"], 4, [width]), (TAGS["height"], 4, [height]), (TAGS["bits"], 3, [16] * channels),
        (TAGS["compression"], 3, [1]), (TAGS["photometric"], 3, [1 if channels <= 2 else 2]),
        (TAGS["strip_offsets"], 4, [8]), (TAGS["samples"], 3, [channels]), (TAGS["rows_per_strip"], 4, [height]),
        (TAGS["strip_counts"], 4, [len(body)]), (TAGS["planar"], 3, [1]),
    ]
    if channels in (2, 4):
        entries.append((TAGS["extra"], 3, [2]))
    ifd_offset = 8 + len(body) + (len(body) % 2)
    extra = bytearray()
    table = bytearray(struct.pack("<H", len(entries)))
    extra_base = ifd_offset + 2 + 12 * len(entries) + 4
    for tag, kind, values in sorted(entries):
        packed = struct.pack("<" + ("H" if kind == 3 else "I") * len(values), *values)
        if len(packed) <= 4:
            table += struct.pack("<HHI", tag, kind, len(values)) + packed.ljust(4, b"\0")
        else:
            table += struct.pack("<HHII", tag, kind, len(values), extra_base + len(extra))
            extra += packed
    table += struct.pack("<I", 0)
    header = b"II*\0" + struct.pack("<I", ifd_offset)
    Path(path).write_bytes(header + body + b"\0" * (len(body) % 2) + bytes(table) + bytes(extra))
