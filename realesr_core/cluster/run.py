"""`realesr upscale --ray`: the inputs cut into units, run by a fleet of upscaler actors on a Ray cluster.

The driver plans (which outputs are still to make, as which units) as the fleet asks for work, records each status
row as it comes back, joins a video's segments and writes a huge image's tiled TIFF once all their units are done,
and reports what failed. It alone writes manifests.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import RealESRError
from ..files import remove_temporaries
from ..media.images import image_shape
from ..media.video import VIDEO_SUFFIXES, VideoOptions, plan_video
from ..models import ModelDescriptor, zoo
from ..progress import ProgressBar
from ..upscaling import UpscaleOptions
from .dispatch import Fleet
from .fleet import ClusterLost, HeadWatch, Slot, connect, plan_fleet, ray_module
from .units import Item, Job, Manifest, Unit, huge_item, image_item, item_key, video_item


@dataclass
class Outcome:
    """What a run did: outputs made, skipped as made by an earlier run, and the failed ones' status rows."""

    made: int = 0
    skipped: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)


def upscale_on_ray(model: ModelDescriptor, sources: list[Path], args: argparse.Namespace, options: UpscaleOptions,
                   video: VideoOptions, label: str) -> int:
    """The `upscale` command on Ray, with the options the command line parsed; returns its exit status."""
    from ..cli.upscale import output_path, video_output_path

    job = Job(model=str(Path(args.model).resolve()) if Path(args.model).is_file() else args.model,
              options=replace(options, device=None), video=replace(video, resume=True),
              bits=None if args.bits == "auto" else int(args.bits), quality=args.quality, max_pixels=args.max_pixels,
              device=args.device, cache_dir=str(zoo.cache_dir().resolve()))
    several = len(sources) > 1
    sources = [source.resolve() for source in sources]
    targets = {}
    for source in sources:
        if source.suffix.lower() in VIDEO_SUFFIXES:
            targets[source] = video_output_path(source, args.output, several, label).resolve()
        else:
            targets[source] = output_path(source, args.output, several, label).resolve()
    manifest = Manifest(Path(os.path.commonpath([target.parent for target in targets.values()])))
    started = time.perf_counter()
    started_ray = connect(args.ray)
    outcome = Outcome()
    bar = ProgressBar("ray", "units")
    lost = False
    try:
        watch = HeadWatch(args.ray)
        slots = plan_fleet(args.device, args.ray_workers)
        items = _plan_items(model, sources, targets, job, args, several, label, manifest, outcome, bar)
        run_items(items, job, slots, manifest, outcome, watch, bar)
    except ClusterLost:
        lost = True
        raise
    except Interrupted as stop:
        print(f"realesr: interrupted; {outcome.made} output(s) were made and recorded. {stop}",
              file=sys.stderr)
        return 130
    finally:
        manifest.close()
        if started_ray and not lost:  # a lost cluster cannot be shut down: its processes are gone
            ray_module().shutdown()
    print(f"ray: {outcome.made} output(s) made, {outcome.skipped} already done, {len(outcome.failures)} failed in "
          f"{time.perf_counter() - started:.1f} s ({describe_fleet(slots)})")
    return 1 if outcome.failures else 0


class Interrupted(RealESRError):
    """Ctrl+C during a run; says what was left behind."""


def _plan_items(model: ModelDescriptor, sources: list[Path], targets: dict[Path, Path], job: Job,
                args: argparse.Namespace, several: bool, label: str, manifest: Manifest, outcome: Outcome,
                bar: ProgressBar) -> Iterator[Item]:
    """The items still to make, one source at a time as the fleet asks for work; those an earlier run made are
    counted in `outcome.skipped`, and sources that cannot even be planned (unreadable header, not a video) are failed
    rows. An image whose result would not fit in memory (or with --stream) is cut into tile rows and written as a
    tiled TIFF, as without Ray."""
    from ..cli.upscale import must_stream, output_path

    for source in sources:
        target = targets[source]
        try:
            if source.suffix.lower() in VIDEO_SUFFIXES:
                key = item_key(source, target, job)
                item = None if manifest.done(key, target) else video_item(plan_video(model, source, target,
                                                                                     job.options, job.video), key)
            else:
                height, width, channels = image_shape(source, job.max_pixels)
                if must_stream(height, width, channels, model.scale, args.stream):
                    target = output_path(source, args.output, several, label, ".tif").resolve()
                    key = item_key(source, target, job)
                    item = None if manifest.done(key, target) else huge_item(model, source, target, job, key)
                else:
                    key = item_key(source, target, job)
                    item = None if manifest.done(key, target) else image_item(source, target, key, height * width)
        except RealESRError as exc:
            _record_failure(manifest, outcome, key=item_key(source, target, job),
                            status={"path": str(source), "target": str(target), "ok": False, "seconds": 0.0,
                                    "error": str(exc), "nodes": []}, bar=bar)
            continue
        if item is None:
            outcome.skipped += 1
        else:
            yield item


@dataclass
class _Open:
    """An item whose units are not all back yet."""

    left: int
    seconds: float = 0.0
    nodes: set[str] = field(default_factory=set)
    error: str = ""


def run_items(items: Iterable[Item], job: Job, slots: list[Slot], manifest: Manifest, outcome: Outcome,
              watch: HeadWatch | None = None, bar: ProgressBar | None = None) -> Outcome:
    """Runs every unit of `items` (pulled as the fleet needs work) on one upscaler per slot, finishing each item once
    its units are back: joined where it has parts, recorded in `manifest`, counted in `outcome`. The driver holds
    only the items in flight. Ctrl+C stops the workers and raises Interrupted saying what was left."""
    bar = bar or ProgressBar("ray", "units")
    in_flight: dict[int, tuple[Item, Unit]] = {}  # a unit's position in the stream -> its item and itself
    open_items: dict[int, _Open] = {}
    counts = {"planned": 0, "done": 0, "failed": 0}
    planning = True

    def units() -> Iterator[Unit]:
        nonlocal planning
        for item in items:
            if not item.units:  # every unit done by an earlier run: only the join is left
                _close(item, _Open(0), manifest, outcome, bar)
                continue
            open_items[id(item)] = _Open(len(item.units))
            for unit in item.units:
                in_flight[counts["planned"]] = (item, unit)
                counts["planned"] += 1
                yield unit
        planning = False

    fleet = Fleet(job, slots, watch)
    try:
        with fleet:
            for status in fleet.run(units()):
                item, unit = in_flight.pop(status["unit"])
                state = open_items[id(item)]
                state.seconds += status["seconds"]
                state.nodes.add(status["node"])
                if status["ok"]:
                    unit.record(status["result"])
                    counts["done"] += 1
                else:
                    where = "" if unit.label == item.source.name else f"{unit.label}: "
                    state.error = state.error or f"{where}{status['error']}"
                    counts["failed"] += 1
                state.left -= 1
                if state.left == 0:
                    _close(item, open_items.pop(id(item)), manifest, outcome, bar)
                bar(counts["done"] + counts["failed"], None if planning else counts["planned"],
                    f"({counts['failed']} failed)" if counts["failed"] else "")
    except KeyboardInterrupt:
        raise Interrupted(_left_behind(fleet.clean)) from None
    finally:
        bar.close()
    return outcome


def _left_behind(clean: bool) -> str:
    """The true words about what an interrupted run leaves in the output folders."""
    if clean:
        return ("The workers were stopped and the temporary files of what they were writing removed (whole outputs "
                "they had not reported yet are made again by a re-run); finished video segments and tile rows wait in "
                "hidden .NAME.parts folders beside their outputs. Re-run the same command to resume.")
    return ("Some workers could not be confirmed stopped, so hidden temporaries (.NAME.xxxxxxxx beside the outputs, "
            "and in the .NAME.parts folders of videos and huge images) may remain; re-running the same command "
            "resumes and removes them.")


def _close(item: Item, state: _Open, manifest: Manifest, outcome: Outcome, bar: ProgressBar) -> None:
    """An item whose units are all back: a failed row, or its parts joined (on the driver: one writer per output)
    and a made row."""
    status = {"path": str(item.source), "target": str(item.target), "ok": False, "seconds": round(state.seconds, 3),
              "error": state.error, "nodes": sorted(state.nodes)}
    if not state.error:
        try:
            if item.finish is not None:
                item.finish()
        except RealESRError as exc:
            status["error"] = str(exc)
    if status["error"]:
        _record_failure(manifest, outcome, item.key, status, bar)
        return
    remove_temporaries(item.target)  # left by a worker whose node was lost while it wrote
    manifest.add(item.key, {**status, "ok": True})
    outcome.made += 1
    bar.print(f"{item.source} -> {item.target}")


def _record_failure(manifest: Manifest, outcome: Outcome, key: str, status: dict[str, Any], bar: ProgressBar) -> None:
    manifest.add(key, status)
    outcome.failures.append(status)
    bar.print(f"realesr: error: {status['path']}: {status['error']}", file=sys.stderr)


def describe_fleet(slots: list[Slot]) -> str:
    """'3 worker(s) on 2 node(s): 1 GPU, 2 CPU'."""
    gpu = sum(1 for slot in slots if slot.gpus)
    return (f"{len(slots)} worker(s) on {len({slot.node for slot in slots})} node(s): {gpu} GPU, "
            f"{len(slots) - gpu} CPU")
