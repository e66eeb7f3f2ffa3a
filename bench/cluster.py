"""Benchmark: 40 small photos through plain `realesr upscale` and through `--ray` with 1 and 2 workers.

    python bench/cluster.py                                # 40 crops of 128x128, RealESRGAN_x4plus, CPU
    python bench/cluster.py --model realesr-animevideov3 --size 256 --rounds 3

Every row runs the command line in this process into a fresh folder (a shared one would be skipped as done); rows
alternate, round after round, and each row's best round is compared, since other work on the machine slows down
whichever row it meets (two OpenMP threads lose far more than one to a busy core). The local Ray is started once,
before the rows, and its start-up is reported on its own line; each Ray row still includes starting its actors and
loading the model in them, as a real run does. The Ray rows' outputs are checked to be the plain run's bytes. Run it
alone: the rows compete for the same cores with anything else.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from realesr_core import load_model  # noqa: E402
from realesr_core.cli import main  # noqa: E402


def make_photos(folder: Path, size: int, count: int) -> None:
    from PIL import Image
    from skimage import data

    photo = data.astronaut()
    folder.mkdir()
    for index in range(count):
        top, left = 20 + 9 * (index // 8), 20 + 40 * (index % 8)
        Image.fromarray(photo[top : top + size, left : left + size]).save(folder / f"photo{index:02d}.png")


def timed_run(arguments: list[str]) -> float:
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        status = main(arguments)
    if status != 0:
        raise SystemExit(f"realesr {' '.join(arguments)} failed ({status})")
    return time.perf_counter() - started


def outputs(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in folder.iterdir() if not path.name.startswith(".")}


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="RealESRGAN_x4plus")
    parser.add_argument("--size", type=int, default=128, help="side of each photo in pixels")
    parser.add_argument("--count", type=int, default=40, help="how many photos")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of all rows, interleaved; the best is shown")
    args = parser.parse_args()
    import ray

    names = ["plain upscale", "--ray, 1 worker", "--ray, 2 workers"]
    seconds: dict[str, list[float]] = {name: [] for name in names}
    same = {name: "-" for name in names}
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary) / "photos"
        make_photos(folder, args.size, args.count)
        common = ["upscale", str(folder), "-m", args.model]
        load_model(args.model)  # converted into the cache now, not inside the first row
        started = time.perf_counter()
        ray.init(address="local", logging_level="warning")
        start_up = time.perf_counter() - started
        try:
            for round_ in range(args.rounds):
                plain = Path(temporary) / f"plain{round_}"
                seconds[names[0]].append(timed_run([*common, "-o", str(plain)]))
                for workers, name in ((1, names[1]), (2, names[2])):
                    out = Path(temporary) / f"ray{workers}-{round_}"
                    seconds[name].append(timed_run([*common, "-o", str(out), "--ray", "--ray-workers", str(workers)]))
                    same[name] = "yes" if outputs(out) == outputs(plain) and same[name] != "NO" else "NO"
        finally:
            ray.shutdown()
    print(f"{args.count} photos of {args.size}x{args.size}, {args.model}, best of {args.rounds} interleaved rounds; "
          f"Ray {ray.__version__} local start-up {start_up:.1f} s (not in the rows)\n")
    print("| run | seconds (each round) | images/s | vs plain | same bytes as plain |")
    print("|---|---|---|---|---|")
    baseline = min(seconds[names[0]])
    for name in names:
        best = min(seconds[name])
        rounds = " / ".join(f"{value:.1f}" for value in seconds[name])
        print(f"| {name} | {best:.1f} ({rounds}) | {args.count / best:.2f} | {best / baseline - 1:+.0%} | {same[name]} |")


if __name__ == "__main__":
    run()
