"""A folder of damaged files, as archives and memory cards have them: cut short, bytes garbled or zeroed, headers
pointing past the end. Made in-process from real photos and clips (Pillow, tifffile, PyAV)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
from PIL import Image

from helpers import make_clip, photo

CUTS = (0.02, 0.1, 0.3, 0.5, 0.7, 0.9, 0.98)  # where a copy was cut short, as a share of the file
GARBLED = 3  # copies with random bytes over a run in the middle, each its own seed


def originals(folder: Path) -> dict[str, bytes]:
    """Undamaged files of every kind, small: PNG (8- and 16-bit), JPEG, progressive JPEG, TIFF (striped and tiled),
    WebP, animated GIF, BMP, MP4 and MKV clips with audio."""
    import imagecodecs
    import tifffile

    folder.mkdir(parents=True, exist_ok=True)
    made = folder / "originals"
    made.mkdir(exist_ok=True)
    picture = photo(24)
    Image.fromarray(picture).save(made / "a.png")
    (made / "a16.png").write_bytes(imagecodecs.png_encode(picture.astype(np.uint16) * 257))
    Image.fromarray(picture).save(made / "a.jpg", quality=90)
    Image.fromarray(picture).save(made / "p.jpg", quality=90, progressive=True)
    tifffile.imwrite(made / "a.tif", picture, compression="zlib", rowsperstrip=4)
    tifffile.imwrite(made / "t.tif", photo(32), tile=(16, 16))
    Image.fromarray(picture).save(made / "a.webp", quality=90)
    frames = [Image.fromarray(photo(24, left=150 + 4 * i)) for i in range(3)]
    frames[0].save(made / "a.gif", save_all=True, append_images=frames[1:])
    Image.fromarray(picture).save(made / "a.bmp")
    make_clip(made / "clip.mp4", frames=6)
    make_clip(made / "clip.mkv", frames=6)
    files = {path.name: path.read_bytes() for path in sorted(made.iterdir())}
    for path in made.iterdir():
        path.unlink()
    made.rmdir()
    return files


def damaged_folder(folder: Path) -> list[str]:
    """Writes damaged copies of every original into `folder` (12 per original, 16 for TIFF), returns their names."""
    rng = np.random.default_rng(7)
    names = []
    for name, data in originals(folder).items():
        stem, suffix = name.rsplit(".", 1)
        copies = {f"{stem}_cut{int(cut * 100):02d}.{suffix}": data[: max(1, int(len(data) * cut))] for cut in CUTS}
        for seed in range(GARBLED):
            garbled = bytearray(data)
            start = len(data) // 3 + seed * 7
            garbled[start : start + 64] = rng.integers(0, 256, 64, np.uint8).tobytes()
            copies[f"{stem}_garbled{seed}.{suffix}"] = bytes(garbled)
        zeroed = bytearray(data)
        zeroed[len(data) // 2 : len(data) // 2 + 200] = bytes(200)
        copies[f"{stem}_zeroed.{suffix}"] = bytes(zeroed)
        copies[f"{stem}_header_only.{suffix}"] = data[:24]
        copies[f"{stem}_tail_only.{suffix}"] = data[len(data) // 2 :]
        copies[f"{stem}_doubled.{suffix}"] = data + data[: len(data) // 2]  # a copy that wrote past its end
        if suffix == "tif":
            copies.update(_broken_tiffs(stem, data))
        for copy, content in copies.items():
            (folder / copy).write_bytes(content)
            names.append(copy)
    return names


def _broken_tiffs(stem: str, data: bytes) -> dict[str, bytes]:
    """TIFFs whose structure points nowhere: the first IFD past the end (tifffile's `IndexError: 0`), an IFD with
    an absurd entry count, strips or tiles past the end, and the byte order mark swapped."""
    order = "<" if data[:2] == b"II" else ">"
    first_ifd = struct.unpack(order + "I", data[4:8])[0]
    past_end = data[:4] + struct.pack(order + "I", len(data) + 1000) + data[8:]
    absurd = bytearray(data)
    absurd[first_ifd : first_ifd + 2] = struct.pack(order + "H", 65000)
    strips = bytearray(data)
    count = struct.unpack(order + "H", data[first_ifd : first_ifd + 2])[0]
    for index in range(count):  # every strip or tile offset (tags 273, 324) moved past the end
        entry = first_ifd + 2 + 12 * index
        tag, kind, values, value = struct.unpack(order + "HHII", data[entry : entry + 12])
        if tag in (273, 324):
            if values == 1:
                strips[entry + 8 : entry + 12] = struct.pack(order + "I", len(data) * 4)
            else:
                for position in range(values):
                    at = value + 4 * position if kind == 4 else value + 2 * position
                    strips[at : at + (4 if kind == 4 else 2)] = struct.pack(order + ("I" if kind == 4 else "H"),
                                                                            len(data) * 4 if kind == 4 else 65535)
    swapped = (b"MM" if data[:2] == b"II" else b"II") + data[2:]
    return {f"{stem}_ifd_past_end.tif": past_end, f"{stem}_ifd_absurd.tif": bytes(absurd),
            f"{stem}_data_past_end.tif": bytes(strips), f"{stem}_byte_order.tif": swapped}
