"""Benchmark: plain `realesr upscale` against `--ray` on N one-CPU nodes, for many small images and for photos, and
the Ray driver's peak memory for a run over many tiny inputs.

    python bench/cluster.py
    python bench/cluster.py --nodes 2 --rounds 2 --small 2000 --photos 40 --driver-inputs 100000

Cases (issue 24): 2,000 images of 16x16, and 40 photos of one megapixel (crops of a real photo). Rows, interleaved
round after round (each row's best round is compared, since other work on the machine slows whichever row it meets):
plain with one thread (the baseline: one single-thread process), plain with N threads (the same total threads as the
Ray row), and Ray on N nodes of one CPU each: a local `ray.cluster_utils.Cluster` whose head has no CPUs, started
once before the rows; each Ray row still includes starting its workers and loading the model in them, as a real run
does. Last, the run after one with `--ray-keep-warm`, which finds the workers that run kept (they are ended after
it, so that the next round's cold Ray row finds the CPUs free). Goal: the Ray row at least 0.8 x N times as fast as
the single-thread plain row. The Ray rows' outputs are checked to be the plain rows' bytes.

Driver memory: `realesr upscale --ray` run as a process of its own against the same cluster, over 1 tiny input and
over --driver-inputs tiny inputs (8x8 PNGs in sub-folders of 1,000, the tree mirrored in the output folder); its peak
RSS (VmHWM) for each, and the difference per input (planning streams: it should stay near zero).
Run it alone: the rows compete for the same cores with anything else.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from realesr_core import load_model  # noqa: E402
from realesr_core.cli import main  # noqa: E402
from realesr_core.cluster import end_warm_workers  # noqa: E402

# The peak is the process's own high-water mark (VmHWM): getrusage's ru_maxrss carries over the RSS of the process
# that started it (Linux folds the parent's peak into it at exec), which made this driver's peak read 1.5 to 1.8 GB:
# the benchmark's own, after its photo rows.
DRIVER = """
import sys
from realesr_core.cli import main
status = main(sys.argv[1:])
peak = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(f"peak-rss-kib {peak} status {status}")
"""


def make_images(folder: Path, count: int, size: int, per_folder: int = 0) -> Path:
    """`count` different crops of a real photo, `size` pixels square (resized from a larger crop above 256); in
    sub-folders of `per_folder` images where that is set, as an archive keeps them."""
    import numpy as np
    from PIL import Image
    from skimage import data

    photo = data.astronaut()
    folder.mkdir(parents=True)
    crop = min(size, 256)
    rng = np.random.default_rng(0)
    for index in range(count):
        top, left = rng.integers(0, photo.shape[0] - crop), rng.integers(0, photo.shape[1] - crop)
        image = Image.fromarray(photo[top : top + crop, left : left + crop])
        if size != crop:
            image = image.resize((size, size), Image.LANCZOS)
        place = folder / f"part{index // per_folder:04d}" if per_folder else folder
        place.mkdir(exist_ok=True)
        image.save(place / f"image{index:06d}.png", compress_level=1)
    return folder


def timed_run(arguments: list[str], threads: int | None = None) -> float:
    """One `realesr` command in this process (its output hidden); plain rows with `threads` torch threads."""
    if threads is not None:
        import torch

        os.environ["OMP_NUM_THREADS"] = str(threads)  # the command keeps a count set here
        torch.set_num_threads(threads)
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        status = main(arguments)
    if status != 0:
        raise SystemExit(f"realesr {' '.join(arguments)} failed ({status})")
    return time.perf_counter() - started


def outputs(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in folder.iterdir() if not path.name.startswith(".")}


def throughput(case: str, folder: Path, count: int, model: str, nodes: int, rounds: int, work: Path) -> None:
    names = ["plain, 1 thread", f"plain, {nodes} threads", f"--ray, {nodes} one-CPU nodes",
             "--ray --ray-keep-warm, the next run"]
    seconds: dict[str, list[float]] = {name: [] for name in names}
    same = "yes"
    for round_ in range(rounds):
        plain = work / f"{case}-plain1-{round_}"
        seconds[names[0]].append(timed_run(["upscale", str(folder), "-m", model, "-o", str(plain)], threads=1))
        out = work / f"{case}-plainN-{round_}"
        seconds[names[1]].append(timed_run(["upscale", str(folder), "-m", model, "-o", str(out)], threads=nodes))
        out = work / f"{case}-ray-{round_}"
        seconds[names[2]].append(timed_run(["upscale", str(folder), "-m", model, "-o", str(out), "--ray"]))
        if outputs(out) != outputs(plain):
            same = "NO"
        warm = ["upscale", str(folder), "-m", model, "--ray", "--ray-keep-warm", "600", "-o"]
        timed_run([*warm, str(work / f"{case}-warm-first-{round_}")])  # starts the workers and keeps them
        out = work / f"{case}-warm-{round_}"
        seconds[names[3]].append(timed_run([*warm, str(out)]))
        end_warm_workers()  # so that the next round's cold Ray row finds the CPUs free
        if outputs(out) != outputs(plain):
            same = "NO"
    baseline = min(seconds[names[0]])
    print(f"\n{case}: {count} inputs, {model}, best of {rounds} interleaved round(s); goal: Ray >= "
          f"{0.8 * nodes:.1f}x the single-thread plain run\n")
    print("| run | seconds (each round) | inputs/s | speed vs plain, 1 thread |")
    print("|---|---|---|---|")
    for name in names:
        best = min(seconds[name])
        rounds_text = " / ".join(f"{value:.1f}" for value in seconds[name])
        print(f"| {name} | {best:.1f} ({rounds_text}) | {count / best:.1f} | {baseline / best:.2f}x |")
    print(f"\nRay outputs the same bytes as plain: {same}")


def driver_memory(address: str, model: str, inputs: int, work: Path) -> None:
    environment = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    peaks = {}
    for count in (1, inputs):
        folder = make_images(work / f"tiny{count}", count, 8, per_folder=1000)
        started = time.perf_counter()
        finished = subprocess.run([sys.executable, "-c", DRIVER, "upscale", str(folder), "-m", model, "-o",
                                   f"{work / f'tiny{count}-out'}/", "--ray", address], capture_output=True, text=True,
                                  env=environment)
        line = [line for line in finished.stdout.splitlines() if line.startswith("peak-rss-kib")]
        if not line or not line[0].endswith("status 0"):
            raise SystemExit(f"the driver over {count} inputs failed:\n{finished.stderr[-3000:]}")
        peaks[count] = (int(line[0].split()[1]), time.perf_counter() - started)
    print(f"\nRay driver's peak RSS ({model}, 8x8 PNG inputs in folders of 1,000, a process of its own)\n")
    print("| inputs | peak RSS | seconds |")
    print("|---|---|---|")
    for count, (kib, seconds) in peaks.items():
        print(f"| {count:,} | {kib / 1024:.0f} MiB | {seconds:.0f} |")
    print(f"\nper input: {(peaks[inputs][0] - peaks[1][0]) / (inputs - 1):.2f} KiB")


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="realesr-animevideov3", help="a bundled model (the default is the "
                        "fastest, so that the photo case runs in minutes on CPUs)")
    parser.add_argument("--nodes", type=int, default=2, help="Ray nodes of one CPU each")
    parser.add_argument("--small", type=int, default=2000, help="how many 16x16 images (0: skip)")
    parser.add_argument("--photos", type=int, default=40, help="how many 1-megapixel photos (0: skip)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of all rows, interleaved; the best is shown")
    parser.add_argument("--driver-inputs", type=int, default=100_000, help="tiny inputs for the driver's memory "
                        "(0: skip)")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local test cluster: no token written to ~/.ray
    import ray
    from ray.cluster_utils import Cluster

    load_model(args.model)  # converted into the cache now, not inside the first row
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        started = time.perf_counter()
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
        for _ in range(args.nodes):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, logging_level="warning")
        print(f"Ray {ray.__version__}: a head without CPUs and {args.nodes} nodes of one CPU, started in "
              f"{time.perf_counter() - started:.1f} s (not in the rows); {os.cpu_count()} cores on this machine, "
              f"load average {os.getloadavg()[0]:.1f} at the start")
        try:
            if args.small:
                folder = make_images(work / "small", args.small, 16)
                throughput("small images (16x16)", folder, args.small, args.model, args.nodes, args.rounds, work)
            if args.photos:
                folder = make_images(work / "photos", args.photos, 1024)
                throughput("photos (1024x1024)", folder, args.photos, args.model, args.nodes, args.rounds, work)
            if args.driver_inputs:
                driver_memory(cluster.address, args.model, args.driver_inputs, work)
        finally:
            ray.shutdown()
            cluster.shutdown()


if __name__ == "__main__":
    run()
