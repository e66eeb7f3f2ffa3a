"""A video cut into segments at its keyframes, each upscaled into a file of a work folder beside the target (in any
order, by any worker; a resumed run keeps the finished ones), then joined by stream copy with the source's other
streams muxed once."""

from __future__ import annotations

import contextlib
import heapq
import io
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import UpscaleCancelled
from ...files import WorkFolder, write_atomically
from ...upscaling import UpscaleOptions
from ..termination import terminating_cleanly
from .encoding import Encoding, VideoOptions, check_encoding, encode_segment, plan_encoding
from .probe import SourceFacts, VideoError, av_module, probe_video

SEGMENT_SECONDS = 10.0  # a segment starts at the first keyframe this long after the last segment's start


@dataclass(frozen=True)
class VideoResult:
    frames: int
    duplicates: int  # frames that reused the previous frame's result (skip_duplicates)
    size: tuple[int, int]  # output width, height
    copied_streams: int  # audio, subtitle, attachment and data streams carried over
    bit_depth: int
    codec: str = ""  # the encoder used
    lost: int = 0  # frames of a damaged or cut-off source that could not be decoded


@dataclass(frozen=True)
class SegmentFacts:
    """What every segment needs: how it is encoded, where it starts and ends, and the frames of the whole clip."""

    encoding: Encoding
    total: int  # frames the file should hold (see SourceFacts.expected)
    truncated: bool  # the file stops before its container says it does
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
    with terminating_cleanly():  # a stop (SIGTERM) unwinds: the segment being written is removed, finished ones stay
        try:
            for index in range(len(plan.facts.segments)):
                done = plan.work.finished(index)
                if done is None:
                    done = write_segment(model, plan, index, options, video,
                                         progress=_offset(progress, frames, plan.facts.total), cancel=cancel)
                    plan.work.finish(index, *done)
                frames += done[0]
            return join_segments(plan)
        except UpscaleCancelled:
            raise  # the finished segments stay for `resume`
        except Exception:
            plan.work.remove()  # a run that failed leaves nothing behind (a resumed one would fail the same way)
            raise


def scan_video(source: str | os.PathLike) -> SourceFacts:
    """What `source` says of itself: its packets read (not decoded) for the keyframes and the frame count, and its
    first picture's metadata. The slow part of planning a video (every packet of a long film is read), which a Ray
    run gives to a worker as a unit of its own."""
    av = av_module()
    source = Path(source)
    try:
        return probe_video(av, source)
    except av.error.FFmpegError as exc:
        raise VideoError(f"{source.name}: {exc}") from exc


def plan_video(model: Any, source: str | os.PathLike, target: str | os.PathLike, options: UpscaleOptions | None,
               video: VideoOptions, scanned: SourceFacts | None = None) -> VideoPlan:
    """Cuts `source` into segments (from `scanned`, what `scan_video` found, else it is scanned now: keyframes,
    size, bit depth, HDR metadata) and opens the work folder beside `target`; with `video.resume` the segments a run
    of the same job finished are kept. Encoder settings FFmpeg would refuse are an error here, before any frame is
    upscaled."""
    check_encoding(video)
    source, target = Path(source), Path(target)
    probed = scanned if scanned is not None else scan_video(source)
    encoding = plan_encoding(probed, _scale(model, options), video, source.name)
    facts = SegmentFacts(encoding, probed.expected, probed.truncated, _segments(probed))
    # segments are MP4 files: MP4 keeps every decode time (MKV gives some back unknown)
    return VideoPlan(source, target, facts, WorkFolder(target, _job_key(source, model, video, facts), video.resume,
                                                       ".mp4"))


def write_segment(model: Any, plan: VideoPlan, index: int, options: UpscaleOptions | None, video: VideoOptions, *,
                  progress: Callable[[int, int], None] | None = None,
                  cancel: Callable[[], bool] | None = None) -> tuple[int, int, int]:
    """Upscales segment `index` into its file in the work folder (written atomically); returns (frames, repeated
    frames, damaged packets skipped). The caller records it with `plan.work.finish`, so one process alone writes
    the manifest."""
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
    return counts[0], counts[1], counts[2]


def join_segments(plan: VideoPlan) -> VideoResult:
    """Joins the finished segments by stream copy into the target with the source's other streams, chapters and
    metadata, and removes the work folder. A damaged or cut-off source is a warning that says how many frames could
    not be decoded."""
    av = av_module()
    frames, duplicates, rejected = plan.work.totals(3)
    damaged = rejected or plan.facts.truncated
    cut = " (the file is cut off)" if plan.facts.truncated else ""
    if not frames:
        plan.work.remove()
        raise VideoError(f"{plan.source.name} is damaged: none of its {plan.facts.total} frames could be decoded{cut}"
                         if damaged else f"{plan.source.name} has no frames")
    lost = max(plan.facts.total - frames, 0) if damaged else 0
    if lost:
        warnings.warn(f"{plan.source.name}: damaged: {lost} frames could not be decoded{cut}", stacklevel=2)
    copied: list[int] = []
    try:
        write_atomically(plan.target, lambda temporary: copied.append(_join(av, plan.source, plan.work.parts(),
                                                                             temporary)))
    except av.error.FFmpegError as exc:
        raise VideoError(f"{plan.source.name}: {exc}") from exc
    plan.work.remove()
    encoding = plan.facts.encoding
    return VideoResult(frames, duplicates, encoding.size, copied[0], encoding.bits, encoding.codec, lost)


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
    encoding = facts.encoding
    return {"source": str(source.resolve()), "bytes": stat.st_size, "modified": stat.st_mtime_ns,
            "model": f"{described.name or described.source}:{described.architecture}",
            "size": list(encoding.size), "codec": encoding.codec, "pixel_format": encoding.pixel_format,
            "options": encoding.options, "bits": encoding.bits, "skip_duplicates": video.skip_duplicates,
            "segments": [list(s) for s in facts.segments], "counts": ["frames", "repeated", "rejected"]}


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
    """The segments' video by stream copy, in order, with the source's other streams muxed once, interleaved by
    time, and its chapters and metadata (as `ffmpeg -map 0 -c copy` carries them); returns how many streams were
    copied from the source."""
    # bitexact: no random segment UID or muxer version in the file, so the same job gives the same bytes
    with (av.open(str(source)) as original, av.open(str(parts[0])) as first,
          av.open(str(temporary), "w", options={"fflags": "+bitexact"}) as output):
        video_in = original.streams.video[0]
        video_out = output.add_stream_from_template(first.streams.video[0], opaque=True)  # remuxed: no encoder needed
        # the stream's frame rate: a timecode track the muxer makes from the timecode tag runs at it
        video_out.codec_context.framerate = video_in.average_rate or video_in.guessed_rate
        _describe(video_out, video_in, encoded=True)
        output.metadata.update(_carried(original.metadata, CONTAINER_KEYS))
        chapters = original.chapters()
        if chapters:
            output.set_chapters(chapters)
        copied = _copy_streams(av, original, output, video_in, source, bool(chapters))
        video_packets = ((float(p.dts * p.time_base), 0, video_out, p) for p in _part_packets(av, parts))
        # Matroska gives a video stream's packets no decode time: their presentation time orders them instead
        other_packets = ((float(_decode_time(p) * p.time_base), 1, copied[p.stream], p)
                         for p in original.demux(*copied) if _decode_time(p) is not None) if copied else iter(())
        for _time, _order, stream, packet in heapq.merge(video_packets, other_packets, key=lambda item: item[:2]):
            packet.stream = stream
            output.mux(packet)
    return len(copied)


# Metadata that describes the old file rather than its content: the container's brands and muxer, and the
# statistics Matroska tools write per stream (the muxer writes its own).
CONTAINER_KEYS = {"major_brand", "minor_version", "compatible_brands", "encoder"}
STATISTICS_KEYS = {"duration", "number_of_frames", "number_of_bytes", "bps", "encoder", "_statistics_tags",
                   "_statistics_writing_app", "_statistics_writing_date_utc"}


def _carried(metadata: dict[str, str], dropped: set[str]) -> dict[str, str]:
    return {key: value for key, value in metadata.items() if key.lower() not in dropped}


def _describe(output_stream: Any, source_stream: Any, encoded: bool = False) -> None:
    """The source stream's language, title, timecode and other tags, and its disposition (default, forced...)."""
    metadata = _carried(source_stream.metadata, STATISTICS_KEYS if encoded else STATISTICS_KEYS - {"encoder"})
    if "name" in metadata and "title" not in metadata:
        metadata["title"] = metadata.pop("name")  # an MP4 track title as read back; every muxer writes "title"
    output_stream.metadata.update(metadata)
    output_stream.disposition = source_stream.disposition


def _decode_time(packet: Any) -> int | None:
    return packet.dts if packet.dts is not None else packet.pts


def _part_packets(av: Any, parts: list[Path]) -> Iterator[Any]:
    for part in parts:
        with av.open(str(part)) as container:
            yield from (packet for packet in container.demux(video=0) if packet.dts is not None)


def _copy_streams(av: Any, container: Any, output: Any, video_stream: Any, source: Path,
                  has_chapters: bool) -> dict[Any, Any]:
    """Output streams for every other stream of the source (audio, subtitles, fonts, timecode and other data), by
    source stream; one the output's muxer refuses is left out with a warning."""
    copied = {}
    timecode_tag = "timecode" in {key.lower() for key in video_stream.metadata}
    for stream in container.streams:
        if stream is video_stream or (has_chapters and _is_chapter_track(stream)):
            continue  # the muxer writes the chapters (and such a track, where the format has one) itself
        if timecode_tag and _is_timecode_track(stream):
            continue  # MP4 and MOV muxers make the timecode track from the video stream's tag, Matroska keeps the tag
        if not _refused(av, output, stream):
            copied[stream] = output.add_stream_from_template(stream, opaque=True)
            _describe(copied[stream], stream)
        else:
            kind = stream.codec_context.name if stream.codec_context is not None else stream.name or "unknown codec"
            keeps = "the source's own container" if stream.type == "data" else ".mkv"
            warnings.warn(f"{source.name}: {stream.type} stream {stream.index} ({kind}) cannot go into a "
                          f"{Path(output.name).suffix} file and is left out; {keeps} keeps it", stacklevel=5)
    return copied


def _refused(av: Any, output: Any, stream: Any) -> bool:
    """Whether the output's muxer refuses a copy of `stream`, found by writing a file with it alone into memory: some
    muxers refuse a stream only at the header or the trailer, which would lose the whole join."""
    trial = av.open(io.BytesIO(), "w", format=output.format.name)
    try:
        trial.add_stream_from_template(stream, opaque=True)
        trial.start_encoding()
        trial.close()
    except (av.error.FFmpegError, ValueError):
        with contextlib.suppress(av.error.FFmpegError, ValueError):
            trial.close()
        return True
    return False


def _is_chapter_track(stream: Any) -> bool:
    """The QuickTime text track that holds an MP4's or MOV's chapter titles (their muxers make it from the chapters):
    FFmpeg reads it as a 'text'-tagged mov_text subtitle (real ones are 'tx3g') or as binary data."""
    if stream.type == "subtitle":
        return getattr(stream, "codec_tag", None) == "text"
    return stream.type == "data" and stream.name == "bin_data"


def _is_timecode_track(stream: Any) -> bool:
    """A QuickTime timecode track: its demuxer gives the start timecode as the stream's tag."""
    return stream.type == "data" and "timecode" in {key.lower() for key in stream.metadata}
