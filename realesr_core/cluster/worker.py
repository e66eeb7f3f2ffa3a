"""The upscaler a Ray actor runs: the model loaded once, then unit after unit, each answered by a status row.

Imported only inside Ray workers and by `cluster.run` (Ray itself is imported inside the actor, where it exists).
"""

from __future__ import annotations

import json
import pickle
import time
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from ..errors import RealESRError
from ..models import load_model, zoo
from .units import Job


def worker_device(asked: str | None, has_gpu: bool) -> torch.device:
    """The device a worker computes on: the one asked for, or its GPU; the CPU where the GPU Ray gave it has no CUDA
    behind it (a logical GPU declared on a CPU machine)."""
    if asked is not None and not asked.startswith("cuda"):
        return torch.device(asked)
    if torch.cuda.is_available() and (has_gpu or asked is not None):
        return torch.device(asked or "cuda")
    return torch.device("cpu")


class Upscaler:
    """Ray Data's callable class (one per actor): loads the model once in `__init__`, then upscales the units of the
    rows it is given. Workers read and write their own files; a unit that fails becomes a status row saying why."""

    def __init__(self, job: Job) -> None:
        import ray

        zoo.set_cache_dir(job.cache_dir)
        context = ray.get_runtime_context()
        assigned = context.get_assigned_resources()
        self.node = context.get_node_id()
        self.device = worker_device(job.device, bool(assigned.get("GPU")))
        if self.device.type == "cpu" and assigned.get("CPU"):
            torch.set_num_threads(max(1, int(assigned["CPU"])))
        self.job = job
        self.model = load_model(job.model)
        self.model.module.to(self.device)  # once, not per unit
        self.options = replace(job.options, device=self.device)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        statuses: dict[str, list[Any]] = {name: [] for name in STATUS_COLUMNS}
        for index, payload in zip(batch["unit"], batch["payload"], strict=True):
            unit = pickle.loads(payload)
            started = time.perf_counter()
            result: list[int] = []
            error = ""
            try:
                result = unit.run(self.model, self.job, self.options)
            except RealESRError as exc:
                error = str(exc)
            except Exception as exc:  # noqa: BLE001 - one unit's failure is reported in its row, the run goes on
                error = f"{type(exc).__name__}: {exc}"
            status = {"unit": int(index), "path": str(unit.source), "ok": not error,
                      "seconds": time.perf_counter() - started, "error": error, "result": json.dumps(result),
                      "device": str(self.device), "node": self.node}
            for name, value in status.items():
                statuses[name].append(value)
        return statuses


STATUS_COLUMNS = ("unit", "path", "ok", "seconds", "error", "result", "device", "node")
