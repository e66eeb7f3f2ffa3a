"""What a video file says about itself: the first video stream's codec, size, rate, time base, bit depth, chroma
subsampling, colour properties, sample aspect ratio, display matrix (phone rotation), HDR10 mastering display and
light level, how many frames it should hold, and where its keyframes are. The packets are read, not decoded; only the
first picture is decoded, for the side data decoders attach to pictures."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import Any

from ...errors import RealESRError
from ...extras import import_extra

# What PyAV opens by content; the suffixes are for telling videos from images in a folder. Broadcast and camera
# (.ts, .m2ts, .mts, .mxf), DVD (.vob, .mpg), old web and phone formats (.flv, .wmv, .3gp, .ogv) included.
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".webm", ".avi", ".m4v", ".ts", ".m2ts", ".mts", ".mpg", ".mpeg", ".vob",
                  ".flv", ".wmv", ".asf", ".3gp", ".3g2", ".ogv", ".mxf", ".m2v", ".dv", ".y4m", ".hevc", ".h264", ".264",
                  ".265")
COLOUR_PROPERTIES = ("color_range", "colorspace", "color_primaries", "color_trc")
FIRST_PICTURE_PACKETS = 64  # packets read at most to find a decodable first picture for its side data
# The end of the stream may fall this many frame intervals short of the stated duration before the file counts as
# cut off (the last frame's own duration, rounding).
TRUNCATION_SLACK_FRAMES = 1.5


class VideoError(RealESRError, ValueError):
    """A video file is unusable (no video stream, no frames, damaged) or cannot be written as asked."""


def av_module() -> ModuleType:
    """PyAV, or an error naming the `video` extra."""
    return import_extra("av", "video", "video")


@dataclass(frozen=True)
class MasteringDisplay:
    """HDR10 mastering display colour volume (SMPTE ST 2086): CIE 1931 xy of the red, green and blue primaries and the
    white point, and the luminance range in cd/m2."""

    red: tuple[Fraction, Fraction]
    green: tuple[Fraction, Fraction]
    blue: tuple[Fraction, Fraction]
    white: tuple[Fraction, Fraction]
    luminance: tuple[Fraction, Fraction]  # min, max


@dataclass(frozen=True)
class SourceFacts:
    """The first video stream of a file, as its header, packets and first picture describe it."""

    codec: str  # the codec family (h264, hevc, av1, vp9, ...), not the decoder's name
    time_base: Fraction
    rate: Fraction
    size: tuple[int, int]  # width, height
    bits: int  # the deepest component of the decoded pixel format
    chroma: str  # "420", "422" or "444": the chroma subsampling of the decoded pixel format
    expected: int  # frames the file should hold (its sample table, else the packets read, plus any cut-off tail)
    truncated: bool  # the stream ends before the container says it does
    keyframes: list[int]  # presentation timestamps of the keyframes, in file order
    colour: dict[str, Any]  # COLOUR_PROPERTIES and the sample aspect ratio
    display_matrix: tuple[int, ...] | None = None  # 9 values, FFmpeg's layout; a phone's rotation
    mastering: MasteringDisplay | None = None
    light_level: tuple[int, int] | None = None  # MaxCLL, MaxFALL in cd/m2


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
    """The first video stream's facts; its packets are read (not decoded) to find the keyframes and count frames."""
    with open_video(av, source) as container:
        picture_data = _first_picture_side_data(av, container, first_video_stream(container, source))
    with open_video(av, source) as container:
        stream = first_video_stream(container, source)
        context = stream.codec_context
        rate = stream.average_rate or stream.guessed_rate or Fraction(25)
        keyframes, packets, end = _read_packets(av, container, stream)
        expected = max(stream.frames, packets, _cut_off_total(stream, end, rate))
        # the sample aspect ratio as FFmpeg guesses it: the container's (an MP4 'pasp', MKV display size) over the
        # bitstream's, so a file anamorphic only at container level is not squashed
        colour = {name: getattr(context, name, None) for name in COLOUR_PROPERTIES}
        colour["sample_aspect_ratio"] = stream.sample_aspect_ratio or None
        return SourceFacts(
            codec=context.codec.canonical_name, time_base=stream.time_base, rate=rate,
            size=(context.width, context.height), bits=_bits(context.format), chroma=_chroma(context.format),
            expected=expected, truncated=expected > packets, keyframes=keyframes, colour=colour, **picture_data)


def _bits(pixel_format: Any) -> int:
    return max(component.bits for component in pixel_format.components) if pixel_format else 8


def _chroma(pixel_format: Any) -> str:
    """"444", "422" or "420" from the size of the pixel format's chroma planes (RGB counts as 4:4:4, gray as 4:2:0:
    the upscaled result is colour either way)."""
    if pixel_format is None:
        return "420"
    components = pixel_format.components
    if getattr(pixel_format, "is_rgb", False):
        return "444"
    if len(components) < 3:
        return "420"
    luma, chroma = components[0], components[1]
    across, down = luma.width // max(chroma.width, 1), luma.height // max(chroma.height, 1)
    return "444" if across == down == 1 else "422" if (across, down) == (2, 1) else "420"


def _read_packets(av: ModuleType, container: Any, stream: Any) -> tuple[list[int], int, Fraction | None]:
    """Keyframe timestamps, the number of packets with data, and where (seconds) the last one ends. A file whose
    demuxer gives up part way (damaged, cut off) is read as far as it goes."""
    keyframes, packets, end = [], 0, None
    demuxed = container.demux(stream)
    while True:
        try:
            packet = next(demuxed)
        except StopIteration:
            break
        except av.error.FFmpegError:
            break  # the rest cannot be read; the segments stop at the same place and the loss is counted
        if not packet.size:
            continue
        packets += 1
        if packet.pts is not None:
            if packet.is_keyframe:
                keyframes.append(packet.pts)
            finish = (packet.pts + (packet.duration or 0)) * packet.time_base
            end = finish if end is None else max(end, finish)
    return keyframes, packets, end


def _cut_off_total(stream: Any, end: Fraction | None, rate: Fraction) -> int:
    """The frames a stream should hold by the duration its container states, where its packets stop well before
    that (a copy cut off part way); 0 where they do not, or nothing is stated."""
    stated = _stated_duration(stream)
    if stated is None:
        return 0
    start = (stream.start_time or 0) * stream.time_base
    read = end - start if end is not None else 0  # no whole packet at all: all of it is missing
    return round(stated * rate) if (stated - read) * rate > TRUNCATION_SLACK_FRAMES else 0


def _stated_duration(stream: Any) -> Fraction | None:
    """The stream's own duration as its container states it: the stream header, or a Matroska DURATION tag."""
    if stream.duration:
        return stream.duration * stream.time_base
    tag = next((value for key, value in stream.metadata.items() if key.upper() == "DURATION"), None)
    if not tag:
        return None
    try:
        hours, minutes, seconds = tag.split(":")
        return Fraction(int(hours) * 3600 + int(minutes) * 60) + Fraction(seconds)
    except ValueError:
        return None


def _first_picture_side_data(av: ModuleType, container: Any, stream: Any) -> dict[str, Any]:
    """The display matrix and HDR10 metadata that decoders attach to pictures (from the container, an MP4 'tkhd'
    or MKV projection, or from the bitstream's SEI), read from the first picture that decodes."""
    for count, packet in enumerate(container.demux(stream)):
        if count >= FIRST_PICTURE_PACKETS:
            break
        try:
            frames = stream.decode(packet)
        except av.error.FFmpegError:
            continue
        if frames:
            return _side_data(av, frames[0])
    return {}


def _side_data(av: ModuleType, frame: Any) -> dict[str, Any]:
    kinds = av.sidedata.sidedata.Type
    found = {entry.type: bytes(entry) for entry in frame.side_data}
    facts: dict[str, Any] = {}
    if (matrix := found.get(kinds.DISPLAYMATRIX)) and len(matrix) == 36:
        values = struct.unpack("<9i", matrix)
        if values != (65536, 0, 0, 0, 65536, 0, 0, 0, 1 << 30):  # the identity: nothing to carry
            facts["display_matrix"] = values
    if (mastering := found.get(kinds.MASTERING_DISPLAY_METADATA)) and len(mastering) >= 88:
        # AVMasteringDisplayMetadata: 3 primaries (r, g, b) and the white point as xy rationals, min and max
        # luminance as rationals, then whether each half is present
        numbers = struct.unpack("<20i2i", mastering[:88])
        fractions = [Fraction(numbers[i], numbers[i + 1]) if numbers[i + 1] else Fraction(0)
                     for i in range(0, 20, 2)]
        if numbers[20] and numbers[21]:
            pairs = [tuple(fractions[i : i + 2]) for i in range(0, 10, 2)]
            facts["mastering"] = MasteringDisplay(*pairs)
    if (light := found.get(kinds.CONTENT_LIGHT_LEVEL)) and len(light) >= 8:
        facts["light_level"] = struct.unpack("<2I", light[:8])
    return facts
