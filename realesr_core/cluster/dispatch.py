"""Units handed to a fleet of upscaler actors, as each one frees up, with bounded retries.

Ray Core actors, one per `Slot` (`max_restarts=-1`: Ray starts a worker again wherever it died, loading the model
again; `max_task_retries=0`: a task whose worker died comes back here as an error instead of being retried by Ray
without end). The driver then decides:

- a unit that raised is run once more (RETRIES), then reported with its error;
- units whose worker process died beside others (a parcel, or the next parcel queued on the same worker) run again
  alone, each on an otherwise idle worker; one whose worker dies while it runs alone DEATHS_ALLOWED times is
  reported as having killed its worker (a decoder crash, the memory killer), and the run goes on;
- units on a node that was lost are simply run again elsewhere, as are those in flight when the head stops
  answering for a moment.

Small images travel in parcels (by pixel count), so that a worker's per-call cost is paid once for many of them;
their rows stream back as they are done (a quarter of a second's worth together). Units are pulled from their
iterator only as workers need them: planning may be lazy, and the driver holds only what is in flight.

Ray Data's `map_batches` (used before) fits less well: an errored block is dropped under `max_errored_blocks` without
saying which rows it held or why, its actor pool is one shape for all actors (per-actor resources only through the
experimental `ray_remote_args_fn`), and its input is a list made before the first unit runs. Here each unit's fate is
known, a mixed fleet is one actor per slot, and the plan is consumed as it is made.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import RealESRError
from ..files import remove_temporaries
from ..jobs import UpscaleJob
from .fleet import HeadWatch, Slot, last_line, ray_module
from .units import ImageUnit, Unit

PARCEL_PIXELS = 1 << 18  # small images travel together up to 512x512 pixels of input...
PARCEL_UNITS = 32  # ...and this many at most, so that the end of a run still spreads over the workers
TASKS_PER_WORKER = 2  # parcels queued per worker: the next is there when one ends
RETRIES = 1  # a unit that raised runs once more before it is reported
DEATHS_ALLOWED = 2  # a unit whose worker died this many times while running it alone is reported
STOP_SECONDS = 10.0  # how long stopping waits for killed workers to be gone before it removes their temporaries
SLOW_START_SECONDS = 60.0  # no worker ready after this long: say what the run is waiting for
WARM_NAMESPACE = "realesr"  # the Ray namespace of warm workers

Parcel = list[tuple[int, Unit]]
logger = logging.getLogger("realesr.cluster")


def parcels(units: Iterable[Unit | None]) -> Iterator[Parcel | None]:
    """The units numbered in the order they come: whole images packed together, up to PARCEL_PIXELS input pixels or
    PARCEL_UNITS images; every other unit (a video's scan or segment, a row of tiles) alone. A None in `units`
    (nothing more can be planned until a unit in flight is back) hands out what is packed and is passed on."""
    pending: Parcel = []
    total = 0
    index = 0
    for unit in units:
        if unit is None:
            if pending:
                yield pending
                pending, total = [], 0
            yield None
            continue
        if not isinstance(unit, ImageUnit):
            yield [(index, unit)]
            index += 1
            continue
        pending.append((index, unit))
        index += 1
        total += unit.pixels
        if total >= PARCEL_PIXELS or len(pending) >= PARCEL_UNITS:
            yield pending
            pending, total = [], 0
    if pending:
        yield pending


@dataclass
class _Worker:
    handle: Any
    slot: Slot
    starting: Any  # the pending `ready` call of a new or restarted worker; None once it answered
    node: str = ""
    running: dict[Any, Parcel] = field(default_factory=dict)  # streaming task -> the units it has not reported
    alone: Any = None  # the task running a suspect unit with nothing queued beside it
    broken: str = ""  # why it can never work (its model did not load)
    failed_starts: int = 0
    warm: bool = False  # kept for the next run (see `Fleet`)

    @property
    def ready(self) -> bool:
        return self.starting is None and not self.broken


class Fleet:
    """The upscalers of one run, one per slot, started at once (each loads the model). Use as a context manager:
    leaving it stops them, and a stop before the end (an interruption, an error) removes the temporaries of the
    units they were writing once they are gone; `clean` says whether that could be done.

    With `keep_warm` (seconds), the workers are kept after a run that ends with nothing running, for the next run of
    the same model on the same nodes (`warm_name`), which then starts without waiting for processes and models: they
    hold their CPUs and GPUs on the cluster until they have been idle that long. A warm worker another run holds is
    not shared: this run starts its own for that slot."""

    def __init__(self, job: UpscaleJob, slots: list[Slot], watch: HeadWatch | None = None,
                 keep_warm: float = 0.0) -> None:
        ray = self.ray = ray_module()
        from .worker import Upscaler

        self.actor = ray.remote(Upscaler)
        self.job = job
        self.keep_warm = keep_warm
        self.token = uuid.uuid4().hex if keep_warm else ""  # this run, to the warm workers it holds
        self.watch = watch
        self.workers: list[_Worker] = []
        for index, slot in enumerate(slots):
            handle = self._start(slot, warm_name(job, slot, index) if keep_warm else None)
            self.workers.append(_Worker(handle, slot, self._ready(handle), warm=bool(keep_warm)))
        self.clean = True
        self.interrupted: set[int] = set()  # units whose worker died or was lost while they ran: they may have left
        # temporaries beside what they were writing
        self.started = time.monotonic()
        self.streaming = not ray.util.client.ray.is_connected()  # Ray Client has no streaming calls

    def _start(self, slot: Slot, warm: str | None) -> Any:
        """An upscaler on `slot`: this run's own, or the warm one named `warm` (made if there is none)."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        kept = {} if warm is None else {"name": warm, "namespace": WARM_NAMESPACE, "lifetime": "detached",
                                        "get_if_exists": True}
        return self.actor.options(
            num_cpus=slot.cpus, num_gpus=slot.gpus, max_restarts=-1, max_task_retries=0,
            # soft: a worker whose node was lost starts again on another one with room
            scheduling_strategy=NodeAffinitySchedulingStrategy(slot.node, soft=True),
            **kept).remote(self.job, self.keep_warm if warm is not None else 0.0)

    def _ready(self, handle: Any) -> Any:
        """A call that answers once the worker is up (and, for a warm one, says whether this run holds it): it waits
        through Ray's restarts of the worker, and fails only when the worker can never start (its `__init__` raised)
        or was killed."""
        return handle.ready.options(max_task_retries=-1).remote(self.token, self.keep_warm)

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def run(self, units: Iterable[Unit | None]) -> Iterator[dict[str, Any]]:
        """Runs `units`, pulled as workers need them (a None: none to hand out until a unit's row is back); yields
        one status row per unit (unit: its position in `units`, Nones not counted, path, ok, seconds, error, result,
        device, node) as they end, in any order. Every unit gets exactly one row."""
        fresh = parcels(units)
        waiting: deque[Parcel] = deque()  # parcels to run again, before new ones
        suspects: deque[tuple[int, Unit]] = deque()  # units whose worker died beside others: each runs alone
        tries: dict[int, int] = {}
        deaths: dict[int, int] = {}
        exhausted = False
        warned_slow = False

        def next_parcel() -> Parcel | None:
            """The next parcel to hand out; None where there is none now."""
            nonlocal exhausted
            if waiting:
                return waiting.popleft()
            if not exhausted:
                try:
                    return next(fresh)
                except StopIteration:
                    exhausted = True
            return None

        while True:
            for worker in sorted((w for w in self.workers if w.ready), key=lambda w: len(w.running)):
                if suspects and not worker.running:
                    worker.alone = self._submit(worker, [suspects.popleft()])
                    continue
                if suspects:
                    continue  # no new parcels while suspects wait: each worker takes one alone once it is idle
                while worker.alone is None and len(worker.running) < TASKS_PER_WORKER:
                    parcel = next_parcel()
                    if parcel is None:
                        break
                    self._submit(worker, parcel)
            tasks = {task: worker for worker in self.workers for task in worker.running}
            starting = {worker.starting: worker for worker in self.workers if worker.starting is not None}
            if not tasks and exhausted and not waiting and not suspects:
                return
            if not tasks and not starting:
                reasons = sorted({worker.broken for worker in self.workers if worker.broken})
                raise RealESRError(f"the Ray run stopped: no upscaler could start: {'; '.join(reasons)}")
            if not warned_slow and not tasks and time.monotonic() - self.started > SLOW_START_SECONDS:
                warned_slow = True
                logger.warning("realesr: waiting for the Ray cluster to start %d upscaler(s) (%s); is it busy with "
                               "other work?", len(starting), ", ".join(_describe(w.slot) for w in starting.values()))
            done, _ = self.ray.wait([*tasks, *starting], num_returns=1, timeout=1.0)
            if self.watch is not None:
                self.watch.check()
            for ref in done:
                if ref in starting:
                    self._started(starting[ref], ref)
                    continue
                worker = tasks[ref]
                parcel = worker.running[ref]  # the units not reported yet
                try:
                    statuses = self.ray.get(next(ref) if self.streaming else ref)
                except StopIteration:  # every row is in: the call is over
                    statuses = []
                except self.ray.exceptions.RayTaskError as exc:  # the call itself raised: the rest failed with it
                    statuses = [_failed(index, unit, last_line(exc), worker.node) for index, unit in parcel]
                except self.ray.exceptions.RayError:  # the worker process died, or its node (Ray's words say no more)
                    alone = self._end(worker, ref)
                    yield from self._lost(worker, parcel, alone, waiting, suspects, deaths)
                    continue
                units = dict(parcel)
                parcel[:] = [(index, unit) for index, unit in parcel
                             if index not in {status["unit"] for status in statuses}]
                if not statuses or not parcel or not self.streaming:
                    self._end(worker, ref)
                for status in statuses:
                    index = status["unit"]
                    if status["ok"]:
                        yield status
                        continue
                    tries[index] = tries.get(index, 0) + 1
                    if tries[index] <= RETRIES:
                        waiting.append([(index, units[index])])
                    else:
                        yield {**status, "error": f"{status['error']} (failed {tries[index]} times)"}

    def _end(self, worker: _Worker, task: Any) -> bool:
        """Forgets a call that is over; returns whether it was running a suspect alone."""
        worker.running.pop(task, None)
        alone = worker.alone is not None and worker.alone == task
        if alone:
            worker.alone = None
        return alone

    def _submit(self, worker: _Worker, parcel: Parcel) -> Any:
        """Starts `parcel` on `worker`: a streaming call, the units' rows coming back as they are done (see
        `Upscaler.run`; through Ray Client, which cannot stream, all rows at the end)."""
        if self.streaming:
            task = worker.handle.run.options(num_returns="streaming").remote(parcel, self.job)
        else:
            task = worker.handle.run_all.remote(parcel, self.job)
        worker.running[task] = list(parcel)
        return task

    def _started(self, worker: _Worker, ref: Any) -> None:
        """A worker answered its `ready` call: it can take work, or it can never (its model failed to load)."""
        worker.starting = None
        try:
            answer = self.ray.get(ref)
        except self.ray.exceptions.RayActorError as exc:
            worker.failed_starts += 1
            if exc.actor_init_failed or worker.failed_starts > 3:
                worker.broken = last_line(exc)
            else:  # died again while restarting (its node lost meanwhile): ask once more
                worker.starting = self._ready(worker.handle)
            return
        if not answer["held"]:  # a warm worker that another run holds: this run starts its own
            worker.handle, worker.warm = self._start(worker.slot, None), False
            worker.starting = self._ready(worker.handle)
            return
        worker.node = answer["node"]
        worker.failed_starts = 0

    def _lost(self, worker: _Worker, parcel: Parcel, alone: bool, waiting: deque[Parcel],
              suspects: deque[tuple[int, Unit]], deaths: dict[int, int]) -> Iterator[dict[str, Any]]:
        """A task whose worker died: the units go back to run again, or are reported (see the module's rules)."""
        self.interrupted.update(index for index, _unit in parcel)
        if worker.starting is None and not worker.broken:
            worker.starting = self._ready(worker.handle)  # no new work until Ray has started it again
        # the head first: asking it about nodes while it is gone would block for a minute
        if (self.watch is not None and not self.watch.reachable()) or not self._node_alive(worker.node):
            waiting.appendleft(parcel)  # not the units' doing
            return
        for index, unit in parcel:
            if not alone:
                suspects.append((index, unit))
                continue
            deaths[index] = deaths.get(index, 0) + 1
            if deaths[index] < DEATHS_ALLOWED:
                suspects.append((index, unit))
                continue
            yield _failed(index, unit, f"the worker process died while upscaling it, {deaths[index]} times "
                                       f"running it alone (a crash in a decoder or the model, or killed for memory: "
                                       f"the Ray logs of node {worker.node[:12]} say which)", worker.node)

    def _node_alive(self, node: str) -> bool:
        try:
            return any(entry["NodeID"] == node and entry["Alive"] for entry in self.ray.nodes())
        except Exception:  # noqa: BLE001 - the head not answering: the watch decides what that means
            return True

    def stop(self) -> None:
        """Kills the workers (warm ones that are idle are kept, and given back for the next run); those stopped
        mid-unit leave hidden temporaries of the files they were writing, which are removed once the workers are gone
        (`clean` False where that could not be confirmed in STOP_SECONDS)."""
        writing = [unit for worker in self.workers for parcel in worker.running.values() for _index, unit in parcel
                   if unit.written is not None]
        if self.watch is not None and not self.watch.reachable():  # the cluster is gone, and its workers with it
            self.clean = not writing
            return
        kept = [worker for worker in self.workers
                if worker.warm and not worker.running and worker.starting is None and not worker.broken]
        if kept and not any(worker.running for worker in self.workers):
            try:
                self.ray.get([worker.handle.release.remote(self.token) for worker in kept], timeout=STOP_SECONDS)
            except Exception:  # noqa: BLE001 - not given back: they end once idle for keep_warm seconds
                pass
        else:
            kept = []
        for worker in self.workers:
            if worker in kept:
                continue
            try:
                self.ray.kill(worker.handle, no_restart=True)
            except Exception:  # noqa: BLE001 - the cluster is gone: so are its workers, or they soon will be
                self.clean = not writing
        if not writing or not self.clean:
            return
        busy = [worker for worker in self.workers if worker.running]
        deadline = time.monotonic() + STOP_SECONDS
        while busy and time.monotonic() < deadline:  # a killed worker's calls fail once it is gone
            busy = [worker for worker in busy if _answered(self.ray, worker.handle.ready.remote(self.token))]
            if busy:
                time.sleep(0.2)
        if busy:
            self.clean = False
            return
        for unit in writing:
            remove_temporaries(unit.written)


def end_warm_workers() -> int:
    """Ends the warm workers of every run on the connected cluster now, rather than once idle (their CPUs and GPUs
    are back at once); returns how many there were."""
    ray = ray_module()
    names = [actor["name"] for actor in ray.util.list_named_actors(all_namespaces=True)
             if actor["namespace"] == WARM_NAMESPACE]
    for name in names:
        with contextlib.suppress(ValueError):  # ended meanwhile
            ray.kill(ray.get_actor(name, namespace=WARM_NAMESPACE), no_restart=True)
    return len(names)


def warm_name(job: UpscaleJob, slot: Slot, index: int) -> str:
    """The name a warm worker is kept under: what it loaded (the model, and its file's size and time where it is a
    file: retrained weights are another model), the code it runs (an upgrade is another worker) and where it runs; a
    run that differs in any of these starts workers of its own."""
    model = Path(job.model)
    stamp = [job.model, *((model.stat().st_size, model.stat().st_mtime_ns) if model.is_file() else ())]
    described = json.dumps([_code_stamp(), stamp, job.cache_dir, job.device, slot.node, slot.cpus, slot.gpus, index])
    return f"realesr-upscaler-{hashlib.sha256(described.encode()).hexdigest()[:24]}"


@functools.lru_cache(maxsize=1)
def _code_stamp() -> str:
    """The library's source files as they are now: name, size and modification time of each."""
    root = Path(__file__).resolve().parents[1]
    files = sorted(root.rglob("*.py"))
    described = [(str(path.relative_to(root)), path.stat().st_size, path.stat().st_mtime_ns) for path in files]
    return hashlib.sha256(json.dumps(described).encode()).hexdigest()


def _failed(index: int, unit: Unit, error: str, node: str) -> dict[str, Any]:
    """The status row of a unit that has no worker's row."""
    return {"unit": index, "path": str(unit.source), "ok": False, "seconds": 0.0, "error": error,
            "result": [], "device": "", "node": node}


def _answered(ray: Any, ref: Any) -> bool:
    """Whether a probe of a killed worker found it still alive."""
    try:
        ray.get(ref, timeout=1.0)
    except ray.exceptions.GetTimeoutError:
        return True
    except ray.exceptions.RayError:
        return False
    return True


def _describe(slot: Slot) -> str:
    return f"{slot.gpus:g} GPU + {slot.cpus:g} CPU" if slot.gpus else f"{slot.cpus:g} CPU"
