"""What a file is comes from its content: a folder run takes every image and video, whatever they are named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from realesr_core.media import media_kind

from helpers import make_clip, photo


def test_files_are_known_by_their_content_not_their_names(tmp_path: Path) -> None:
    av = pytest.importorskip("av")
    Image.fromarray(photo(16)).save(tmp_path / "holiday.ts", format="PNG")  # a picture with a video's name
    Image.fromarray(photo(16)).save(tmp_path / "scan.dat", format="AVIF")
    make_clip(tmp_path / "recording.mkv", frames=2, audio=False).rename(tmp_path / "recording.bin")
    with av.open(str(tmp_path / "broadcast.jpg"), "w", format="mpegts") as out:  # an MPEG-TS recording, misnamed
        stream = out.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = 32, 24, "yuv420p"
        for index in range(6):
            frame = av.VideoFrame.from_ndarray(photo(40)[:24, :32], format="rgb24")
            frame.pts = index
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    (tmp_path / "notes.png").write_text("a shopping list")
    (tmp_path / "noise.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    (tmp_path / "cut.tif").write_bytes(b"II*\x00" + b"\xff" * 12)  # a damaged TIFF is still a TIFF: its read names it
    kinds = {path.name: media_kind(path) for path in tmp_path.iterdir()}
    assert kinds == {"holiday.ts": "image", "scan.dat": "image", "recording.bin": "video", "broadcast.jpg": "video",
                     "notes.png": None, "noise.mp4": None, "cut.tif": "image"}
