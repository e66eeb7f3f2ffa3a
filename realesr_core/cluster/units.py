"""The units of work a Ray run hands out, and the manifest that says which outputs are finished.

Plain Python (no Ray): a unit is pickled into a row, run by a worker that reads and writes its own files, and
recorded by the driver, which alone writes manifests. An image is one unit; a video is first a keyframe scan (every
packet read), then one unit per keyframe-aligned segment (`media.video`'s segments, joined once all are done); an
image too large for one worker is one unit per row of tiles (`media.huge`'s grid, written by one writer once all rows
are done).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, ClassVar

from ..jobs import UpscaleJob
from ..media import (
    SourceFacts,
    TileRowPlan,
    VideoPlan,
    join_segments,
    plan_tile_rows,
    plan_video,
    read_image,
    scan_video,
    upscale_image_file,
    upscale_tile_row,
    write_segment,
    write_tile_rows,
)
from ..upscaling import UpscaleOptions

MANIFEST_NAME = ".realesr-ray-manifest.jsonl"


@dataclass(frozen=True)
class ImageUnit:
    """A whole image, read, upscaled in memory and written by one worker."""

    source: Path
    target: Path
    pixels: int = 0  # input pixels, as the header says: small images travel together (see `dispatch.parcels`)

    @property
    def label(self) -> str:
        return self.source.name

    @property
    def written(self) -> Path:
        """The file it writes (atomically: a hidden temporary beside it until it is whole)."""
        return self.target

    def run(self, model: Any, job: UpscaleJob, options: UpscaleOptions) -> list[int]:
        loaded = read_image(self.source, job.max_pixels)
        upscale_image_file(model, loaded, self.target, options, bit_depth=job.bits or loaded.bit_depth,
                           quality=job.quality)
        return []

    def record(self, result: list[int]) -> None:
        """Nothing to note: the output is the image."""


@dataclass(frozen=True)
class _PartUnit:
    """One part of an output that is made in parts (a video's segment, a huge image's tile row): written into its
    file in the output's work folder, and noted there by the driver once it is back."""

    plan: VideoPlan | TileRowPlan
    index: int
    parts: int  # how many the output has
    PART: ClassVar[str] = "part"  # what a part is called in messages

    @property
    def source(self) -> Path:
        return self.plan.source

    @property
    def written(self) -> Path:
        return self.plan.work.part(self.index)

    @property
    def label(self) -> str:
        return f"{self.plan.source.name} {self.PART} {self.index + 1}/{self.parts}"

    def record(self, result: list[int]) -> None:
        self.plan.work.finish(self.index, *result)


@dataclass(frozen=True)
class SegmentUnit(_PartUnit):
    """One keyframe-aligned segment of a video, encoded into its file in the video's work folder."""

    plan: VideoPlan
    PART: ClassVar[str] = "segment"

    def run(self, model: Any, job: UpscaleJob, options: UpscaleOptions) -> list[int]:
        return list(write_segment(model, self.plan, self.index, options, job.video))


@dataclass(frozen=True)
class TileRowUnit(_PartUnit):
    """One row of tiles of an image too large for one worker, read by window, its output kept in the work folder."""

    plan: TileRowPlan
    PART: ClassVar[str] = "tile row"

    def run(self, model: Any, job: UpscaleJob, options: UpscaleOptions) -> list[int]:
        return [upscale_tile_row(model, self.plan, self.index, options, job.max_pixels)]


@dataclass(frozen=True)
class ScanUnit:
    """A video's keyframe scan: every packet of the file read, which takes a while for a long film, so a worker does
    it while the driver goes on handing out work; its result (the `SourceFacts`) is what the driver cuts the video
    into segments by."""

    source: Path
    target: Path

    @property
    def label(self) -> str:
        return f"{self.source.name} keyframe scan"

    @property
    def written(self) -> None:
        """It writes nothing."""

    def run(self, model: Any, job: UpscaleJob, options: UpscaleOptions) -> SourceFacts:
        return scan_video(self.source)

    def record(self, result: SourceFacts) -> None:
        """Nothing to note: the driver plans the segments from the result (`Item.then`)."""


Unit = ImageUnit | SegmentUnit | TileRowUnit | ScanUnit


@dataclass
class Item:
    """One output and the units that make it; `finish` (driver side, once every unit is done) joins the parts. An
    item with `then` is a first step (a video's scan): once its one unit is done, `then(result)` is the item that makes
    the output."""

    source: Path
    target: Path
    units: list[Unit]
    key: str  # the manifest's name for this output made by this job
    finish: Callable[[], object] | None = None
    then: Callable[[Any], Item] | None = None


def image_item(source: Path, target: Path, key: str, pixels: int) -> Item:
    return Item(source, target, [ImageUnit(source, target, pixels)], key)


def scan_item(model: Any, source: Path, target: Path, job: UpscaleJob, key: str) -> Item:
    """A video's keyframe scan, on a worker; then its segments (`video_item`)."""
    return Item(source, target, [ScanUnit(source, target)], key,
                then=functools.partial(_segments_item, model, source, target, job, key))


def _segments_item(model: Any, source: Path, target: Path, job: UpscaleJob, key: str, scanned: SourceFacts) -> Item:
    return video_item(plan_video(model, source, target, job.options, job.video, scanned), key)


def video_item(plan: VideoPlan, key: str) -> Item:
    """The segments not finished by an earlier run of the same job, and the join."""
    count = len(plan.facts.segments)
    units: list[Unit] = [SegmentUnit(plan, index, count) for index in range(count) if plan.work.finished(index) is None]
    return Item(plan.source, plan.target, units, key, finish=functools.partial(join_segments, plan))


def huge_item(model: Any, source: Path, target: Path, job: UpscaleJob, key: str) -> Item:
    """The tile rows not finished by an earlier run of the same job, and the single writer of the tiled TIFF."""
    plan = plan_tile_rows(model, source, target, job.options, {"item": key}, bit_depth=job.bits,
                          max_pixels=job.max_pixels)
    units: list[Unit] = [TileRowUnit(plan, row, plan.rows) for row in range(plan.rows) if not plan.finished(row)]
    return Item(source, target, units, key, finish=functools.partial(write_tile_rows, plan))


def item_key(source: Path, target: Path | None, job: UpscaleJob) -> str:
    """Names the output, its source as it is now (size, modification time) and every setting that changes it."""
    try:
        stat = source.stat()
        size, modified = stat.st_size, stat.st_mtime_ns
    except OSError:  # gone or unreadable: a failed row still needs a key
        size, modified = -1, -1
    described = {"source": str(source), "bytes": size, "modified": modified, "target": str(target), **_settings(job)}
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()


@functools.lru_cache(maxsize=4)
def _settings(job: UpscaleJob) -> dict[str, Any]:
    """`job.key()`, made once per job rather than once per input (its deep copies cost more than the rest of a
    small image's planning)."""
    return job.key()


class Manifest:
    """The status row of every output of earlier runs (path, target, ok, seconds, error), one JSON line each
    (`MANIFEST_NAME` in the output folder: hidden, so that a run over that folder neither takes it as an input nor
    counts it among the outputs): what a re-run skips. Written by the driver alone, a line at a time and
    flushed at once (a killed driver loses at most the line being written, ignored on reading), and forced to disk
    once a second (a power cut loses at most that second: those outputs are made again)."""

    SYNC_SECONDS = 1.0

    def __init__(self, folder: Path) -> None:
        self.path = folder / MANIFEST_NAME
        self.made: set[str] = set()  # what earlier runs made (this run plans each output once: not added)
        self.handle: IO[str] | None = None
        self.synced = 0.0
        if self.path.exists():
            with open(self.path) as rows:  # line by line: a million rows are never one string
                for line in rows:
                    try:
                        status = json.loads(line)
                        (self.made.add if status["ok"] else self.made.discard)(status["key"])
                    except (ValueError, KeyError, TypeError):
                        continue

    def done(self, key: str, target: Path | None) -> bool:
        """Whether the output named by `key` was made by an earlier run and is still there."""
        return key in self.made and target is not None and target.exists()

    def add(self, key: str, status: dict[str, Any]) -> None:
        if self.handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.handle = open(self.path, "a")  # noqa: SIM115 - kept open for the run, closed by `close`
        self.handle.write(json.dumps({"key": key, **status}) + "\n")
        self.handle.flush()
        if time.monotonic() - self.synced >= self.SYNC_SECONDS:
            os.fsync(self.handle.fileno())
            self.synced = time.monotonic()

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.handle is not None:
            os.fsync(self.handle.fileno())
            self.handle.close()
            self.handle = None
