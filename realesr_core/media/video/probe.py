"""What a video file says about itself, read from its header and packets (nothing is decoded): the first video
stream's size, rate, time base, bit depth, colour properties, frame count and keyframes."""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import Any

from ...errors import RealESRError
from ...extras import import_extra

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".webm", ".avi", ".m4v")
COLOUR_PROPERTIES = ("color_range", "colorspace", "color_primaries", "color_trc")


class VideoError(RealESRError, ValueError):
    """A video file is unusable (no video stream, no frames, damaged) or cannot be written as asked."""


def av_module() -> ModuleType:
    """PyAV, or an error naming the `video` extra."""
    return import_extra("av", "video", "video")


@dataclass(frozen=True)
class SourceFacts:
    """The first video stream of a file, as its header and packets describe it."""

    time_base: Fraction
    rate: Fraction
    size: tuple[int, int]  # width, height
    bits: int  # the deepest component of the decoded pixel format
    total: int  # frames, estimated where the container does not say
    keyframes: list[int]  # presentation timestamps of the keyframes, in file order
    colour: dict[str, Any]  # COLOUR_PROPERTIES and the sample aspect ratio, as the decoder reports them


def open_video(av: ModuleType, source: Path) -> Any:
    """The opened container, or a VideoError naming the file."""
    try:
        return av.open(str(source))
    except (av.error.FFmpegError, OSError) as exc:
        raise VideoError(f"cannot read video {source}: {exc}") from exc


def first_video_stream(container: Any, source: Path) -> Any:
    if not container.streams.video:
        raise VideoError(f"{source.name} has no video stream")
    return container.streams.video[0]


def frame_size(source: str | os.PathLike) -> tuple[int, int]:
    """The width and height of the first video stream's frames, read from the header (nothing is decoded)."""
    av = av_module()
    source = Path(source)
    try:
        with open_video(av, source) as container:
            stream = first_video_stream(container, source)
            return stream.width, stream.height
    except av.error.FFmpegError as exc:
        raise VideoError(f"cannot read video {source}: {exc}") from exc


def probe_video(av: ModuleType, source: Path) -> SourceFacts:
    """The first video stream's facts; its packets are read (not decoded) to find the keyframes."""
    with open_video(av, source) as container:
        stream = first_video_stream(container, source)
        context = stream.codec_context
        bits = max(component.bits for component in context.format.components) if context.format else 8
        rate = stream.average_rate or stream.guessed_rate or Fraction(25)
        total = stream.frames or round(float(stream.duration * stream.time_base * rate) if stream.duration else 0)
        colour = {name: getattr(context, name, None) for name in (*COLOUR_PROPERTIES, "sample_aspect_ratio")}
        keyframes = [packet.pts for packet in container.demux(stream) if packet.is_keyframe and packet.pts is not None]
        return SourceFacts(stream.time_base, rate, (context.width, context.height), bits, total, keyframes, colour)
