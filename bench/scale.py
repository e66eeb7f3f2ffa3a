"""Benchmark: 40 small photos through plain `realesr upscale` and through `--ray` with 1 and 2 workers.

    python bench/scale.py                                  # 40 crops of 96x96, RealESRGAN_x4plus, CPU
    python bench/scale.py --model realesr-animevideov3 --size 128

Every row runs the command line in this process into a fresh folder (a shared one would be skipped as done). The
local Ray is started once before the Ray rows and its start-up is reported on its own line; each Ray row still
includes starting its actors and loading the model in them, as a real run does. The Ray rows' outputs are checked to
be the plain run's bytes. Run it alone: the rows compete for the same cores with anything else.
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

COUNT = 40


def make_photos(folder: Path, size: int) -> None:
    from PIL import Image
    from skimage import data

    photo = data.astronaut()
    folder.mkdir()
    for index in range(COUNT):
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
    parser.add_argument("--size", type=int, default=96, help="side of each photo in pixels")
    args = parser.parse_args()
    import ray

    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary) / "photos"
        make_photos(folder, args.size)
        common = ["upscale", str(folder), "-m", args.model]
        load_model(args.model)  # converted into the cache now, not inside the first row
        plain_seconds = timed_run([*common, "-o", str(Path(temporary) / "plain")])
        started = time.perf_counter()
        ray.init(address="local", logging_level="warning")
        start_up = time.perf_counter() - started
        rows = [("plain upscale", plain_seconds, "-")]
        try:
            for workers in (1, 2):
                out = Path(temporary) / f"ray{workers}"
                seconds = timed_run([*common, "-o", str(out), "--ray", "--ray-workers", str(workers)])
                same = "yes" if outputs(out) == outputs(Path(temporary) / "plain") else "NO"
                rows.append((f"--ray, {workers} worker(s)", seconds, same))
        finally:
            ray.shutdown()
    print(f"{COUNT} photos of {args.size}x{args.size}, {args.model}; Ray {ray.__version__} local start-up "
          f"{start_up:.1f} s (not in the rows)\n")
    print("| run | seconds | images/s | vs plain | same bytes as plain |")
    print("|---|---|---|---|---|")
    for name, seconds, same in rows:
        print(f"| {name} | {seconds:.1f} | {COUNT / seconds:.2f} | {seconds / plain_seconds - 1:+.0%} | {same} |")


if __name__ == "__main__":
    run()
