"""Benchmark: an image whose result does not fit in memory, upscaled from the command line.

    python bench/huge.py                 # 8192 x 8192 RGB TIFF, x4 with realesr-animevideov3 -> 32768 x 32768
    python bench/huge.py --size 2048     # a quicker check

Makes the input (a real photo resized, as a deflate TIFF), runs `realesr upscale --stream` in its own process and
reports its wall time and peak resident memory and the output's size; up to --size 2048 also how close the streamed
result is, for a 512 x 512 crop of the input, to an in-memory upscale of that crop (the crop has no real
surroundings at its far edges, so that band is left out; tests/media/test_huge.py shows the streamed rows equal the
in-memory ones exactly for whole images).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODEL = "realesr-animevideov3"
CROP, MARGIN = 512, 64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--folder", type=Path, help="where the input and the output go (default: a temporary one)")
    args = parser.parse_args()
    import tifffile
    from PIL import Image
    from skimage import data

    with tempfile.TemporaryDirectory(dir=args.folder) as folder:
        source, target = Path(folder) / "scene.tif", Path(folder) / "scene_x4.tif"
        pixels = np.asarray(Image.fromarray(data.astronaut()).resize((args.size, args.size), Image.LANCZOS))
        tifffile.imwrite(source, pixels, photometric="rgb", compression="zlib", tile=(256, 256))
        del pixels
        command = [sys.executable, "-m", "realesr_core", "upscale", str(source), "-o", str(target), "--stream",
                   "-m", MODEL, "--max-pixels", str(args.size * args.size)]
        started = time.perf_counter()
        subprocess.run(command, check=True, cwd=ROOT)
        seconds = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        with tifffile.TiffFile(target) as tif:
            shape = tif.pages.first.shape
            streamed = tif.pages.first.asarray()[: CROP * 4, : CROP * 4] if args.size <= 2048 else None
        print("\n| input | output | model | wall | peak RSS | output file |")
        print("|---|---|---|---|---|---|")
        print(f"| {args.size}x{args.size} RGB TIFF | {shape[1]}x{shape[0]} | {MODEL} | {seconds:.0f} s | "
              f"{peak:.0f} MB | {target.stat().st_size / 2**30:.2f} GiB |")
        if streamed is not None:  # larger outputs are not read back whole (that is the point of streaming them)
            print(f"\ncrop interior against an in-memory upscale of the crop: {crop_psnr(source, streamed):.1f} dB")


def crop_psnr(source: Path, streamed: np.ndarray) -> float:
    from realesr_core import load_model, read_image, upscale
    from realesr_core.media import to_pixels, to_tensor

    crop = read_image(source).pixels[:CROP, :CROP]
    alone = to_pixels(upscale(load_model(MODEL), to_tensor(crop)).image, 8)
    inner = slice(0, (CROP - MARGIN) * 4)
    difference = alone[inner, inner].astype(np.float64) - streamed[inner, inner].astype(np.float64)
    return float(10 * np.log10(255**2 / max(np.mean(difference**2), 1e-12)))


if __name__ == "__main__":
    main()
