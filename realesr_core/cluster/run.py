"""`realesr upscale --ray`: the inputs cut into units, run by a fleet of upscaler actors on a Ray cluster.

The driver plans (which outputs are still to make, as which units) as the fleet asks for work, records each status
row as it comes back, joins a video's segments and writes a huge image's tiled TIFF once all their units are done,
and reports what failed. It alone writes manifests.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import RealESRError
from ..files import Leftovers, remove_temporaries
from ..jobs import TILED, VIDEO, PlannedFile, UpscaleJob, UpscalePlan, check_videos
from ..models import ModelDescriptor
from ..progress import ProgressBar, say
from .dispatch import Fleet
from .fleet import ClusterLost, HeadWatch, Slot, connect, plan_fleet, ray_module
from .units import Item, Manifest, Unit, huge_item, image_item, item_key, scan_item


@dataclass
class Outcome:
    """What a run did: outputs made, skipped as made by an earlier run, and the failed ones' status rows."""

    made: int = 0
    skipped: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)


def upscale_on_ray(model: ModelDescriptor, plan: UpscalePlan, job: UpscaleJob, address: str,
                   workers: int | None, keep_warm: float = 0.0) -> int:
    """Runs `plan` (`jobs.plan_upscale(job, model.scale)`) on the Ray cluster at `address` ('local', 'auto',
    host:port, ray://host:port) with `workers` upscalers (None: as the cluster's nodes allow), kept for the next run
    of the same model until they have been idle `keep_warm` seconds (0: they end with the run; see `Fleet`); returns
    the exit status of the `upscale` command: 0, or 1 when an input failed (each named on stderr and in the manifest).

    The plan is consumed as the fleet asks for work (a huge archive starts at once, and the driver holds only what is
    in flight), except where an output could land among the inputs (no output folder, or one overlapping an input
    folder): then it is taken whole first, so that an output that would replace an input is refused (PlanError)
    before any work, as without Ray (and so are video settings that fail every video; a streamed plan fails each
    video with them instead). A video's segments are kept for a re-run (`video.resume`), whatever the job
    says: re-running the same command is how a Ray run resumes."""
    if keep_warm < 0:
        raise RealESRError(f"--ray-keep-warm must be 0 or more seconds, got {keep_warm:g}")
    job = replace(job, video=replace(job.video, resume=True))
    planned: Iterable[PlannedFile] = plan
    if _outputs_may_meet_inputs(job):
        planned = list(plan)
        if any(entry.how == VIDEO for entry in planned) and (problems := check_videos(job)):
            raise RealESRError("; ".join(problems))  # as the plain command: before any work
        entries: Iterator[PlannedFile] = iter(planned)
        folder = _common_folder([entry.target for entry in planned if entry.target is not None])
    else:
        entries = iter(planned)
        exact = job.exact_output()
        folder = exact.parent if exact is not None else Path(job.output or ".")
    first = next(entries, None)  # nothing to do is said before a cluster is started
    if first is None:
        summary = plan.skipped.summary()
        raise RealESRError(f"no images or videos found in {', '.join(job.inputs)}" + (f" ({summary})" if summary
                                                                                     else ""))
    manifest = Manifest(folder.resolve())
    started = time.perf_counter()
    started_ray = connect(address)
    outcome = Outcome()
    slots: list[Slot] = []
    lost = False
    received: list[int] = []
    try:
        with _signals_as_interruptions() as received:
            watch = HeadWatch(address)
            slots = plan_fleet(job.device, workers)
            items = plan_items(model, itertools.chain([first], entries), job, manifest, outcome)
            run_items(items, job, slots, manifest, outcome, watch, keep_warm=keep_warm)
    except ClusterLost:
        lost = True
        raise
    except Interrupted as stop:
        say(f"realesr: interrupted; {outcome.made} output(s) were made and recorded. {stop}")
        return 128 + (received[0] if received else signal.SIGINT)  # as a shell reports a process ended by it
    finally:
        manifest.close()
        if started_ray and not lost:  # a lost cluster cannot be shut down: its processes are gone
            ray_module().shutdown()
    print(f"ray: {outcome.made} output(s) made, {outcome.skipped} already done, {len(outcome.failures)} failed in "
          f"{time.perf_counter() - started:.1f} s ({describe_fleet(slots)})")
    if summary := plan.skipped.summary():
        say(f"realesr: {summary}")
    return 1 if outcome.failures else 0


class Interrupted(RealESRError):
    """Ctrl+C (or a signal that asks the process to end: SIGTERM, SIGHUP) during a run; says what was left behind."""


@contextlib.contextmanager
def _signals_as_interruptions() -> Iterator[list[int]]:
    """While the block runs, SIGTERM and SIGHUP (`kill`, a closed terminal, a scheduler's stop) interrupt it as
    Ctrl+C does, so that the workers are stopped and what they were writing removed; the numbers received are noted
    in the list it gives. Set here, after `ray.init`: Ray puts in its own SIGTERM handler, which ends the driver at
    once with status 1 or 15 and not a word, and its calls turn whatever a handler raises into a bare
    KeyboardInterrupt, so the signal is known only from the note. Only in the main thread, where Python delivers
    signals; the previous handlers are back afterwards."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def interrupt(number: int, _frame: object) -> None:
        received.append(number)
        raise KeyboardInterrupt

    numbers = [signal.SIGTERM, *([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])]
    previous = {number: signal.signal(number, interrupt) for number in numbers}
    try:
        yield received
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _outputs_may_meet_inputs(job: UpscaleJob) -> bool:
    """Whether an output of `job` could be one of its inputs: no output folder (outputs beside the inputs), or one
    that is an input folder or holds one (an output folder inside an input folder is not searched)."""
    if job.output is None:
        return True
    exact = job.exact_output()
    root = (exact.parent if exact is not None else Path(job.output)).resolve()
    for given in map(Path, job.inputs):
        folder = (given if given.is_dir() else given.parent).resolve()
        if folder.is_relative_to(root):
            return True
    return False


def _common_folder(targets: list[Path]) -> Path:
    """The folder holding every target (the manifest's), or the current one without any."""
    return Path(os.path.commonpath([target.resolve().parent for target in targets])) if targets else Path.cwd()


def plan_items(model: ModelDescriptor, planned: Iterable[PlannedFile], job: UpscaleJob, manifest: Manifest,
               outcome: Outcome) -> Iterator[Item]:
    """The items still to make, one planned input at a time as the fleet asks for work; those an earlier run made
    are counted in `outcome.skipped`, and inputs that cannot be made (a problem the plan found, a video that cannot be
    read or encoded as asked) are failed rows. Paths are made absolute: the workers may run elsewhere."""
    video_problems: list[str] | None = None  # what fails every video, found at the first one
    for entry in planned:
        source = entry.source.resolve()
        target = entry.target.resolve() if entry.target is not None else None
        if entry.renamed:
            say(f"{entry.source} is written as {entry.target.name}: it {entry.renamed}", file=sys.stdout)
        try:
            if entry.problem:
                raise RealESRError(entry.problem)
            key = item_key(source, target, job)
            if manifest.done(key, target):
                outcome.skipped += 1
                continue
            if entry.how == VIDEO:
                video_problems = check_videos(job) if video_problems is None else video_problems
                if video_problems:
                    raise RealESRError("; ".join(video_problems))
                item = scan_item(model, source, target, job, key)
            elif entry.how == TILED:
                item = huge_item(model, source, target, job, key)
            else:
                item = image_item(source, target, key, entry.shape[0] * entry.shape[1])
        except RealESRError as exc:
            _record_failure(manifest, outcome, key=item_key(source, target, job),
                            status={"path": str(source), "target": str(target), "ok": False, "seconds": 0.0,
                                    "error": str(exc), "nodes": []})
            continue
        yield item


@dataclass
class _Open:
    """An item whose units are not all back yet."""

    left: int
    seconds: float = 0.0
    interrupted: bool = False  # a worker died or was lost while running one of its units
    nodes: set[str] = field(default_factory=set)
    error: str = ""


def run_items(items: Iterable[Item], job: UpscaleJob, slots: list[Slot], manifest: Manifest, outcome: Outcome,
              watch: HeadWatch | None = None, keep_warm: float = 0.0) -> Outcome:
    """Runs every unit of `items` (pulled as the fleet needs work) on one upscaler per slot, finishing each item once
    its units are back: joined where it has parts, recorded in `manifest`, counted in `outcome`; a first step (a
    video's scan) is followed by the item it makes, whose units go out before new items'. The driver holds only the
    items in flight. Ctrl+C stops the workers and raises Interrupted saying what was left."""
    bar = ProgressBar("ray", "units")
    in_flight: dict[int, tuple[Item, Unit]] = {}  # a unit's position in the stream -> its item and itself
    open_items: dict[int, _Open] = {}
    next_steps: deque[tuple[Item, Any]] = deque()  # first steps done, with their results
    counts = {"planned": 0, "done": 0, "failed": 0, "first steps": 0}  # first steps: those in flight
    planning = True
    leftovers = Leftovers()

    def following() -> Iterator[Item | None]:
        """The items to run: those that first steps now back make, before new ones; None while nothing can be
        handed out until a first step in flight is back."""
        fresh = iter(items)
        while True:
            if next_steps:
                first, result = next_steps.popleft()
                try:
                    made = first.then(result)
                except (RealESRError, OSError) as exc:  # a video FFmpeg cannot encode as asked, a full disk
                    _record_failure(manifest, outcome, first.key, _status(first, _Open(0, error=str(exc))))
                    continue
                yield made
            elif (item := next(fresh, None)) is not None:
                yield item
            elif counts["first steps"]:
                yield None
            else:
                return

    def units() -> Iterator[Unit | None]:
        nonlocal planning
        for item in following():
            if item is None:
                yield None
                continue
            if not item.units:  # every unit done by an earlier run: only the join is left
                _close(item, _Open(0), manifest, outcome, leftovers)
                continue
            open_items[id(item)] = _Open(len(item.units))
            counts["first steps"] += item.then is not None
            for unit in item.units:
                in_flight[counts["planned"]] = (item, unit)
                counts["planned"] += 1
                yield unit
        planning = False

    fleet = Fleet(job, slots, watch, keep_warm)
    try:
        with fleet:
            for status in fleet.run(units()):
                item, unit = in_flight.pop(status["unit"])
                state = open_items[id(item)]
                state.seconds += status["seconds"]
                state.nodes.add(status["node"])
                if status["unit"] in fleet.interrupted:
                    fleet.interrupted.discard(status["unit"])
                    state.interrupted = True
                if status["ok"]:
                    unit.record(status["result"])
                    counts["done"] += 1
                else:
                    where = "" if unit.label == item.source.name else f"{unit.label}: "
                    state.error = state.error or f"{where}{status['error']}"
                    counts["failed"] += 1
                state.left -= 1
                if state.left == 0:
                    counts["first steps"] -= item.then is not None
                    if item.then is not None and not state.error:
                        next_steps.append((item, status["result"]))
                        open_items.pop(id(item))
                    else:
                        _close(item, open_items.pop(id(item)), manifest, outcome, leftovers)
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


def _close(item: Item, state: _Open, manifest: Manifest, outcome: Outcome, leftovers: Leftovers) -> None:
    """An item whose units are all back: a failed row, or its parts joined (on the driver: one writer per output)
    and a made row, with the temporaries that killed writers left of it removed."""
    status = _status(item, state)
    if not state.error:
        try:
            if item.finish is not None:
                item.finish()
        except RealESRError as exc:
            status["error"] = str(exc)
    if status["error"]:
        _record_failure(manifest, outcome, item.key, status)
        return
    if state.interrupted:  # left by a worker of this run that died or was lost while it wrote
        remove_temporaries(item.target)
    else:  # left by an earlier run that was killed
        leftovers.remove(item.target)
    manifest.add(item.key, {**status, "ok": True})
    outcome.made += 1
    say(f"{item.source} -> {item.target}", file=sys.stdout)


def _status(item: Item, state: _Open) -> dict[str, Any]:
    """An item's manifest row, failed unless it is made ok."""
    return {"path": str(item.source), "target": str(item.target), "ok": False, "seconds": round(state.seconds, 3),
            "error": state.error, "nodes": sorted(state.nodes)}


def _record_failure(manifest: Manifest, outcome: Outcome, key: str, status: dict[str, Any]) -> None:
    manifest.add(key, status)
    outcome.failures.append(status)
    say(f"realesr: error: {status['path']}: {status['error']}")


def describe_fleet(slots: list[Slot]) -> str:
    """'3 worker(s) on 2 node(s): 1 GPU, 2 CPU'."""
    gpu = sum(1 for slot in slots if slot.gpus)
    return (f"{len(slots)} worker(s) on {len({slot.node for slot in slots})} node(s): {gpu} GPU, "
            f"{len(slots) - gpu} CPU")
