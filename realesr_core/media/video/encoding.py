"""The frame pipeline of one segment: decoded in a thread of its own, upscaled a batch at a time, encoded and muxed in
another thread with each frame's own timestamp, so decoding and encoding overlap the upscaling. Memory holds a
few batches, never the clip."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from einops import rearrange

from ...errors import UpscaleCancelled
from ...upscaling import UpscaleOptions, upscale
from .probe import VideoError, av_module

# Encoders whose quality is a constant rate factor and whose speed is a preset: the highest crf each takes, and its
# presets (x264 and x265 by name, SVT-AV1 by number, slowest first).
CRF_ENCODERS = {"libx264": 51, "libx265": 51, "libsvtav1": 63}
X26X_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                "placebo")
SVT_AV1_PRESETS = tuple(str(n) for n in range(14))
PRESETS = {"libx264": X26X_PRESETS, "libx265": X26X_PRESETS, "libsvtav1": SVT_AV1_PRESETS}


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
    resume: bool = False


def check_encoding(video: VideoOptions) -> None:
    """Raises VideoError when this FFmpeg lacks the encoder or the crf or preset is one it refuses, so the mistake is
    reported before any frame is upscaled (FFmpeg itself says only "Invalid argument" once the first frame is in)."""
    av = av_module()
    try:
        av.codec.Codec(video.codec, "w")
    except (av.error.FFmpegError, ValueError) as exc:
        raise VideoError(f"this FFmpeg (PyAV {av.__version__}) has no {video.codec!r} encoder") from exc
    if video.codec.endswith("_nvenc") and not torch.cuda.is_available():
        raise VideoError(f"{video.codec} encodes on an NVIDIA GPU and none is available here")
    if video.codec not in CRF_ENCODERS:
        return
    if not 0 <= video.crf <= CRF_ENCODERS[video.codec]:
        raise VideoError(f"{video.codec} takes a crf of 0 to {CRF_ENCODERS[video.codec]}, got {video.crf}")
    if video.preset not in PRESETS[video.codec]:
        raise VideoError(f"{video.codec} has no preset {video.preset!r}; it takes {', '.join(PRESETS[video.codec])}")


@dataclass(frozen=True)
class Encoding:
    """How every segment's video is encoded: the same settings for all, so the segments join by stream copy."""

    time_base: Fraction
    rate: Fraction
    size: tuple[int, int]  # output width, height
    bits: int
    colour: dict[str, Any]  # colour properties and sample aspect ratio given to the encoder


def encode_segment(model: Any, source: Path, temporary: Path, start: int | None, end: int | None, encoding: Encoding,
                   options: UpscaleOptions | None, video: VideoOptions, progress: Callable[[int], None] | None,
                   cancel: Callable[[], bool] | None) -> tuple[int, int]:
    """The frames of [start, end) (presentation timestamps; None: the clip's own start / end) upscaled into a file of
    their own; returns (frames, repeated frames). `progress` is told the frames done so far in this segment."""
    av = av_module()
    with av.open(str(source)) as container, av.open(str(temporary), "w") as output:
        stream_in = container.streams.video[0]
        stream_in.thread_type = "AUTO"
        if start is not None:
            container.seek(start, stream=stream_in, backward=True, any_frame=False)
        stream_out = output.add_stream(video.codec, rate=encoding.rate)
        stream_out.width, stream_out.height = encoding.size
        stream_out.pix_fmt = "yuv420p10le" if encoding.bits == 10 else "yuv420p"
        # the encoder's own time base too: left at 1/rate it rounds a variable frame rate's timestamps
        stream_out.time_base = stream_out.codec_context.time_base = encoding.time_base
        if video.codec in CRF_ENCODERS:
            stream_out.options = {"crf": str(video.crf), "preset": video.preset}
        for name, value in encoding.colour.items():
            if value:
                setattr(stream_out.codec_context, name, value)
        rgb = "rgb48le" if encoding.bits == 10 else "rgb24"
        matrix = {"dst_colorspace": encoding.colour["colorspace"], "dst_color_range": encoding.colour["color_range"]}
        encoder = _Encoder(model, stream_out, output, rgb, {k: v for k, v in matrix.items() if v}, options, video,
                           progress, cancel)
        frames = _in_background(_decoded(container.decode(stream_in), start, end, rgb), 2 * video.frames_per_batch)
        try:
            for frame in frames:
                encoder.add(frame)
            encoder.finish()
        finally:
            frames.close()  # the decoding thread ends before its container closes
            encoder.close()
    return encoder.frames, encoder.duplicates


@dataclass(frozen=True)
class _Frame:
    pixels: np.ndarray  # [H, W, 3] uint8 (rgb24) or uint16 (rgb48le)
    pts: int
    time_base: Fraction


def _decoded(frames: Iterator[Any], start: int | None, end: int | None, rgb: str) -> Iterator[_Frame]:
    """The segment's frames as RGB pixels with their timestamps."""
    for frame in frames:
        if frame.pts is None or (start is not None and frame.pts < start):
            continue  # before the segment (decoded from the keyframe's group, or leading pictures of it)
        if end is not None and frame.pts >= end:
            return
        yield _Frame(frame.to_ndarray(format=rgb), frame.pts, frame.time_base)


_DONE = object()


@dataclass(frozen=True)
class _Failed:
    error: BaseException


def _in_background(items: Iterator[Any], depth: int) -> Iterator[Any]:
    """`items` produced in a thread of their own, at most `depth` ahead: decoding overlaps the upscaling."""
    produced: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        produced.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            produced.put(_DONE)
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, which raises it
            produced.put(_Failed(error))

    thread = threading.Thread(target=produce, name="realesr-decode", daemon=True)
    thread.start()
    try:
        while (item := produced.get()) is not _DONE:
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            with contextlib.suppress(queue.Empty):
                produced.get(timeout=0.1)
        thread.join()


class _Encoder:
    """Collects decoded frames, upscales them a batch at a time, and hands them to a thread that encodes and muxes
    them with their own timestamps (encoding overlaps the next batch's upscaling)."""

    def __init__(self, model: Any, stream: Any, output: Any, rgb: str, matrix: dict[str, Any],
                 options: UpscaleOptions | None, video: VideoOptions, progress: Callable[[int], None] | None,
                 cancel: Callable[[], bool] | None) -> None:
        self.model, self.stream, self.output, self.rgb, self.options = model, stream, output, rgb, options
        self.matrix = matrix  # the source's YUV matrix and range: the RGB result goes back through the same ones
        self.video, self.progress, self.cancel = video, progress, cancel
        self.pending: list[_Frame] = []
        self.frames = self.duplicates = 0
        self.previous: tuple[np.ndarray, np.ndarray] | None = None  # the last frame: source pixels, upscaled pixels
        self.queue: queue.Queue = queue.Queue(maxsize=2 * video.frames_per_batch)
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._encode, name="realesr-encode", daemon=True)
        self.thread.start()

    def add(self, frame: _Frame) -> None:
        self.pending.append(frame)
        if len(self.pending) >= self.video.frames_per_batch:
            self._flush()

    def finish(self) -> None:
        self._flush()
        self._put(_DONE)
        self.thread.join()
        self._raise_failure()

    def close(self) -> None:
        """Stops the encoding thread if the segment ended early (an error, a cancel)."""
        if self.thread.is_alive():
            self.failure = self.failure or UpscaleCancelled("stopped")
            while self.thread.is_alive():
                with contextlib.suppress(queue.Full):
                    self.queue.put(_DONE, timeout=0.1)
            self.thread.join()

    def _encode(self) -> None:
        import av

        try:
            while (item := self.queue.get()) is not _DONE:
                pixels, pts, time_base = item
                frame = av.VideoFrame.from_ndarray(pixels, format=self.rgb)
                if self.matrix:  # else FFmpeg's default (BT.601) would meet a stream tagged, say, BT.709
                    frame = frame.reformat(format=self.stream.codec_context.pix_fmt, **self.matrix)
                frame.pts, frame.time_base = pts, time_base
                for packet in self.stream.encode(frame):
                    self.output.mux(packet)
            if self.failure is None:
                for packet in self.stream.encode(None):
                    self.output.mux(packet)
        except BaseException as error:  # noqa: BLE001 - raised in the main thread
            self.failure = error

    def _put(self, item: Any) -> None:
        while self.thread.is_alive():
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        self._raise_failure()

    def _raise_failure(self) -> None:
        if self.failure is not None:
            raise self.failure

    def _repeats(self, pixels: list[np.ndarray], peak: int) -> list[bool]:
        """Which frames repeat the one before them (within skip_duplicates 8-bit levels on average)."""
        limit = self.video.skip_duplicates
        if limit is None:
            return [False] * len(pixels)
        before = [self.previous[0] if self.previous is not None else None, *pixels[:-1]]
        return [earlier is not None and float(np.abs(now.astype(np.float32) - earlier).mean()) * 255 / peak <= limit
                for earlier, now in zip(before, pixels, strict=True)]

    def _flush(self) -> None:
        if not self.pending:
            return
        peak, dtype = (65535, np.uint16) if self.rgb == "rgb48le" else (255, np.uint8)
        pixels = [frame.pixels for frame in self.pending]
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
            self._put((array, source.pts, source.time_base))
        self.frames += len(self.pending)
        self.pending.clear()
        if self.progress is not None:
            self.progress(self.frames)
