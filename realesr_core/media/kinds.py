"""What a file is, from its content: an image, a video, or neither. A folder run asks this of every file, so a `.ts`
recording, an AVIF photo or a PNG saved as `.jpg` is taken for what it is, whatever its name."""

from __future__ import annotations

import importlib.util
import os
from typing import Literal

from ..errors import ImageError
from .images import detect_format

# FFmpeg demuxers that open single pictures or text: those files are images (read by Pillow) or nothing to upscale.
NOT_VIDEO_DEMUXERS = ("image2", "tty")


def media_kind(path: str | os.PathLike) -> Literal["image", "video"] | None:
    """"image" for a file Pillow or our decoders read by its first bytes, "video" for one FFmpeg opens with a video
    stream (when PyAV, the `video` extra, is installed), None for anything else (text, archives, unreadable). A
    damaged file of a known kind is still that kind: reading it then gives the error that names what is wrong."""
    try:
        detect_format(path)
        return "image"
    except ImageError:
        pass
    except OSError:
        return None
    if importlib.util.find_spec("av") is None:
        return None
    import av

    with open(path, "rb") as handle:
        # by name first (some formats are recognised only with its hint), then, where FFmpeg took the name's word
        # for a picture (".jpg" wins its image demuxer), by the content alone
        for source in (str(path), _Unnamed(handle)):
            try:
                with av.open(source) as container:
                    demuxer = container.format.name
                    if demuxer not in NOT_VIDEO_DEMUXERS and not demuxer.endswith("_pipe"):
                        return "video" if container.streams.video else None
            except (av.error.FFmpegError, OSError, ValueError):
                return None
    return None


class _Unnamed:
    """A file as bytes only: FFmpeg gets no name to guess the format from."""

    def __init__(self, handle) -> None:
        handle.seek(0)
        self.read, self.seek, self.tell = handle.read, handle.seek, handle.tell
