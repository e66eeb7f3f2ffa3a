"""What a file is, from its content: real images and videos made as users make them, and what is neither."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from realesr_core.media.kinds import IMAGE, VIDEO, identify

from helpers import photo

av = pytest.importorskip("av")


def clip(path: Path, container: str, codec: str, frames: int = 8) -> Path:
    """A short real-photo clip in `container` (PyAV's muxer name) with `codec`."""
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(photo(32, left=150 + 2 * index), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def song(path: Path, cover: bool = False) -> Path:
    """A tone as AAC in an M4A, or, with `cover`, as an MP3 with its album art (ID3's picture, which FFmpeg shows as
    a one-picture video stream marked as attached)."""
    codec, sample_format = ("libmp3lame", "s16p") if cover else ("aac", "fltp")
    with av.open(str(path), "w", format="mp3" if cover else "mp4") as out:
        sound = out.add_stream(codec, rate=22050)
        sound.layout = "mono"
        if cover:
            art = out.add_stream("mjpeg", rate=1)
            art.width, art.height, art.pix_fmt = 32, 32, "yuvj420p"
            art.disposition = av.stream.Disposition.attached_pic
            for packet in [*art.encode(av.VideoFrame.from_ndarray(photo(32), format="rgb24")), *art.encode(None)]:
                out.mux(packet)
        tone = np.sin(np.arange(22050) / 7)[None]
        tone = (tone * 3000).astype(np.int16) if cover else (tone * 0.3).astype(np.float32)
        samples = av.AudioFrame.from_ndarray(tone, format=sample_format, layout="mono")
        samples.sample_rate, samples.pts, samples.time_base = 22050, 0, Fraction(1, 22050)
        for packet in [*sound.encode(samples), *sound.encode(None)]:
            out.mux(packet)
    return path


@pytest.mark.parametrize(("suffix", "container", "codec"), [
    (".ts", "mpegts", "libx264"), (".m2ts", "mpegts", "libx264"), (".mts", "mpegts", "libx264"),
    (".mpg", "mpeg", "mpeg1video"), (".vob", "vob", "mpeg2video"), (".flv", "flv", "flv"), (".wmv", "asf", "wmv2"),
    (".3gp", "3gp", "libx264"), (".ogv", "ogg", "libvpx"), (".mxf", "mxf", "mpeg2video"),
    (".mp4", "mp4", "libx264"), (".mkv", "matroska", "libx264"),
])
def test_videos_of_every_common_container_are_videos(tmp_path: Path, suffix: str, container: str,
                                                     codec: str) -> None:
    """Broadcast, DVD, camcorder, phone and web containers PyAV opens (Ogg holds VP8 here: this FFmpeg has no
    Theora encoder, and the container is what is told apart)."""
    try:
        av.codec.Codec(codec, "w")
    except av.error.FFmpegError:
        pytest.skip(f"this FFmpeg has no {codec} encoder")
    what = identify(clip(tmp_path / f"clip{suffix}", container, codec))
    assert what.kind == VIDEO, what


def test_images_are_told_by_content_not_name(tmp_path: Path) -> None:
    Image.fromarray(photo(16)).save(tmp_path / "photo.avif")
    Image.fromarray(photo(16)).save(tmp_path / "really_a_png.jpg", format="PNG")
    Image.fromarray(photo(16)).save(tmp_path / "no_suffix", format="JPEG")
    Image.fromarray(photo(16)).save(tmp_path / "image.qoi")
    assert identify(tmp_path / "photo.avif") == identify(tmp_path / "photo.avif")
    assert (identify(tmp_path / "photo.avif").kind, identify(tmp_path / "photo.avif").format) == (IMAGE, "avif")
    assert (identify(tmp_path / "really_a_png.jpg").kind, identify(tmp_path / "really_a_png.jpg").format) == (IMAGE,
                                                                                                                "png")
    assert identify(tmp_path / "no_suffix").format == "jpeg"
    assert identify(tmp_path / "image.qoi").kind == IMAGE


def test_what_is_neither_says_what_it_is(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("shot list\nday 1: harbour\n")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "noise.bin").write_bytes(np.random.default_rng(0).integers(0, 256, 4000, np.uint8).tobytes())
    assert identify(tmp_path / "notes.txt").why == "not an image or video"
    assert identify(tmp_path / "noise.bin").why == "not an image or video"
    assert identify(tmp_path / "empty.png").why == "empty"
    assert identify(tmp_path / "gone.png").why == "cannot be read"
    audio = identify(song(tmp_path / "tone.m4a"))
    assert (audio.kind, audio.why) == (None, "audio only")
    with_cover = identify(song(tmp_path / "tone.mp3", cover=True))  # the cover is a picture, not a video
    assert (with_cover.kind, with_cover.why) == (None, "audio only")
