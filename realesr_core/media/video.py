"""Video files through the upscaler with PyAV (optional extra `video`): in-process FFmpeg, no executable, no shell.

Frames are decoded, upscaled in small batches and encoded as they come, so memory holds a batch, never the clip.
Every audio and subtitle stream is copied packet for packet (a muxer that cannot hold one says so in a warning);
timestamps are kept (variable frame rate stays in sync); colour range, matrix, primaries, transfer and sample aspect
ratio are carried; 10-bit sources give 10-bit output. The result is written beside its name and renamed.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from einops import rearrange

from ..errors import RealESRError
from ..files import write_atomically
from ..upscaling import UpscaleOptions, upscale

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".webm", ".avi", ".m4v")
COLOUR_PROPERTIES = ("color_range", "colorspace", "color_primaries", "color_trc")
# Encoders whose quality is a constant rate factor and whose speed is a named preset.
CRF_ENCODERS = {"libx264", "libx265", "libsvtav1"}


class VideoError(RealESRError, ValueError):
    """A video file is unusable (no video stream, no frames, damaged) or cannot be written as asked."""


@dataclass(frozen=True)
class VideoOptions:
    """How the result is encoded. bit_depth: 8 or 10 (None: as the source). frames_per_batch: frames upscaled
    together (one engine call). skip_duplicates: a frame whose mean difference from the previous one is at most this
    many 8-bit levels reuses its upscaled result (anime holds drawings for several frames); None upscales all."""

    codec: str = "libx264"
    crf: int = 18
    preset: str = "medium"
    bit_depth: int | None = None
    frames_per_batch: int = 4
    skip_duplicates: float | None = None


@dataclass(frozen=True)
class VideoResult:
    frames: int
    duplicates: int  # frames that reused the previous frame's result (skip_duplicates)
    size: tuple[int, int]  # output width, height
    copied_streams: int  # audio and subtitle streams carried over
    bit_depth: int


def _av() -> Any:
    try:
        import av
    except ImportError as exc:
        raise RealESRError("video needs PyAV: pip install 'realesr[video]' (or pip install av)") from exc
    return av


def upscale_video(model: Any, source: str | os.PathLike, target: str | os.PathLike,
                  options: UpscaleOptions | None = None, video: VideoOptions | None = None, *,
                  progress: Callable[[int, int], None] | None = None,
                  cancel: Callable[[], bool] | None = None) -> VideoResult:
    """Upscales every frame of `source` into `target` (container from its extension: .mkv holds everything)."""
    av = _av()
    video = video or VideoOptions()
    source = Path(source)
    try:
        container = av.open(str(source))
    except (av.error.FFmpegError, OSError) as exc:
        raise VideoError(f"cannot read video {source}: {exc}") from exc
    results: list[VideoResult] = []

    def write(temporary: Path) -> None:
        with container:
            results.append(_transcode(av, model, container, source, temporary, options, video, progress, cancel))

    try:
        write_atomically(target, write)
    except av.error.FFmpegError as exc:
        raise VideoError(f"{source.name}: {exc}") from exc
    return results[0]


def _transcode(av: Any, model: Any, container: Any, source: Path, temporary: Path, options: UpscaleOptions | None,
               video: VideoOptions, progress: Callable[[int, int], None] | None,
               cancel: Callable[[], bool] | None) -> VideoResult:
    if not container.streams.video:
        raise VideoError(f"{source.name} has no video stream")
    stream_in = container.streams.video[0]
    stream_in.thread_type = "AUTO"
    context_in = stream_in.codec_context
    source_bits = max(component.bits for component in context_in.format.components) if context_in.format else 8
    bits = video.bit_depth or (10 if source_bits > 8 else 8)
    scale = _scale(model, options)
    width, height = context_in.width * scale, context_in.height * scale
    rate = stream_in.average_rate or stream_in.guessed_rate or Fraction(25)
    total = stream_in.frames or round(float(stream_in.duration * stream_in.time_base * rate)
                                      if stream_in.duration else 0)
    with av.open(str(temporary), "w") as output:
        stream_out = output.add_stream(video.codec, rate=rate)
        stream_out.width, stream_out.height = width, height
        stream_out.pix_fmt = "yuv420p10le" if bits == 10 else "yuv420p"
        stream_out.time_base = stream_in.time_base
        if video.codec in CRF_ENCODERS:
            stream_out.options = {"crf": str(video.crf), "preset": video.preset}
        for name in (*COLOUR_PROPERTIES, "sample_aspect_ratio"):
            value = getattr(context_in, name, None)
            if value:
                setattr(stream_out.codec_context, name, value)
        copied = _copy_streams(container, output, stream_in, source)
        encoder = _Encoder(model, stream_out, bits, options, video, total, progress, cancel)
        for packet in container.demux():
            if packet.stream is stream_in:
                for frame in packet.decode():
                    encoder.add(frame, output)
            elif packet.stream in copied and packet.dts is not None:
                packet.stream = copied[packet.stream]
                output.mux(packet)
        encoder.finish(output)
    if not encoder.frames:
        raise VideoError(f"{source.name} has no frames")
    return VideoResult(encoder.frames, encoder.duplicates, (width, height), len(copied), bits)


def _scale(model: Any, options: UpscaleOptions | None) -> int:
    from ..models.descriptor import describe

    if options is not None and (options.outscale or options.width or options.height):
        raise VideoError("videos are upscaled at the model's scale (resize them afterwards)")
    return describe(model).scale


def _copy_streams(container: Any, output: Any, video_stream: Any, source: Path) -> dict[Any, Any]:
    """Output streams for every audio and subtitle stream of the source, by source stream."""
    copied = {}
    for stream in container.streams:
        if stream is video_stream or stream.type not in ("audio", "subtitle"):
            continue
        try:
            copied[stream] = output.add_stream_from_template(stream)
        except Exception as exc:  # noqa: BLE001 - FFmpeg says which muxers refuse which codecs
            warnings.warn(f"{source.name}: {stream.type} stream {stream.index} ({stream.codec_context.name}) cannot go "
                          f"into a {Path(output.name).suffix} file and is left out ({exc}); .mkv holds every stream",
                          stacklevel=4)
    return copied


class _Encoder:
    """Collects decoded frames, upscales them a batch at a time and encodes them with their own timestamps."""

    def __init__(self, model: Any, stream: Any, bits: int, options: UpscaleOptions | None, video: VideoOptions,
                 total: int, progress: Callable[[int, int], None] | None, cancel: Callable[[], bool] | None) -> None:
        self.model, self.stream, self.bits, self.options, self.video = model, stream, bits, options, video
        self.total, self.progress, self.cancel = total, progress, cancel
        self.pending: list[Any] = []
        self.frames = self.duplicates = 0
        self.previous: tuple[np.ndarray, np.ndarray] | None = None  # the last frame: source pixels, upscaled pixels

    def add(self, frame: Any, output: Any) -> None:
        self.pending.append(frame)
        if len(self.pending) >= self.video.frames_per_batch:
            self._flush(output)

    def _repeats(self, pixels: list[np.ndarray], peak: int) -> list[bool]:
        """Which frames repeat the one before them (within skip_duplicates 8-bit levels on average)."""
        limit = self.video.skip_duplicates
        if limit is None:
            return [False] * len(pixels)
        before = [self.previous[0] if self.previous is not None else None, *pixels[:-1]]
        return [earlier is not None and float(np.abs(now.astype(np.float32) - earlier).mean()) * 255 / peak <= limit
                for earlier, now in zip(before, pixels, strict=True)]

    def finish(self, output: Any) -> None:
        self._flush(output)
        for packet in self.stream.encode(None):
            output.mux(packet)

    def _flush(self, output: Any) -> None:
        if not self.pending:
            return
        import av

        rgb = "rgb48le" if self.bits == 10 else "rgb24"
        peak, dtype = (65535, np.uint16) if self.bits == 10 else (255, np.uint8)
        pixels = [frame.to_ndarray(format=rgb) for frame in self.pending]
        repeats = self._repeats(pixels, peak)
        fresh = [array for array, repeat in zip(pixels, repeats, strict=True) if not repeat]
        upscaled: list[np.ndarray] = []
        if fresh:
            images = rearrange(torch.from_numpy(np.stack(fresh).astype(np.float32) / peak), "n h w c -> n c h w")
            result = upscale(self.model, images, self.options, cancel=self.cancel).image
            upscaled = list(np.round(rearrange(result, "n c h w -> n h w c").numpy() * peak).astype(dtype))
        arrays, made = [], iter(upscaled)
        for repeat in repeats:
            arrays.append(arrays[-1] if repeat and arrays else self.previous[1] if repeat else next(made))
        self.previous = (pixels[-1], arrays[-1])
        self.duplicates += sum(repeats)
        for source, array in zip(self.pending, arrays, strict=True):
            frame = av.VideoFrame.from_ndarray(array, format=rgb)
            frame.pts, frame.time_base = source.pts, source.time_base
            for packet in self.stream.encode(frame):
                output.mux(packet)
        self.frames += len(self.pending)
        self.pending.clear()
        if self.progress is not None:
            self.progress(self.frames, max(self.total, self.frames))
