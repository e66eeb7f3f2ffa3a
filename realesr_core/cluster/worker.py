"""The upscaler a Ray actor runs: the model loaded once, then parcel after parcel of units, each unit answered by a
status row.

Imported only inside Ray workers and by `cluster.dispatch` (Ray itself is imported inside the actor, where it exists).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import torch

from ..errors import RealESRError
from ..jobs import UpscaleJob
from ..models import load_model, zoo
from ..upscaling import UpscaleOptions
from .units import Unit

ROWS_EVERY_SECONDS = 0.25  # how long a worker holds the rows of finished small units before sending them together


def worker_device(asked: str | None, has_gpu: bool) -> torch.device:
    """The device a worker computes on: the one asked for, or its GPU; the CPU where the GPU Ray gave it has no CUDA
    behind it (a logical GPU declared on a CPU machine)."""
    if asked is not None and not asked.startswith("cuda"):
        return torch.device(asked)
    if torch.cuda.is_available() and (has_gpu or asked is not None):
        return torch.device(asked or "cuda")
    return torch.device("cpu")


class Upscaler:
    """One per actor: loads the model once in `__init__` (again after Ray restarts a worker that died), then runs the
    parcels it is given, each with the job of the run that sends it. Workers read and write their own files; a unit
    that fails becomes a status row saying why, and the next unit of the parcel still runs.

    A warm worker (`keep_warm` seconds) outlives its run for the next run of the same model: one run at a time holds
    it (`ready` with the run's token claims it, `release` gives it back), and once nobody has called it for
    `keep_warm` seconds it ends itself (not restarted)."""

    def __init__(self, job: UpscaleJob, keep_warm: float = 0.0) -> None:
        import ray

        if job.cache_dir is not None:  # else this worker's own cache
            zoo.set_cache_dir(job.cache_dir)
        context = ray.get_runtime_context()
        assigned = context.get_assigned_resources()
        self.node = context.get_node_id()
        self.device = worker_device(job.device, bool(assigned.get("GPU")))
        if self.device.type == "cpu":
            torch.set_num_threads(max(1, int(assigned.get("CPU", 1))))  # the cores Ray gave it, not the node's
        self.model = load_model(job.model)
        self.model.module.to(self.device)  # once, not per unit
        self.holder = ""  # the run that holds a warm worker
        self.keep_warm = keep_warm
        self.last_call = time.monotonic()
        self.running = False
        if keep_warm:
            threading.Thread(target=self._end_when_idle, name="realesr-keep-warm", daemon=True).start()

    def ready(self, run: str = "", keep_warm: float = 0.0) -> dict[str, Any]:
        """Answers once the model is loaded: where this worker runs, and whether `run` (a warm run's token) holds
        it now: it does unless another run does."""
        self.last_call = time.monotonic()
        if run and self.holder not in ("", run):
            return {"node": self.node, "device": str(self.device), "held": False, "pid": os.getpid()}
        self.holder = run
        self.keep_warm = keep_warm or self.keep_warm
        return {"node": self.node, "device": str(self.device), "held": True, "pid": os.getpid()}

    def release(self, run: str) -> None:
        """The run `run` is over: the worker waits for the next one."""
        if self.holder == run:
            self.holder = ""
        self.last_call = time.monotonic()

    def run(self, parcel: list[tuple[int, Unit]], job: UpscaleJob) -> Iterator[list[dict[str, Any]]]:
        """Runs each (index, unit) of `parcel` for `job`, yielding the status rows of the units done (unit: the
        index, path, ok, seconds, error, result: what the driver records, device, node): at once after a unit that
        took ROWS_EVERY_SECONDS or more, else with the next ones, so that the rows of many small images cost the
        driver a message every ROWS_EVERY_SECONDS rather than one each."""
        options = replace(job.options, device=self.device)
        rows: list[dict[str, Any]] = []
        self.running = True
        try:
            sent = time.monotonic()
            for index, unit in parcel:
                rows.append(self._run_one(index, unit, job, options))
                if time.monotonic() - sent >= ROWS_EVERY_SECONDS:
                    yield rows
                    rows, sent = [], time.monotonic()
            if rows:
                yield rows
        finally:
            self.running = False
            self.last_call = time.monotonic()

    def run_all(self, parcel: list[tuple[int, Unit]], job: UpscaleJob) -> list[dict[str, Any]]:
        """`run`, every row at the end: for drivers on Ray Client, which cannot stream."""
        return [row for rows in self.run(parcel, job) for row in rows]

    def _end_when_idle(self) -> None:
        import ray

        while True:
            time.sleep(1.0)
            if not self.running and time.monotonic() - self.last_call > self.keep_warm:
                ray.kill(ray.get_runtime_context().current_actor, no_restart=True)
                return

    def _run_one(self, index: int, unit: Unit, job: UpscaleJob, options: UpscaleOptions) -> dict[str, Any]:
        started = time.perf_counter()
        result: Any = []
        error = ""
        try:
            result = unit.run(self.model, job, options)
        except RealESRError as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - one unit's failure is reported in its row, the run goes on
            error = f"{type(exc).__name__}: {exc}"
        return {"unit": index, "path": str(unit.source), "ok": not error, "seconds": time.perf_counter() - started,
                "error": error, "result": result, "device": str(self.device), "node": self.node}
