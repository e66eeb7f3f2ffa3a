"""Video files through the upscaler with PyAV (optional extra `video`): in-process FFmpeg, no executable, no shell.

Frames are decoded, upscaled in small batches and encoded as they come, so memory holds a batch, never the clip.
Every audio and subtitle stream is copied packet for packet (a muxer that cannot hold one says so in a warning);
timestamps are kept (variable frame rate stays in sync); colour range, matrix, primaries, transfer and sample aspect
ratio are carried; 10-bit sources give 10-bit output. The result is written beside its name and renamed.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import queue
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from einops import rearrange

from ..errors import RealESRError, UpscaleCancelled
from ..extras import import_extra
from ..files import WorkFolder, write_atomically
from ..upscaling import UpscaleOptions, upscale

SEGMENT_SECONDS = 10.0  # a segment starts at the first keyframe this long after the last segment's start
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".webm", ".avi", ".m4v")
COLOUR_PROPERTIES = ("color_range", "colorspace", "color_primaries", "color_trc")
# Encoders whose quality is a constant rate factor and whose speed is a preset: the highest crf each takes, and its
# presets (x264 and x265 by name, SVT-AV1 by number, slowest first).
CRF_ENCODERS = {"libx264": 51, "libx265": 51, "libsvtav1": 63}
X26X_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                "placebo")
SVT_AV1_PRESETS = tuple(str(n) for n in range(14))
PRESETS = {"libx264": X26X_PRESETS, "libx265": X26X_PRESETS, "libsvtav1": SVT_AV1_PRESETS}


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
    resume: bool = False


@dataclass(frozen=True)
class VideoResult:
    frames: int
    duplicates: int  # frames that reused the previous frame's result (skip_duplicates)
    size: tuple[int, int]  # output width, height
    copied_streams: int  # audio and subtitle streams carried over
    bit_depth: int


def _av() -> Any:
    return import_extra("av", "video", "video")


def check_encoding(video: VideoOptions) -> None:
    """Raises VideoError when this FFmpeg lacks the encoder or the crf or preset is one it refuses, so the mistake is
    reported before any frame is upscaled (FFmpeg itself says only "Invalid argument" once the first frame is in)."""
    av = _av()
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


def frame_size(source: str | os.PathLike) -> tuple[int, int]:
    """The width and height of the first video stream's frames, read from the header (nothing is decoded)."""
    av = _av()
    try:
        with av.open(str(source)) as container:
            if not container.streams.video:
                raise VideoError(f"{Path(source).name} has no video stream")
            stream = container.streams.video[0]
            return stream.width, stream.height
    except (av.error.FFmpegError, OSError) as exc:
        raise VideoError(f"cannot read video {source}: {exc}") from exc


def upscale_video(model: Any, source: str | os.PathLike, target: str | os.PathLike,
                  options: UpscaleOptions | None = None, video: VideoOptions | None = None, *,
                  progress: Callable[[int, int], None] | None = None,
                  cancel: Callable[[], bool] | None = None) -> VideoResult:
    """Upscales every frame of `source` into `target` (container from its extension: .mkv holds everything).

    The video is upscaled in segments that start at the source's keyframes (about SEGMENT_SECONDS each), each
    encoded into its own file in a work folder beside the target with a manifest; the segments are then joined by
    stream copy with the other streams muxed once. `video.resume` keeps the segments a crashed or cancelled run of
    the same job finished, so only the rest is upscaled.
    """
    video = video or VideoOptions()
    plan = plan_video(model, source, target, options, video)
    frames = 0
    for index in range(len(plan.facts.segments)):
        done = plan.work.finished(index)
        if done is None:
            done = write_segment(model, plan, index, options, video,
                                 progress=_offset(progress, frames, plan.facts.total), cancel=cancel)
            plan.work.finish(index, *done)
        frames += done[0]
    return join_segments(plan)


@dataclass(frozen=True)
class VideoPlan:
    """A video's segments and the work folder that holds the finished ones: what `write_segment` (anywhere, in any
    order) and `join_segments` (once, at the end) need."""

    source: Path
    target: Path
    facts: _Facts
    work: WorkFolder


def plan_video(model: Any, source: str | os.PathLike, target: str | os.PathLike, options: UpscaleOptions | None,
               video: VideoOptions) -> VideoPlan:
    """Probes `source` (keyframes, size, bit depth) and opens the work folder beside `target`; with `video.resume`
    the segments a run of the same job finished are kept. Encoder settings FFmpeg would refuse are an error here,
    before any frame is upscaled."""
    av = _av()
    check_encoding(video)
    source, target = Path(source), Path(target)
    try:
        facts = _probe(av, source, model, options, video)
    except av.error.FFmpegError as exc:
        raise VideoError(f"{source.name}: {exc}") from exc
    # segments are MP4 files: MP4 keeps every decode time (MKV gives some back unknown)
    return VideoPlan(source, target, facts, WorkFolder(target, facts.job_key(source, model, video), video.resume, ".mp4"))


def write_segment(model: Any, plan: VideoPlan, index: int, options: UpscaleOptions | None, video: VideoOptions, *,
                  progress: Callable[[int, int], None] | None = None,
                  cancel: Callable[[], bool] | None = None) -> tuple[int, int]:
    """Upscales segment `index` into its file in the work folder (written atomically); returns (frames, repeated
    frames). The caller records it with `plan.work.finish`, so one process alone writes the manifest."""
    av = _av()
    start, end = plan.facts.segments[index]
    counts: list[int] = []

    def write(temporary: Path) -> None:
        counts.extend(_encode_segment(av, model, plan.source, temporary, start, end, plan.facts, options, video,
                                      progress, cancel))

    try:
        write_atomically(plan.work.part(index), write)
    except av.error.FFmpegError as exc:
        raise VideoError(f"{plan.source.name}: {exc}") from exc
    return counts[0], counts[1]


def join_segments(plan: VideoPlan) -> VideoResult:
    """Joins the finished segments by stream copy into the target with the source's other streams, and removes the
    work folder."""
    av = _av()
    frames, duplicates = plan.work.totals(2)
    if not frames:
        plan.work.remove()
        raise VideoError(f"{plan.source.name} has no frames")
    copied: list[int] = []
    try:
        write_atomically(plan.target, lambda temporary: copied.append(_join(av, plan.source, plan.work.parts(),
                                                                             temporary)))
    except av.error.FFmpegError as exc:
        raise VideoError(f"{plan.source.name}: {exc}") from exc
    plan.work.remove()
    return VideoResult(frames, duplicates, plan.facts.size, copied[0], plan.facts.bits)


def _offset(progress: Callable[[int, int], None] | None, base: int, total: int) -> Callable[[int, int], None] | None:
    if progress is None:
        return None
    return lambda done, _segment_total: progress(base + done, max(total, base + done))


@dataclass(frozen=True)
class _Facts:
    """What every segment needs to know about the source and the output."""

    time_base: Fraction
    rate: Fraction
    size: tuple[int, int]  # output width, height
    bits: int
    total: int  # frames, estimated where the container does not say
    segments: list[tuple[int | None, int | None]]  # [start pts, end pts) per segment; None: the clip's own start / end
    colour: dict[str, Any]

    def job_key(self, source: Path, model: Any, video: VideoOptions) -> dict[str, Any]:
        from ..models.descriptor import describe

        described = describe(model)
        stat = source.stat()
        return {"source": str(source.resolve()), "bytes": stat.st_size, "modified": stat.st_mtime_ns,
                "model": f"{described.name or described.source}:{described.architecture}", "size": list(self.size),
                "codec": video.codec, "crf": video.crf, "preset": video.preset, "bits": self.bits,
                "skip_duplicates": video.skip_duplicates, "segments": [list(s) for s in self.segments]}


def _probe(av: Any, source: Path, model: Any, options: UpscaleOptions | None, video: VideoOptions) -> _Facts:
    try:
        container = av.open(str(source))
    except (av.error.FFmpegError, OSError) as exc:
        raise VideoError(f"cannot read video {source}: {exc}") from exc
    with container:
        if not container.streams.video:
            raise VideoError(f"{source.name} has no video stream")
        stream = container.streams.video[0]
        context = stream.codec_context
        source_bits = max(component.bits for component in context.format.components) if context.format else 8
        scale = _scale(model, options)
        rate = stream.average_rate or stream.guessed_rate or Fraction(25)
        total = stream.frames or round(float(stream.duration * stream.time_base * rate) if stream.duration else 0)
        colour = {name: getattr(context, name, None) for name in (*COLOUR_PROPERTIES, "sample_aspect_ratio")}
        keyframes = [packet.pts for packet in container.demux(stream) if packet.is_keyframe and packet.pts is not None]
        time_base = stream.time_base
        size = (context.width * scale, context.height * scale)
    starts: list[int] = []
    for pts in keyframes:
        if not starts or (pts - starts[-1]) * time_base >= SEGMENT_SECONDS:
            starts.append(pts)
    bounds: list[int | None] = [None, *starts[1:], None]
    segments = list(zip(bounds[:-1], bounds[1:], strict=True))
    return _Facts(time_base, rate, size, video.bit_depth or (10 if source_bits > 8 else 8), total, segments, colour)


def _encode_segment(av: Any, model: Any, source: Path, temporary: Path, start: int | None, end: int | None,
                    facts: _Facts, options: UpscaleOptions | None, video: VideoOptions,
                    progress: Callable[[int, int], None] | None, cancel: Callable[[], bool] | None) -> tuple[int, int]:
    """The frames of [start, end) upscaled into a file of their own; returns (frames, repeated frames)."""
    with av.open(str(source)) as container, av.open(str(temporary), "w") as output:
        stream_in = container.streams.video[0]
        stream_in.thread_type = "AUTO"
        if start is not None:
            container.seek(start, stream=stream_in, backward=True, any_frame=False)
        stream_out = output.add_stream(video.codec, rate=facts.rate)
        stream_out.width, stream_out.height = facts.size
        stream_out.pix_fmt = "yuv420p10le" if facts.bits == 10 else "yuv420p"
        # the encoder's own time base too: left at 1/rate it rounds a variable frame rate's timestamps
        stream_out.time_base = stream_out.codec_context.time_base = facts.time_base
        if video.codec in CRF_ENCODERS:
            stream_out.options = {"crf": str(video.crf), "preset": video.preset}
        for name, value in facts.colour.items():
            if value:
                setattr(stream_out.codec_context, name, value)
        rgb = "rgb48le" if facts.bits == 10 else "rgb24"
        matrix = {"dst_colorspace": facts.colour["colorspace"], "dst_color_range": facts.colour["color_range"]}
        encoder = _Encoder(model, stream_out, output, rgb, {k: v for k, v in matrix.items() if v}, options, video,
                           facts.total, progress, cancel)
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


def _join(av: Any, source: Path, parts: list[Path], temporary: Path) -> int:
    """The segments' video by stream copy, in order, with the source's audio and subtitle streams muxed once,
    interleaved by time; returns how many streams were copied from the source."""
    # bitexact: no random segment UID or muxer version in the file, so the same job gives the same bytes
    with (av.open(str(source)) as original, av.open(str(parts[0])) as first,
          av.open(str(temporary), "w", options={"fflags": "+bitexact"}) as output):
        video_out = output.add_stream_from_template(first.streams.video[0])
        copied = _copy_streams(original, output, original.streams.video[0], source)
        video_packets = ((float(p.dts * p.time_base), 0, video_out, p) for p in _part_packets(av, parts))
        other_packets = ((float(p.dts * p.time_base), 1, copied[p.stream], p)
                         for p in original.demux(*copied) if p.dts is not None) if copied else iter(())
        for _time, _order, stream, packet in heapq.merge(video_packets, other_packets, key=lambda item: item[:2]):
            packet.stream = stream
            output.mux(packet)
    return len(copied)


def _part_packets(av: Any, parts: list[Path]) -> Iterator[Any]:
    for part in parts:
        with av.open(str(part)) as container:
            yield from (packet for packet in container.demux(video=0) if packet.dts is not None)


def _scale(model: Any, options: UpscaleOptions | None) -> int:
    from ..models.descriptor import describe

    if options is not None and (options.outscale or options.width or options.height):
        raise VideoError("videos are upscaled at the model's scale (resize them afterwards)")
    return describe(model).scale


def _copy_streams(container: Any, output: Any, video_stream: Any, source: Path) -> dict[Any, Any]:
    """Output streams for every audio, subtitle and attachment (fonts) stream of the source, by source stream."""
    copied = {}
    for stream in container.streams:
        if stream is video_stream or stream.type not in ("audio", "subtitle", "attachment"):
            continue
        try:
            copied[stream] = output.add_stream_from_template(stream)
        except Exception as exc:  # noqa: BLE001 - FFmpeg says which muxers refuse which codecs
            warnings.warn(f"{source.name}: {stream.type} stream {stream.index} ({stream.codec_context.name}) cannot go "
                          f"into a {Path(output.name).suffix} file and is left out ({exc}); .mkv holds every stream",
                          stacklevel=4)
    return copied


class _Encoder:
    """Collects decoded frames, upscales them a batch at a time, and hands them to a thread that encodes and muxes
    them with their own timestamps (encoding overlaps the next batch's upscaling)."""

    def __init__(self, model: Any, stream: Any, output: Any, rgb: str, matrix: dict[str, Any],
                 options: UpscaleOptions | None, video: VideoOptions, total: int,
                 progress: Callable[[int, int], None] | None, cancel: Callable[[], bool] | None) -> None:
        self.model, self.stream, self.output, self.rgb, self.options = model, stream, output, rgb, options
        self.matrix = matrix  # the source's YUV matrix and range: the RGB result goes back through the same ones
        self.video, self.total, self.progress, self.cancel = video, total, progress, cancel
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
            self.progress(self.frames, max(self.total, self.frames))
