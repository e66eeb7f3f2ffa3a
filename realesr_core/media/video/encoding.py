"""The frame pipeline of one segment: decoded in a thread of its own, upscaled a batch at a time, encoded and muxed in
another thread with each frame's own timestamp, so decoding and encoding overlap the upscaling. Memory holds a
few batches, never the clip."""

from __future__ import annotations

import contextlib
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

from ...errors import UpscaleCancelled
from ...upscaling import UpscaleOptions, upscale
from .probe import SourceFacts, VideoError, av_module

# Encoders whose quality is a constant rate factor and whose speed is a preset: the highest crf each takes, and its
# presets (x264 and x265 by name, SVT-AV1 by number, slowest first).
CRF_ENCODERS = {"libx264": 51, "libx265": 51, "libsvtav1": 63}
X26X_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                "placebo")
SVT_AV1_PRESETS = tuple(str(n) for n in range(14))
ENCODER_PRESETS = {"libx264": X26X_PRESETS, "libx265": X26X_PRESETS, "libsvtav1": SVT_AV1_PRESETS}
# The encoder of each source family where it is not H.264 (see default_encoder).
DEFAULT_ENCODERS = {"hevc": "libx265", "av1": "libsvtav1", "vp9": "libsvtav1", "vp8": "libsvtav1"}
# Pixel formats by (chroma subsampling, bits), planar first: the software encoders take those, NVENC the others.
PIXEL_FORMATS = {("420", 8): ("yuv420p", "nv12"), ("420", 10): ("yuv420p10le", "p010le"),
                 ("422", 8): ("yuv422p", "nv16"), ("422", 10): ("yuv422p10le", "nv20le", "p210le"),
                 ("444", 8): ("yuv444p",), ("444", 10): ("yuv444p10le", "yuv444p16le")}
# Encoders that write HDR10 static metadata from their own parameters: (option, mastering display key, light level
# key, whether they take whole units of 1/50000 and 1/10000 rather than decimals).
HDR_PARAMETERS = {"libx265": ("x265-params", "master-display", "max-cll", True),
                  "libx264": ("x264-params", "mastering-display", "cll", True),
                  "libsvtav1": ("svtav1-params", "mastering-display", "content-light", False)}


@dataclass(frozen=True)
class VideoOptions:
    """How the result is encoded. codec: an FFmpeg encoder (None: from the source's family, DEFAULT_ENCODERS).
    crf: constant rate factor (lower is better). preset: the encoder's speed preset (None: its own default).
    bit_depth: 8 or 10 (None: as the source). frames_per_batch: frames upscaled together (one engine call).
    skip_duplicates: a frame whose mean difference from the previous one is at most this many 8-bit levels reuses
    its upscaled result (anime holds drawings for several frames); None upscales all. resume: keep the segments an
    interrupted run of the same job finished."""

    codec: str | None = None
    crf: int = 18
    preset: str | None = None
    bit_depth: int | None = None
    frames_per_batch: int = 4
    skip_duplicates: float | None = None
    resume: bool = False


def default_encoder(source_codec: str) -> str:
    """The encoder of the source's family: HEVC stays HEVC (an HDR master is usually HEVC), AV1 and VP8/VP9 become
    AV1 (an open codec WebM holds; this FFmpeg's VP9 encoder has no 10-bit), everything else H.264."""
    return DEFAULT_ENCODERS.get(source_codec, "libx264")


def check_encoding(video: VideoOptions, codec: str | None = None) -> None:
    """Raises VideoError when this FFmpeg lacks the encoder or the crf or preset is one it refuses, so the mistake is
    reported before any frame is upscaled (FFmpeg itself says only "Invalid argument" once the first frame is in).
    `codec` is the encoder chosen for a source; without it, an unset `video.codec` is checked once the source is
    known."""
    codec = codec or video.codec
    if codec is None:
        return
    av = av_module()
    try:
        av.codec.Codec(codec, "w")
    except (av.error.FFmpegError, ValueError) as exc:
        raise VideoError(f"this FFmpeg (PyAV {av.__version__}) has no {codec!r} encoder") from exc
    if codec.endswith("_nvenc") and not torch.cuda.is_available():
        raise VideoError(f"{codec} encodes on an NVIDIA GPU and none is available here")
    if codec not in CRF_ENCODERS:
        return
    if not 0 <= video.crf <= CRF_ENCODERS[codec]:
        raise VideoError(f"{codec} takes a crf of 0 to {CRF_ENCODERS[codec]}, got {video.crf}")
    if video.preset is not None and video.preset not in ENCODER_PRESETS[codec]:
        raise VideoError(f"{codec} has no preset {video.preset!r}; it takes {', '.join(ENCODER_PRESETS[codec])}")


@dataclass(frozen=True)
class Encoding:
    """How every segment's video is encoded: the same settings for all, so the segments join by stream copy."""

    codec: str
    pixel_format: str
    options: dict[str, str]  # the encoder's own options (crf, preset, HDR metadata)
    time_base: Fraction
    rate: Fraction
    size: tuple[int, int]  # output width, height
    bits: int
    colour: dict[str, Any]  # colour properties and sample aspect ratio given to the encoder
    display_matrix: tuple[int, ...] | None  # carried as it is: the frames are upscaled as stored


def plan_encoding(facts: SourceFacts, scale: int, video: VideoOptions, name: str) -> Encoding:
    """The encoder settings for a source: its family's encoder unless one is asked for, its chroma subsampling and
    bit depth (or the nearest the encoder has, with a warning), its HDR10 metadata, colour and rotation."""
    codec = video.codec or default_encoder(facts.codec)
    check_encoding(video, codec)
    bits = video.bit_depth or (10 if facts.bits > 8 else 8)
    options = {"crf": str(video.crf)} if codec in CRF_ENCODERS else {}
    if video.preset is not None and codec in CRF_ENCODERS:
        options["preset"] = video.preset
    options.update(_encoder_parameters(codec, facts, name))
    width, height = facts.size
    return Encoding(codec, _pixel_format(codec, facts.chroma, bits, name), options, facts.time_base, facts.rate,
                    (width * scale, height * scale), bits, facts.colour, facts.display_matrix)


def _pixel_format(codec: str, chroma: str, bits: int, name: str) -> str:
    """The encoder's pixel format with the source's chroma subsampling at `bits`; 4:2:0 (with a warning) where the
    encoder has no such format."""
    offered = {entry.name for entry in av_module().codec.Codec(codec, "w").video_formats or ()}
    for subsampling in (chroma, "420"):
        for candidate in PIXEL_FORMATS[subsampling, bits]:
            if not offered or candidate in offered:
                if subsampling != chroma:
                    warnings.warn(f"{name}: {codec} cannot encode {bits}-bit 4:{chroma[1]}:{chroma[2]} chroma; the "
                                  f"output is 4:2:0 (libx264 and libx265 keep it)", stacklevel=4)
                return candidate
    raise VideoError(f"{codec} encodes none of {', '.join(PIXEL_FORMATS['420', bits])}; ask for another --codec")


def _encoder_parameters(codec: str, facts: SourceFacts, name: str) -> dict[str, str]:
    """The encoder's own parameters: the HDR10 static metadata (mastering display, light level), which FFmpeg's
    encoders do not take from the frames, and x265 told to log errors only (its banner is not ours to print)."""
    parameters = ["log-level=error"] if codec == "libx265" else []
    hdr = facts.mastering is not None or facts.light_level is not None
    if hdr and codec not in HDR_PARAMETERS:
        warnings.warn(f"{name}: {codec} is not given the source's HDR10 mastering display and light level "
                      f"({', '.join(HDR_PARAMETERS)} are)", stacklevel=4)
    if hdr and codec in HDR_PARAMETERS:
        display_key, light_key, whole_units = HDR_PARAMETERS[codec][1:]
        if (display := facts.mastering) is not None:
            chromaticity, luminance = (50000, 10000) if whole_units else (None, None)
            xy = {colour: ",".join(_number(value, chromaticity) for value in getattr(display, colour))
                  for colour in ("red", "green", "blue", "white")}
            low, high = (_number(value, luminance) for value in display.luminance)
            parameters.append(f"{display_key}=G({xy['green']})B({xy['blue']})R({xy['red']})WP({xy['white']})"
                              f"L({high},{low})")
        if facts.light_level is not None:
            parameters.append(f"{light_key}={facts.light_level[0]},{facts.light_level[1]}")
    return {HDR_PARAMETERS[codec][0]: ":".join(parameters)} if parameters else {}


def _number(value: Fraction, units: int | None) -> str:
    """A value in the encoder's units: whole units of 1/`units` (x264, x265), or a decimal (SVT-AV1)."""
    return str(round(value * units)) if units else f"{float(value):.6g}"


def encode_segment(model: Any, source: Path, temporary: Path, start: int | None, end: int | None, encoding: Encoding,
                   options: UpscaleOptions | None, video: VideoOptions, progress: Callable[[int], None] | None,
                   cancel: Callable[[], bool] | None) -> tuple[int, int, int]:
    """The frames of [start, end) (presentation timestamps; None: the clip's own start / end) upscaled into a file of
    their own; returns (frames, repeated frames, packets the decoder rejected). Damaged packets are skipped as
    FFmpeg skips them, so the frames that decode still come out. `progress` is told the frames done so far."""
    av = av_module()
    with av.open(str(source)) as container, av.open(str(temporary), "w") as output:
        stream_in = container.streams.video[0]
        # slice threads only: with frame threads a damaged packet also loses the pictures other threads hold (a cut-off
        # clip gave 10 of its 12 whole frames); decoding is a small share of the time next to the upscaling
        stream_in.thread_type = "SLICE"
        if start is not None:
            container.seek(start, stream=stream_in, backward=True, any_frame=False)
        stream_out = output.add_stream(encoding.codec, rate=encoding.rate)
        stream_out.width, stream_out.height = encoding.size
        stream_out.pix_fmt = encoding.pixel_format
        # the encoder's own time base too: left at 1/rate it rounds a variable frame rate's timestamps
        stream_out.time_base = stream_out.codec_context.time_base = encoding.time_base
        stream_out.options = dict(encoding.options)
        for name, value in encoding.colour.items():
            if value:
                setattr(stream_out.codec_context, name, value)
        if encoding.display_matrix is not None:
            stream_out.set_display_matrix(encoding.display_matrix)
        rgb = "rgb48le" if encoding.bits == 10 else "rgb24"
        matrix = {"dst_colorspace": encoding.colour["colorspace"], "dst_color_range": encoding.colour["color_range"]}
        options = (options or UpscaleOptions()).for_bit_depth(encoding.bits)
        damage = _Damage()
        decoded = _decoded(_tolerant_frames(av, container, stream_in, damage), start, end, rgb)
        frames = _in_background(decoded, 2 * video.frames_per_batch)
        encoder: _Encoder | None = None
        try:  # the threads start inside: Ctrl+C may land anywhere, and both must end before the files close
            encoder = _Encoder(model, stream_out, output, rgb, {k: v for k, v in matrix.items() if v}, options,
                               video, progress, cancel)
            for frame in frames:
                encoder.add(frame)
            encoder.finish()
        finally:
            frames.close()  # the decoding thread ends before its container closes
            if encoder is not None:
                encoder.close()
    return encoder.frames, encoder.duplicates, damage.rejected


@dataclass
class _Damage:
    rejected: int = 0  # packets the decoder refused, or reads the demuxer gave up on


def _tolerant_frames(av: Any, container: Any, stream: Any, damage: _Damage) -> Iterator[Any]:
    """The stream's pictures as FFmpeg's own command line decodes them: a packet the decoder refuses is counted and
    skipped, and a demuxer that gives up ends the stream there (what follows cannot be read)."""
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.error.FFmpegError as error:
            if isinstance(error, MemoryError):
                raise
            damage.rejected += 1
            return
        try:
            pictures = stream.decode(packet)
        except av.error.FFmpegError as error:
            if isinstance(error, MemoryError):
                raise
            damage.rejected += 1
            continue
        yield from pictures


@dataclass(frozen=True)
class _Frame:
    pixels: np.ndarray  # [H, W, 3] uint8 (rgb24) or uint16 (rgb48le)
    pts: int
    time_base: Fraction


def _decoded(frames: Iterator[Any], start: int | None, end: int | None, rgb: str) -> Iterator[_Frame]:
    """The segment's frames as RGB pixels with their timestamps. A picture of a damaged stream without a timestamp,
    or with one not after the last (the encoder takes none), is dropped as FFmpeg's command line drops it."""
    last = None
    for frame in frames:
        if frame.pts is None or (start is not None and frame.pts < start) or (last is not None and frame.pts <= last):
            continue  # also before the segment (decoded from the keyframe's group, or leading pictures of it)
        if end is not None and frame.pts >= end:
            return
        last = frame.pts
        yield _Frame(frame.to_ndarray(format=rgb), frame.pts, frame.time_base)


_DONE = object()


@dataclass(frozen=True)
class _Failed:
    error: BaseException


def _in_background(items: Iterator[Any], depth: int) -> Iterator[Any]:
    """`items` produced in a thread of their own, at most `depth` ahead: decoding overlaps the upscaling. Closing it
    returns once the thread has stopped reading (its container may then close)."""
    produced: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    begun, ended = threading.Event(), threading.Event()  # see _Encoder.ended

    def produce() -> None:
        begun.set()
        try:
            if stop.is_set():  # the consumer gave up before this thread began (Ctrl+C inside `start`)
                return
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
        finally:
            ended.set()

    thread = threading.Thread(target=produce, name="realesr-decode", daemon=True)
    try:
        thread.start()  # inside: Ctrl+C can land in `start`, after the thread exists
        while (item := produced.get()) is not _DONE:
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        # a thread that begins after this wait sees `stop` before it touches the container
        if begun.wait(1.0):
            while not ended.is_set():
                with contextlib.suppress(queue.Empty):
                    produced.get(timeout=0.1)
            thread.join()  # and gone: a daemon thread still in C code when the interpreter ends aborts the process


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
        # Set by the encoding thread as its last act; waited for instead of Thread.join and is_alive, which cannot be
        # trusted once Ctrl+C interrupted a join: CPython 3.11 then marks a thread that still runs as stopped, and the
        # output closed under the thread's last flush (a segmentation fault, 1 Ctrl+C in 25 after a segment ended).
        self.ended = threading.Event()
        self.thread = threading.Thread(target=self._encode, name="realesr-encode", daemon=True)
        self.thread.start()

    def add(self, frame: _Frame) -> None:
        self.pending.append(frame)
        if len(self.pending) >= self.video.frames_per_batch:
            self._flush()

    def finish(self) -> None:
        self._flush()
        self._put(_DONE)
        self.ended.wait()
        self.thread.join()  # and gone: a daemon thread still in C code when the interpreter ends aborts the process
        self._raise_failure()

    def close(self) -> None:
        """Stops the encoding thread if the segment ended early (an error, a cancel, Ctrl+C), and returns once it no
        longer touches the output."""
        if not self.ended.is_set():
            self.failure = self.failure or UpscaleCancelled("stopped")
            while not self.ended.is_set():
                with contextlib.suppress(queue.Full):
                    self.queue.put(_DONE, timeout=0.1)
        self.thread.join()

    def _encode(self) -> None:
        try:
            self._encode_all()
        except BaseException as error:  # noqa: BLE001 - raised in the main thread
            self.failure = error
        finally:
            self.ended.set()  # after `_encode_all` let go of its frames and packets: nothing of FFmpeg's is left here

    def _encode_all(self) -> None:
        import av

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

    def _put(self, item: Any) -> None:
        while not self.ended.is_set():
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
