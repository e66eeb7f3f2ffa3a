"""A video cut into segments at its keyframes, each upscaled into a file of a work folder beside the target (in any
order, by any worker; a resumed run keeps the finished ones), then joined by stream copy with the source's other
streams muxed once."""

from __future__ import annotations

import heapq
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...files import WorkFolder, write_atomically
from ...upscaling import UpscaleOptions
from .encoding import Encoding, VideoOptions, check_encoding, encode_segment
from .probe import SourceFacts, VideoError, av_module, probe_video

SEGMENT_SECONDS = 10.0  # a segment starts at the first keyframe this long after the last segment's start


@dataclass(frozen=True)
class VideoResult:
    frames: int
    duplicates: int  # frames that reused the previous frame's result (skip_duplicates)
    size: tuple[int, int]  # output width, height
    copied_streams: int  # audio and subtitle streams carried over
    bit_depth: int


@dataclass(frozen=True)
class SegmentFacts:
    """What every segment needs: how it is encoded, where it starts and ends, and the frames of the whole clip."""

    encoding: Encoding
    total: int  # frames, estimated where the container does not say
    segments: list[tuple[int | None, int | None]]  # [start pts, end pts) per segment; None: the clip's own start / end


@dataclass(frozen=True)
class VideoPlan:
    """A video's segments and the work folder that holds the finished ones: what `write_segment` (anywhere, in any
    order) and `join_segments` (once, at the end) need."""

    source: Path
    target: Path
    facts: SegmentFacts
    work: WorkFolder


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


def plan_video(model: Any, source: str | os.PathLike, target: str | os.PathLike, options: UpscaleOptions | None,
               video: VideoOptions) -> VideoPlan:
    """Probes `source` (keyframes, size, bit depth) and opens the work folder beside `target`; with `video.resume`
    the segments a run of the same job finished are kept. Encoder settings FFmpeg would refuse are an error here,
    before any frame is upscaled."""
    av = av_module()
    check_encoding(video)
    source, target = Path(source), Path(target)
    try:
        probed = probe_video(av, source)
    except av.error.FFmpegError as exc:
        raise VideoError(f"{source.name}: {exc}") from exc
    scale = _scale(model, options)
    encoding = Encoding(probed.time_base, probed.rate, (probed.size[0] * scale, probed.size[1] * scale),
                        video.bit_depth or (10 if probed.bits > 8 else 8), probed.colour)
    facts = SegmentFacts(encoding, probed.total, _segments(probed))
    # segments are MP4 files: MP4 keeps every decode time (MKV gives some back unknown)
    return VideoPlan(source, target, facts, WorkFolder(target, _job_key(source, model, video, facts), video.resume,
                                                       ".mp4"))


def write_segment(model: Any, plan: VideoPlan, index: int, options: UpscaleOptions | None, video: VideoOptions, *,
                  progress: Callable[[int, int], None] | None = None,
                  cancel: Callable[[], bool] | None = None) -> tuple[int, int]:
    """Upscales segment `index` into its file in the work folder (written atomically); returns (frames, repeated
    frames). The caller records it with `plan.work.finish`, so one process alone writes the manifest."""
    av = av_module()
    start, end = plan.facts.segments[index]
    counts: list[int] = []
    segment_progress = None if progress is None else lambda done: progress(done, max(plan.facts.total, done))

    def write(temporary: Path) -> None:
        counts.extend(encode_segment(model, plan.source, temporary, start, end, plan.facts.encoding, options, video,
                                     segment_progress, cancel))

    try:
        write_atomically(plan.work.part(index), write)
    except av.error.FFmpegError as exc:
        raise VideoError(f"{plan.source.name}: {exc}") from exc
    return counts[0], counts[1]


def join_segments(plan: VideoPlan) -> VideoResult:
    """Joins the finished segments by stream copy into the target with the source's other streams, and removes the
    work folder."""
    av = av_module()
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
    encoding = plan.facts.encoding
    return VideoResult(frames, duplicates, encoding.size, copied[0], encoding.bits)


def _segments(probed: SourceFacts) -> list[tuple[int | None, int | None]]:
    """[start, end) per segment: each starts at the first keyframe SEGMENT_SECONDS after the last one's start."""
    starts: list[int] = []
    for pts in probed.keyframes:
        if not starts or (pts - starts[-1]) * probed.time_base >= SEGMENT_SECONDS:
            starts.append(pts)
    bounds: list[int | None] = [None, *starts[1:], None]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def _job_key(source: Path, model: Any, video: VideoOptions, facts: SegmentFacts) -> dict[str, Any]:
    """Everything that changes the segments' bytes: a resumed run keeps them only if this is unchanged."""
    from ...models.descriptor import describe

    described = describe(model)
    stat = source.stat()
    return {"source": str(source.resolve()), "bytes": stat.st_size, "modified": stat.st_mtime_ns,
            "model": f"{described.name or described.source}:{described.architecture}",
            "size": list(facts.encoding.size), "codec": video.codec, "crf": video.crf, "preset": video.preset,
            "bits": facts.encoding.bits, "skip_duplicates": video.skip_duplicates,
            "segments": [list(s) for s in facts.segments]}


def _offset(progress: Callable[[int, int], None] | None, base: int, total: int) -> Callable[[int, int], None] | None:
    if progress is None:
        return None
    return lambda done, _segment_total: progress(base + done, max(total, base + done))


def _scale(model: Any, options: UpscaleOptions | None) -> int:
    from ...models.descriptor import describe

    if options is not None and (options.outscale or options.width or options.height):
        raise VideoError("videos are upscaled at the model's scale (resize them afterwards)")
    return describe(model).scale


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
