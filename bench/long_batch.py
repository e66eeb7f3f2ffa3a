"""Benchmark: peak memory of the Upscale node on long frame batches (video frames entering ComfyUI as one IMAGE).

    python bench/long_batch.py                      # 1, 16, 32, 64 frames of 128x128, realesr-animevideov3 x4
    python bench/long_batch.py --frames 1 64 --size 96

Each run is its own process: it loads the model, builds the frame batch, measures its resident memory (the baseline),
runs our Upscale node on the batch, and reports the peak resident memory above that baseline next to the size of the
one output batch the node must return. ComfyUI's built-in algorithm (a normalised sum over full-size float buffers
per frame, then the whole batch clamped and moved to [B, H, W, C]) is run the same way for comparison.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

MODEL = "realesr-animevideov3"


def frames(count: int, size: int) -> torch.Tensor:
    """`count` different crops of a real photo as ComfyUI's IMAGE [N, H, W, 3]."""
    from skimage import data

    photo = data.astronaut()
    crops = [photo[(7 * i) % 300 : (7 * i) % 300 + size, (11 * i) % 300 : (11 * i) % 300 + size] for i in range(count)]
    return torch.from_numpy(np.stack(crops)).float() / 255


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@torch.inference_mode()
def run_one(method: str, count: int, size: int) -> dict:
    from tiling import comfy_builtin

    from nodes.upscale import Upscale
    from nodes.upscale_model import to_upscale_model
    from realesr_core import load_model

    model = load_model(MODEL)
    upscale_model = to_upscale_model(model)  # imports spandrel (about 150 MB): not part of the batch's cost
    images = frames(count, size)
    baseline = current_rss_mb()
    if method == "ours":
        out, _ = Upscale().upscale(upscale_model, images, "model scale", 2.0, 64, 0, 32, "auto", "model")
    else:
        pieces = [comfy_builtin(model.module, images[i : i + 1].movedim(-1, 1), model.scale) for i in range(count)]
        out = torch.cat(pieces).movedim(1, -1).clamp(0, 1)
    output_mb = out.numel() * out.element_size() / 2**20
    return {"output_mb": output_mb, "above_baseline_mb": peak_rss_mb() - baseline, "shape": list(out.shape)}


def measure(method: str, count: int, size: int) -> dict:
    code = f"import sys, json; sys.path[:0] = {[str(ROOT), str(ROOT / 'bench')]!r}; import long_batch; " \
           f"print(json.dumps(long_batch.run_one({method!r}, {count}, {size})))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[1, 16, 32, 64])
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    print(f"{MODEL} x4 on {args.size}x{args.size} frames (CPU); peak RSS above the loaded model and input batch\n")
    print("| frames | output batch | realesr node | realesr - output | ComfyUI built-in | built-in - output |")
    print("|---|---|---|---|---|---|")
    for count in args.frames:
        ours, builtin = measure("ours", count, args.size), measure("builtin", count, args.size)
        output = ours["output_mb"]
        print(f"| {count} | {output:.0f} MB | {ours['above_baseline_mb']:.0f} MB | "
              f"{ours['above_baseline_mb'] - output:.0f} MB | {builtin['above_baseline_mb']:.0f} MB | "
              f"{builtin['above_baseline_mb'] - output:.0f} MB |", flush=True)


if __name__ == "__main__":
    main()
