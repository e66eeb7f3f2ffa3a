"""What a file is, from its content: an image Pillow (or our own readers) opens, a video PyAV opens, or neither and
why. The name's suffix only decides whether an unrecognised file is a damaged input (a `.jpg` that is not a JPEG: a
failure to report) or something else in the folder (a `.txt`: skipped, and listed).
"""

from __future__ import annotations

import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from ..errors import RealESRError
from .images import READABLE_SUFFIXES, detect_format
from .video.probe import VIDEO_SUFFIXES as VIDEO_FILE_SUFFIXES

IMAGE = "image"
VIDEO = "video"
NOT_MEDIA = "not an image or video"

# Suffixes people give images and videos: a file with one of them that is neither is damaged, not unrelated. Images:
# what the installed Pillow reads, and formats it may not (HEIC, JPEG XL, EXR...).
IMAGE_SUFFIXES = frozenset(READABLE_SUFFIXES) | {".heic", ".heif", ".jxl", ".exr", ".dpx", ".hdr", ".avif", ".qoi"}
VIDEO_SUFFIXES = frozenset(VIDEO_FILE_SUFFIXES)
MEDIA_SUFFIXES = IMAGE_SUFFIXES | VIDEO_SUFFIXES
# Pillow formats it names but cannot decode (MPEG: video headers only), or that hold no picture to upscale.
_PILLOW_NOT_IMAGES = frozenset({"MPEG", "PDF", "EPS", "BUFR", "GRIB", "HDF5", "WMF", "IPTC"})
# FFmpeg demuxers that claim a file by its name alone: image2 (one still image per file: any .png, .exr, .dpx...) and
# those that render text as pictures (ANSI art: tty, and bintext's bin / xbin / adf / idf, which take any .bin file).
# What they open is not known to be a picture, let alone a video. The *_pipe demuxers know still images by content.
_NAME_DEMUXERS = ("image2", "tty", "bin", "xbin", "adf", "idf")


@dataclass(frozen=True)
class Identified:
    """kind: IMAGE, VIDEO or None. format: what it is (Pillow's format; the container and video codec; for None, the
    details). why: for None, what it is instead, in a few words that group alike files ("audio only")."""

    kind: str | None
    format: str = ""
    why: str = ""

    def __bool__(self) -> bool:
        return self.kind is not None


def identify(path: str | os.PathLike) -> Identified:
    """What the file at `path` holds, from its first bytes and what Pillow and PyAV make of them. Never raises for
    the file's content; an unreadable file (permissions, a folder gone) is an Identified(None) saying so."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            return Identified(None, why="empty")
    except OSError as exc:
        return Identified(None, str(exc.strerror or exc), "cannot be read")
    try:
        return Identified(IMAGE, detect_format(path))
    except RealESRError:
        pass
    except OSError as exc:
        return Identified(None, str(exc.strerror or exc), "cannot be read")
    pillow = _pillow_format(path)
    if pillow:
        return Identified(IMAGE, pillow.lower())
    video = _video(path)
    if video is not None:
        return video
    return Identified(None, why=NOT_MEDIA)


def _pillow_format(path: Path) -> str | None:
    """The format Pillow opens `path` as (only the header is read), if it holds a picture Pillow can decode."""
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # the size is checked (with its own message) when the image is read
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as img:
                return None if img.format in _PILLOW_NOT_IMAGES else img.format
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, TypeError, IndexError, struct.error):
        return None
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def _video(path: Path) -> Identified | None:
    """A video PyAV opens (its container and first video codec), an Identified(None) for media that is not a video
    (audio only, a still image FFmpeg reads), or None where PyAV does not recognise the file or is not installed."""
    try:
        import av
    except ImportError:
        return None
    try:
        # everything is read while the container is open: PyAV's streams must not outlive it
        with av.open(str(path), metadata_errors="ignore") as container:
            demuxer = container.format.name
            videos = [s.codec_context.name for s in container.streams.video if not _attached_picture(av, s)]
            described = [f"{s.type} {s.codec_context.name}" for s in container.streams]
            audio = bool(container.streams.audio)
    except (av.error.FFmpegError, OSError, ValueError, UnicodeDecodeError):
        return None
    if demuxer in _NAME_DEMUXERS:
        return None
    if demuxer.endswith("_pipe"):
        return Identified(None, demuxer.removesuffix("_pipe"), "an image format this tool does not read")
    if videos:
        return Identified(VIDEO, f"{demuxer.split(',')[0]} {videos[0]}")
    if audio:
        return Identified(None, f"{demuxer}: {', '.join(described)}", "audio only")
    return Identified(None, f"{demuxer}: {', '.join(described) or 'no streams'}", "no video stream")


def _attached_picture(av: Any, stream: Any) -> bool:
    """A cover image in an audio file (an MP3's or M4A's artwork): a video stream of one picture, not a video."""
    return bool(stream.disposition & av.stream.Disposition.attached_pic)


def media_kind(path: str | os.PathLike) -> str | None:
    """"image", "video" or None (anything else, or unreadable): `identify` without the details."""
    return identify(path).kind
