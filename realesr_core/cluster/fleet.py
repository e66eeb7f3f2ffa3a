"""The cluster a run uses: joining it, one upscaler per slot planned node by node, and noticing when it is gone.

A slot is one upscaler actor placed on one node: GPU nodes get one per GPU, CPU nodes one per CPUS_PER_WORKER cores,
each node by its own resources (a mixed fleet uses every node; a small node does not shrink the others' workers).
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from ..errors import RealESRError
from ..extras import import_extra

CPUS_PER_WORKER = 4  # a CPU upscaler's threads, where a node has that many
LOST_AFTER_SECONDS = 10.0  # the head unreachable this long is a lost cluster (Ray itself waits 60 s, then exits)


def ray_module() -> Any:
    """Ray, or an error naming the extra that installs it."""
    return import_extra("ray", "ray", "--ray")


class ClusterLost(RealESRError):
    """The head of the cluster stopped answering: nothing more can run, and what is done stays done."""


def connect(address: str) -> bool:
    """Joins the cluster at `address` ('auto', host:port, ray://host:port), or starts a local one ('local'); an
    existing connection in this process is used as it is. Returns whether this call started it (and should end it)."""
    ray = ray_module()
    if ray.is_initialized():
        return False
    try:
        # "local" always starts a new instance (None would join whatever cluster this machine last started)
        ray.init(address=address, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError, ray.exceptions.AuthenticationError) as exc:
        # a cluster that wants a token refuses a driver without one in these same words
        hint = "" if os.environ.get("RAY_AUTH_MODE") else (
            "; if the cluster uses token authentication (`ray start` turns it on where ~/.ray/auth_token exists), "
            "set RAY_AUTH_MODE=token and give this machine the cluster's token (see docs/cluster.md)")
        raise RealESRError(f"cannot reach a Ray cluster at {address}: {last_line(exc)}{hint}") from exc
    return True


@dataclass(frozen=True)
class Slot:
    """One upscaler actor: the node it is placed on and what it asks of Ray there."""

    node: str  # Ray's node id
    cpus: float
    gpus: float


def plan_fleet(device: str | None, workers: int | None) -> list[Slot]:
    """The upscalers for the nodes of the connected cluster that are alive now (see `fleet_for`)."""
    ray = ray_module()
    return fleet_for([(node["NodeID"], node["Resources"]) for node in ray.nodes() if node["Alive"]], device, workers)


def fleet_for(nodes: list[tuple[str, dict[str, float]]], device: str | None, workers: int | None) -> list[Slot]:
    """Slots for `nodes` (id, resources). Without `device`, GPU nodes get one GPU upscaler per GPU (sharing the
    node's CPUs for decoding and encoding) and the other nodes one CPU upscaler per CPUS_PER_WORKER cores; `device`
    cuda... keeps to the GPU nodes, any other device makes CPU upscalers everywhere. `workers` sets how many in all,
    given to the nodes in proportion to what they hold: more than a node's GPUs share them, more than its CPUs share
    those. GPUs asked of a cluster without any are an error now: Ray would wait for one forever."""
    if workers is not None and workers < 1:
        raise RealESRError(f"--ray-workers must be at least 1, got {workers}")
    wants = None if device is None else ("gpu" if device.startswith("cuda") else "cpu")
    usable: list[tuple[str, str, int, float]] = []  # node, kind, GPUs, CPUs
    for node, resources in nodes:
        gpus, cpus = int(resources.get("GPU", 0)), float(resources.get("CPU", 0))
        kind = "gpu" if wants == "gpu" or (wants is None and gpus >= 1) else "cpu"
        if (kind == "gpu" and gpus >= 1) or (kind == "cpu" and cpus >= 1):
            usable.append((node, kind, gpus, cpus))
    if wants == "gpu" and not usable:
        total = sum(resources.get("CPU", 0) for _node, resources in nodes)
        raise RealESRError(f"--device {device} asks for GPUs, but the Ray cluster has none ({total:g} CPUs); Ray "
                           f"would wait for one forever. Leave --device out to upscale on the CPUs, or add nodes "
                           f"with GPUs")
    if not usable:
        raise RealESRError("the Ray cluster has no CPUs or GPUs to upscale on")
    # GPU nodes first: with fewer workers than slots, they go where one does the most
    usable.sort(key=lambda node: node[1] != "gpu")
    capacity = [gpus if kind == "gpu" else math.ceil(cpus / CPUS_PER_WORKER) for _node, kind, gpus, cpus in usable]
    counts = capacity if workers is None else _spread(workers, capacity)
    slots: list[Slot] = []
    for (node, kind, gpus, cpus), count in zip(usable, counts, strict=True):
        shared_gpu = 1 / math.ceil(count / gpus) if kind == "gpu" else 0.0
        slots += [Slot(node, share, shared_gpu) for share in _split(cpus, count)]
    return slots


def _spread(workers: int, capacity: list[int]) -> list[int]:
    """`workers` given out one at a time to the node with the most capacity per worker after taking it."""
    counts = [0] * len(capacity)
    for _ in range(workers):
        best = max(range(len(capacity)), key=lambda index: capacity[index] / (counts[index] + 1))
        counts[best] += 1
    return counts


def _split(cpus: float, count: int) -> list[float]:
    """A node's CPUs for `count` upscalers: whole cores as evenly as they go, else equal fractions (rounded down to
    Ray's 4 decimals so that they still fit)."""
    if count == 0:
        return []
    whole = int(cpus)
    if whole >= count:
        return [float(whole // count + (index < whole % count)) for index in range(count)]
    return [math.floor(cpus / count * 10_000) / 10_000] * count


def last_line(exc: BaseException) -> str:
    """The last line of an error's text: Ray puts tracebacks and banners above what went wrong."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


class HeadWatch:
    """Notices a head that stopped answering within seconds, where Ray's driver waits a minute in silence and then
    ends the process with a line from its C++ core. `check` is cheap to call often: it probes once a second."""

    def __init__(self, address: str) -> None:
        ray = ray_module()
        self.address = address
        self.head: tuple[str, int] | None = None
        if not ray.util.client.ray.is_connected():  # through Ray Client the head's own port may not be reachable
            try:
                host, port = ray.get_runtime_context().gcs_address.rsplit(":", 1)
                self.head = (host, int(port))
            except (AttributeError, ValueError, RuntimeError):
                pass
        if self.head is not None and not self.reachable():  # cannot be judged from here: watch nothing
            self.head = None
        if self.head is not None and address in ("local", "auto"):
            self.address = f"{self.head[0]}:{self.head[1]}"
        self.last_probe = 0.0
        self.unreachable_since: float | None = None

    def check(self) -> None:
        """Raises ClusterLost once the head has not answered for LOST_AFTER_SECONDS."""
        now = time.monotonic()
        if self.head is None or now - self.last_probe < 1.0:
            return
        self.last_probe = now
        if self.reachable():
            self.unreachable_since = None
            return
        self.unreachable_since = self.unreachable_since or now
        if now - self.unreachable_since >= LOST_AFTER_SECONDS:
            raise ClusterLost(f"lost the Ray cluster at {self.address}; re-run the same command to resume")

    def reachable(self) -> bool:
        """Whether the head takes a connection now (True where it is not watched)."""
        if self.head is None:
            return True
        try:
            socket.create_connection(self.head, timeout=1.0).close()
        except OSError:
            return False
        return True
