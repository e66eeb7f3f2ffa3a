"""Benchmark for a GPU: our engine at defaults against ComfyUI's built-in tiling, on one photo, one card.

    bash bench/gpu.sh                                    # a bare machine: makes a venv with CUDA torch, then runs this
    python bench/gpu.py                                  # on CUDA: x4plus and animevideov3, 512x512 and 1920x1080
    python bench/gpu.py --device cpu --sizes 64 --frames 1   # checks the script itself on a machine without a GPU

For each model and input size it prints frames per second (ours, and the built-in re-created on spandrel's network,
the one ComfyUI runs: fp32, NCHW, tiles of 512 with 32 overlap, one tile per forward, results accumulated on the
host), our peak device memory against our own estimate (`memory_required`), the host waits per tile (CUDA's sync
debug mode counts them), the share of the run the GPU spent idle (kernel time from the profiler against wall time),
and ours against our fp32-strict run. TF32 stays as PyTorch sets it (cuDNN convolutions in TF32 on Ampere and later),
as ComfyUI runs. Then an out-of-memory drill: x4plus on a 1080p frame with the process capped at 1.5 GiB (a
level-0 window needs more, on any card) must give the image of the unconstrained run. Ratios are within one run of
this script: compare nothing across runs.
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
    parser.add_argument("--memory-cap", type=float, default=1.5, help="GiB the out-of-memory drill allows")
    args = parser.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{name}, torch {torch.__version__}\n")
    print("| model | input | built-in fps | ours fps | ours / built-in | precision | peak / estimate | "
          "host waits per tile | GPU idle | ours vs fp32-strict |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for model_name in args.models:
        model = load_model(model_name)
        model.module.to(device)
        builtin = spandrel_network(model).to(device)
        for size in args.sizes:
            height, width = SIZES.get(size, (int(size) if size.isdigit() else 512,) * 2)
            print(row(model, builtin, photo(height, width).to(device), device, args.frames), flush=True)
        builtin.cpu()
    if device.type == "cuda":
        model = load_model("RealESRGAN_x4plus")
        model.module.to(device)
        drill(model, photo(1080, 1920).to(device), args.memory_cap, device)


def spandrel_network(model) -> torch.nn.Module:
    """The network ComfyUI's own loader builds for these weights."""
    from spandrel import ModelLoader

    return ModelLoader().load_from_state_dict(model.module.state_dict()).model.eval()


def row(model, builtin: torch.nn.Module, image: torch.Tensor, device: torch.device, frames: int) -> str:
    with torch.inference_mode():
        builtin_fps, _ = timed(lambda: comfy_builtin(builtin, image, model.scale), device, frames)

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
            f"{'n/a' if idle is None else f'{idle:.0%}'} | {psnr(result.image, ours('fp32-strict').image):.1f} dB |")


def drill(model, image: torch.Tensor, cap_gib: float, device: torch.device) -> None:
    """The planner sees the whole card (mem_get_info) while the process may use only `cap_gib`: real out-of-memory
    errors, whatever the card's size."""
    free = upscale(model, image, precision="fp16").image
    torch.cuda.empty_cache()
    fraction = min(1.0, cap_gib * 2**30 / torch.cuda.get_device_properties(device).total_memory)
    torch.cuda.set_per_process_memory_fraction(fraction, device)
    try:
        constrained = upscale(model, image, precision="fp16")
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, device)
    print(f"\nOut-of-memory drill ({model.name}, {image.shape[-1]}x{image.shape[-2]}, capped at {cap_gib} GiB): "
          f"{constrained.oom_splits} splits, tiles of {constrained.tile_size} px, "
          f"{constrained.tiles_per_forward} per forward, {psnr(constrained.image, free):.1f} dB against the "
          f"unconstrained run")


if __name__ == "__main__":
    main()
