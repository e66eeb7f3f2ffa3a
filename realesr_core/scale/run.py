"""`realesr upscale --ray`: the inputs cut into units, run by a pool of upscaler actors on a Ray cluster.

The driver plans (which outputs are still to make, as which units), hands the units out as rows of Ray Data
(`map_batches` over an actor pool: the model is loaded once per actor, one GPU per actor where the cluster has GPUs),
records each status row as it comes back, joins a video's segments and writes a huge image's tiled TIFF once all
their units are done, retries what failed once, and reports what still fails. It alone writes manifests.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import RealESRError
from ..extras import import_extra
from ..files import remove_temporaries
from ..jobs import TILED, VIDEO, PlannedFile, UpscalePlan
from ..media.video import plan_video
from ..models import ModelDescriptor
from .units import Item, Job, Manifest, Unit, huge_item, image_item, item_key, video_item

RETRIES = 1  # a failed unit runs once more before it is reported
CPUS_PER_WORKER = 4  # a CPU upscaler's threads, where nodes have that many
TASKS_PER_WORKER = 2  # units queued per actor: the next is ready when one ends, and the tail of a run stays balanced


def _ray() -> Any:
    import_extra("ray.data", "ray", "--ray")  # the extra's other half
    return import_extra("ray", "ray", "--ray")


def connect(address: str) -> bool:
    """Joins the cluster at `address` ('auto', ray://host:port), or starts a local one ('local'); an existing
    connection in this process is used as it is. Returns whether this call started it (and should end it)."""
    ray = _ray()
    if ray.is_initialized():
        return False
    try:
        # "local" always starts a new instance (None would join whatever cluster this machine last started)
        ray.init(address=address, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise RealESRError(f"cannot reach a Ray cluster at {address}: {exc}") from exc
    return True


@dataclass(frozen=True)
class WorkerPool:
    """How many upscaler actors, and what each asks of Ray."""

    workers: int
    cpus: float
    gpus: float


def plan_pool(device: str | None, workers: int | None) -> WorkerPool:
    """One actor per GPU (each `num_gpus=1`; `workers` beyond the GPUs share them) where the cluster has GPUs or
    `device` asks for CUDA, else CPU actors of up to CPUS_PER_WORKER cores. GPUs asked of a cluster without any are an
    error now: Ray would wait forever."""
    ray = _ray()
    nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    gpus = int(sum(node.get("GPU", 0) for node in nodes))
    cpus_per_node = [int(node.get("CPU", 0)) for node in nodes if node.get("CPU", 0) >= 1]
    wants_gpus = device.startswith("cuda") if device else gpus > 0
    if workers is not None and workers < 1:
        raise RealESRError(f"--ray-workers must be at least 1, got {workers}")
    if wants_gpus:
        if gpus == 0:
            raise RealESRError(f"--device {device} asks for GPUs, but the Ray cluster has none "
                               f"({sum(cpus_per_node)} CPUs); Ray would wait for one forever. Leave --device out to "
                               f"upscale on the CPUs, or add nodes with GPUs")
        workers = workers or gpus
        # more workers than GPUs share them evenly: one worker's encoding and writing overlaps another's upscaling
        return WorkerPool(workers, 1, 1 / -(-workers // gpus))
    if not cpus_per_node:
        raise RealESRError("the Ray cluster has no CPUs to upscale on")
    if workers is None:
        per_worker = min(CPUS_PER_WORKER, min(cpus_per_node))
        return WorkerPool(sum(cpus // per_worker for cpus in cpus_per_node), per_worker, 0)
    return WorkerPool(workers, max(1, min(min(cpus_per_node), sum(cpus_per_node) // workers)), 0)


def upscale_on_ray(model: ModelDescriptor, plan: UpscalePlan, job: Job, address: str, workers: int | None) -> int:
    """The `upscale` command on Ray: the job's plan (`jobs.plan_upscale`) run on the cluster at `address` by
    `workers` upscalers (None: as the cluster allows); returns the command's exit status."""
    job = replace(job, video=replace(job.video, resume=True))
    planned = [replace(entry, source=entry.source.resolve(),
                       target=entry.target.resolve() if entry.target is not None else None) for entry in list(plan)]
    targets = [entry.target for entry in planned if entry.target is not None] or [Path.cwd()]
    manifest = Manifest(Path(os.path.commonpath([target.parent for target in targets])))
    started = time.perf_counter()
    started_ray = connect(address)
    try:
        pool = plan_pool(job.device, workers)
        ready = time.perf_counter() - started
        items, skipped, failures = [], 0, []
        for entry in planned:
            try:
                if entry.problem:
                    raise RealESRError(entry.problem)
                item = _plan_item(model, entry, job, manifest)
            except RealESRError as exc:
                failures.append(_failure(manifest, entry.source, entry.target, job, str(exc)))
                continue
            if item is None:
                skipped += 1
            else:
                items.append(item)
        made, failed = _run(items, job, pool, manifest)
        failures += failed
    finally:
        if started_ray:
            _ray().shutdown()
    print(f"ray: {made} output(s) made, {skipped} already done, {len(failures)} failed in "
          f"{time.perf_counter() - started:.1f} s ({pool.workers} worker(s); cluster ready in {ready:.1f} s)")
    for failure in failures:
        print(f"realesr: error: {failure['path']}: {failure['error']}", file=sys.stderr)
    if summary := plan.skipped.summary():
        print(f"realesr: {summary}", file=sys.stderr)
    return 1 if failures else 0


def _plan_item(model: ModelDescriptor, entry: PlannedFile, job: Job, manifest: Manifest) -> Item | None:
    """The item for a planned input, or None when an earlier run of the same job made it. An image whose result
    would not fit in memory (or with --stream) is cut into tile rows and written as a tiled TIFF, as without Ray."""
    key = item_key(entry.source, entry.target, job)
    if manifest.done(key, entry.target):
        return None
    if entry.how == VIDEO:
        return video_item(plan_video(model, entry.source, entry.target, job.options, job.video), key)
    if entry.how == TILED:
        return huge_item(model, entry.source, entry.target, job, key)
    return image_item(entry.source, entry.target, key)


def _failure(manifest: Manifest, source: Path, target: Path | None, job: Job, error: str) -> dict[str, Any]:
    """A source that could not even be planned (unreadable header, not a video): reported like a failed unit."""
    status = {"path": str(source), "target": str(target), "ok": False, "seconds": 0.0, "error": error}
    manifest.add(item_key(source, target, job), status)
    return status


def _run(items: list[Item], job: Job, pool: WorkerPool, manifest: Manifest) -> tuple[int, list[dict[str, Any]]]:
    """Runs every unit of `items`, finishing each item once its units are done; returns how many outputs were made
    and the failed ones' status rows."""
    units: list[tuple[Item, Unit]] = [(item, unit) for item in items for unit in item.units]
    progress = Progress(len(units))
    left = {id(item): len(item.units) for item in items}
    seconds = {id(item): 0.0 for item in items}
    nodes: dict[int, set[str]] = {id(item): set() for item in items}  # where each item's units ran
    errors: dict[int, str] = {}
    for item in items:
        if not item.units:  # every unit done by an earlier run: only the join is left
            _finish(item, 0.0, set(), manifest, errors)
    pending = list(range(len(units)))
    for attempt in range(1 + RETRIES):
        failed: list[int] = []
        for status in run_units([units[index][1] for index in pending], job, pool):
            item, unit = units[pending[status["unit"]]]
            seconds[id(item)] += status["seconds"]
            nodes[id(item)].add(status["node"])
            if not status["ok"]:
                if attempt < RETRIES:
                    failed.append(pending[status["unit"]])
                else:
                    errors[id(item)] = f"{unit.label}: {status['error']} (failed {1 + RETRIES} times)"
                    progress.fail()
                continue
            unit.record(json.loads(status["result"]))
            progress.advance()
            left[id(item)] -= 1
            if left[id(item)] == 0:
                _finish(item, seconds[id(item)], nodes[id(item)], manifest, errors)
        if not failed:
            break
        pending = failed
    progress.close()
    failures = []
    for item in items:
        if id(item) in errors:
            status = {"path": str(item.source), "target": str(item.target), "ok": False,
                      "seconds": round(seconds[id(item)], 3), "error": errors[id(item)], "nodes": sorted(nodes[id(item)])}
            manifest.add(item.key, status)
            failures.append(status)
    return len(items) - len(failures), failures


def _finish(item: Item, seconds: float, nodes: set[str], manifest: Manifest, errors: dict[int, str]) -> None:
    """Joins the item's parts where it has them (on the driver: one writer per output) and notes it as made."""
    try:
        if item.finish is not None:
            item.finish()
    except RealESRError as exc:
        errors[id(item)] = str(exc)
        return
    remove_temporaries(item.target)  # left by a worker whose node was lost while it wrote
    manifest.add(item.key, {"path": str(item.source), "target": str(item.target), "ok": True,
                            "seconds": round(seconds, 3), "error": "", "nodes": sorted(nodes)})
    print(f"{item.source} -> {item.target}", flush=True)


def run_units(units: list[Unit], job: Job, pool: WorkerPool) -> Iterator[dict[str, Any]]:
    """Runs `units` on an actor pool of the connected cluster; yields their status rows (unit: its index in `units`,
    path, ok, seconds, error, result, device, node) as the actors finish them, in any order."""
    if not units:
        return
    ray = _ray()
    from .worker import Upscaler

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.execution_options.preserve_order = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    rows = [{"unit": index, "payload": pickle.dumps(unit)} for index, unit in enumerate(units)]
    dataset = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
        Upscaler, fn_constructor_kwargs={"job": job}, batch_size=1, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=pool.workers, max_tasks_in_flight_per_actor=TASKS_PER_WORKER),
        num_cpus=pool.cpus, num_gpus=pool.gpus)
    try:
        yield from dataset.iter_rows()
    except ray.exceptions.RayError as exc:  # not one unit's failure (those are status rows): the pool itself failed
        lines = [line for line in str(exc).splitlines() if line.strip()]
        raise RealESRError(f"the Ray run stopped: {lines[-1] if lines else type(exc).__name__}") from exc


class Progress:
    """One line on stderr: units done of all, failures, throughput and time left."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.failed = total, 0, 0
        self.started = time.perf_counter()

    def advance(self) -> None:
        self.done += 1
        self._show()

    def fail(self) -> None:
        self.failed += 1
        self._show()

    def _show(self) -> None:
        elapsed = time.perf_counter() - self.started
        rate = self.done / max(elapsed, 1e-9)
        left = (self.total - self.done - self.failed) / rate if rate > 0 else 0.0
        print(f"\rray: {self.done}/{self.total} units done, {self.failed} failed, {rate:.2f}/s, {left:.0f} s left ",
              end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.done or self.failed:
            print(file=sys.stderr)

