"""The units of work a Ray run hands out, and the manifest that says which outputs are finished.

Plain Python (no Ray): a unit is pickled into a row, run by a worker that reads and writes its own files, and
recorded by the driver, which alone writes manifests. An image is one unit; a video is one unit per keyframe-aligned
segment (media/video.py's segments, joined once all are done); an image too large for one worker is one unit per row
of tiles (media/huge.py's grid, written by one writer once all rows are done).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..jobs import UpscaleJob as Job  # what every worker needs: the same for all units
from ..media.huge import TileRowPlan, plan_tile_rows, upscale_tile_row, write_tile_rows
from ..media.images import read_image
from ..media.upscale_file import upscale_image_file
from ..media.video import VideoPlan, join_segments, write_segment
from ..upscaling import UpscaleOptions

MANIFEST_NAME = ".realesr-ray-manifest.jsonl"


@dataclass(frozen=True)
class ImageUnit:
    """A whole image, read, upscaled in memory and written by one worker."""

    source: Path
    target: Path

    @property
    def label(self) -> str:
        return self.source.name

    def run(self, model: Any, job: Job, options: UpscaleOptions) -> list[int]:
        loaded = read_image(self.source, job.max_pixels)
        upscale_image_file(model, loaded, self.target, options, bit_depth=job.bits or loaded.bit_depth,
                           quality=job.quality)
        return []

    def record(self, result: list[int]) -> None:
        """Nothing to note: the output is the image."""


@dataclass(frozen=True)
class SegmentUnit:
    """One keyframe-aligned segment of a video, encoded into its file in the video's work folder."""

    plan: VideoPlan
    index: int

    @property
    def source(self) -> Path:
        return self.plan.source

    @property
    def label(self) -> str:
        return f"{self.plan.source.name} segment {self.index + 1}/{len(self.plan.facts.segments)}"

    def run(self, model: Any, job: Job, options: UpscaleOptions) -> list[int]:
        return list(write_segment(model, self.plan, self.index, options, job.video))

    def record(self, result: list[int]) -> None:
        self.plan.work.finish(self.index, *result)


@dataclass(frozen=True)
class TileRowUnit:
    """One row of tiles of an image too large for one worker, read by window, its output kept in the work folder."""

    plan: TileRowPlan
    row: int

    @property
    def source(self) -> Path:
        return self.plan.source

    @property
    def label(self) -> str:
        return f"{self.plan.source.name} tile row {self.row + 1}/{self.plan.rows}"

    def run(self, model: Any, job: Job, options: UpscaleOptions) -> list[int]:
        return [upscale_tile_row(model, self.plan, self.row, options, job.max_pixels)]

    def record(self, result: list[int]) -> None:
        self.plan.work.finish(self.row, *result)


Unit = ImageUnit | SegmentUnit | TileRowUnit


@dataclass
class Item:
    """One output and the units that make it; `finish` (driver side, once every unit is done) joins the parts."""

    source: Path
    target: Path
    units: list[Unit]
    key: str  # the manifest's name for this output made by this job
    finish: Callable[[], object] | None = None


def image_item(source: Path, target: Path, key: str) -> Item:
    return Item(source, target, [ImageUnit(source, target)], key)


def video_item(plan: VideoPlan, key: str) -> Item:
    """The segments not finished by an earlier run of the same job, and the join."""
    units: list[Unit] = [SegmentUnit(plan, index) for index in range(len(plan.facts.segments))
                         if plan.work.finished(index) is None]
    return Item(plan.source, plan.target, units, key, finish=functools.partial(join_segments, plan))


def huge_item(model: Any, source: Path, target: Path, job: Job, key: str) -> Item:
    """The tile rows not finished by an earlier run of the same job, and the single writer of the tiled TIFF."""
    plan = plan_tile_rows(model, source, target, job.options, {"item": key}, bit_depth=job.bits,
                          max_pixels=job.max_pixels)
    units: list[Unit] = [TileRowUnit(plan, row) for row in range(plan.rows) if not plan.finished(row)]
    return Item(source, target, units, key, finish=functools.partial(write_tile_rows, plan))


def item_key(source: Path, target: Path, job: Job) -> str:
    """Names the output, its source as it is now (size, modification time) and every setting that changes it."""
    stat = source.stat()
    described = {"source": str(source), "bytes": stat.st_size, "modified": stat.st_mtime_ns, "target": str(target),
                 **job.key()}
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()


class Manifest:
    """The status row of every output of earlier runs (path, target, ok, seconds, error), one JSON line each
    (`MANIFEST_NAME` in the outputs' folder): what a re-run skips. Written by the driver alone, a line at a time, so a
    crash loses at most the line being written (ignored on reading)."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / MANIFEST_NAME
        self.made: set[str] = set()
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    status = json.loads(line)
                    (self.made.add if status["ok"] else self.made.discard)(status["key"])
                except (ValueError, KeyError, TypeError):
                    continue

    def done(self, key: str, target: Path) -> bool:
        """Whether the output named by `key` was made by an earlier run and is still there."""
        return key in self.made and target.exists()

    def add(self, key: str, status: dict[str, Any]) -> None:
        if status["ok"]:
            self.made.add(key)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as handle:
            handle.write(json.dumps({"key": key, **status}) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
