"""Benchmark for a GPU: our engine at defaults against ComfyUI's built-in tiling, on one photo, one card.

    python bench/gpu.py                                  # on CUDA: x4plus and animevideov3, 512x512 and 1920x1080
    python bench/gpu.py --device cpu --sizes 64 --frames 1   # checks the script itself on a machine without a GPU

For each model and input size it prints frames per second (ours and the built-in re-created: fp32, NCHW, tiles of
512 with 32 overlap, one tile per forward, results accumulated on the host), our peak device memory against our
own estimate (`memory_required`), the host waits per tile (CUDA's sync debug mode counts them), the share of the
run the GPU spent idle (kernel time from the profiler against wall time), and fp16 against fp32 PSNR. Then an
out-of-memory drill: the same upscale with the process limited to a fraction of the card's memory must give the
same image as the unconstrained run. Ratios are within one run of this script: compare nothing across runs.
TF32 is switched off for the fp32 comparisons (fp32 convolutions would otherwise run in TF32 on Ampere and later).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from tiling import comfy_builtin  # noqa: E402

from realesr_core import load_model, upscale  # noqa: E402
from realesr_core.upscaling import memory_required  # noqa: E402

MODELS = ("RealESRGAN_x4plus", "realesr-animevideov3")
SIZES = {"512": (512, 512), "1080p": (1080, 1920)}


def photo(height: int, width: int) -> torch.Tensor:
    from PIL import Image
    from skimage import data

    image = Image.fromarray(data.astronaut()).resize((width, height), Image.LANCZOS)
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)[None].float() / 255


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(run, device: torch.device, frames: int) -> tuple[float, torch.Tensor]:
    """Frames per second over `frames` runs after one warm-up run, and the last output."""
    output = run()
    synchronize(device)
    started = time.perf_counter()
    for _ in range(frames):
        output = run()
    synchronize(device)
    return frames / (time.perf_counter() - started), output


def host_waits(run, device: torch.device) -> int | None:
    if device.type != "cuda":
        return None
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def idle_share(run, device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    from torch.profiler import ProfilerActivity, profile

    synchronize(device)
    started = time.perf_counter()
    with profile(activities=[ProfilerActivity.CUDA]) as profiled:
        run()
        synchronize(device)
    wall = time.perf_counter() - started
    busy = sum(e.device_time_total for e in profiled.key_averages() if e.device_time_total) / 1e6
    return max(0.0, 1.0 - busy / wall)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.float().cpu() - b.float().cpu()) ** 2).mean())
    return float("inf") if mse == 0 else 10 * math.log10(1 / mse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), help="512, 1080p or a square size in pixels")
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--memory-fraction", type=float, default=0.05, help="card share for the out-of-memory drill")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{name}, torch {torch.__version__}\n")
    print("| model | input | built-in fps | ours fps | ours / built-in | precision | peak / estimate | "
          "host waits per tile | GPU idle | ours vs fp32 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for model_name in args.models:
        model = load_model(model_name)
        model.module.to(device)
        for size in args.sizes:
            height, width = SIZES.get(size, (int(size) if size.isdigit() else 512,) * 2)
            print(row(model, photo(height, width).to(device), device, args.frames), flush=True)
        if device.type == "cuda":
            drill(model, photo(512, 512).to(device), args.memory_fraction, device)


def row(model, image: torch.Tensor, device: torch.device, frames: int) -> str:
    with torch.inference_mode():
        builtin_fps, _ = timed(lambda: comfy_builtin(model.module, image, model.scale), device, frames)

    def ours(precision: str = "auto"):
        return upscale(model, image, precision=precision, output_device="cpu")

    fps, result = timed(ours, device, frames)
    peak = "n/a"
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device)
        ours()
        peak = f"{(torch.cuda.max_memory_allocated(device) - baseline) / memory_required(model, image):.2f}"
    waits, idle = host_waits(ours, device), idle_share(ours, device)
    height, width = image.shape[-2:]
    return (f"| {model.name} | {width}x{height} | {builtin_fps:.2f} | {fps:.2f} | {fps / builtin_fps:.2f}x | "
            f"{result.precision} | {peak} | {'n/a' if waits is None else f'{waits / result.tile_count:.2f}'} | "
            f"{'n/a' if idle is None else f'{idle:.0%}'} | {psnr(result.image, ours('fp32').image):.1f} dB |")


def drill(model, image: torch.Tensor, fraction: float, device: torch.device) -> None:
    free = upscale(model, image, precision="fp32").image
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(fraction, device)
    try:
        constrained = upscale(model, image, precision="fp32")
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, device)
    print(f"\nOut-of-memory drill ({model.name}, {fraction:.0%} of the card): {constrained.oom_splits} splits, tiles "
          f"of {constrained.tile_size} px, {psnr(constrained.image, free):.1f} dB against the unconstrained run")


if __name__ == "__main__":
    main()
