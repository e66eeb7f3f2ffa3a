"""Benchmark: Real-ESRGAN's full degradation pipeline, images per second.

    python bench/degradation.py            # batch of 16 photos of 400x400, official x4 preset, on CPU (and CUDA)

Per-image parameters (each image its own damage) and same-on-batch (one draw, batched through every op). On the CPU
the pipeline runs twice, with large filters over one image as FFT products (the default) and with every filter a
direct grouped convolution; then one and sixteen 400x400 photos are filtered at each kernel size both ways: the
figures behind FFT_MIN_KERNEL and FFT_MAX_PLANES.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from realesr_core.degradation import degrade, ops  # noqa: E402


def photos(batch: int, size: int = 400) -> torch.Tensor:
    from skimage import data

    sources = [data.astronaut(), data.coffee(), data.rocket()]  # photos at least 400x400
    crops = []
    for i in range(batch):
        image = sources[i % len(sources)]
        top, left = (i * 37) % (image.shape[0] - size + 1), (i * 53) % (image.shape[1] - size + 1)
        crops.append(torch.from_numpy(np.ascontiguousarray(image[top : top + size, left : left + size, :3])))
    return torch.stack(crops).permute(0, 3, 1, 2).float() / 255


def images_per_second(images: torch.Tensor, same_on_batch: bool, repeats: int = 3) -> float:
    degrade(images, seed=0, same_on_batch=same_on_batch)  # warm-up
    best = float("inf")
    for seed in range(1, repeats + 1):
        if images.is_cuda:
            torch.cuda.synchronize()
        started = time.perf_counter()
        degrade(images, seed=seed, same_on_batch=same_on_batch)
        if images.is_cuda:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    return images.shape[0] / best


def filter_ms(images: torch.Tensor, kernel: torch.Tensor, repeats: int = 5) -> float:
    ops.filter2d(images, kernel)  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        ops.filter2d(images, kernel)
    return (time.perf_counter() - started) / repeats * 1000


def main() -> None:
    batch = photos(16)
    fft_min_kernel, fft_max_planes = ops.FFT_MIN_KERNEL, ops.FFT_MAX_PLANES
    runs = [("cpu", f"FFT from {fft_min_kernel}x{fft_min_kernel} for one image", fft_min_kernel),
            ("cpu", "direct convolutions", 1 << 30)]
    runs += [("cuda", "direct convolutions", fft_min_kernel)] if torch.cuda.is_available() else []
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch 16 x 400x400, preset realesrgan_x4\n")
    print("| device | filters | per-image parameters | same on batch |")
    print("|---|---|---|---|")
    for device, filters, ops.FFT_MIN_KERNEL in runs:
        images = batch.to(device)
        print(f"| {device} | {filters} | {images_per_second(images, False):.1f} img/s | "
              f"{images_per_second(images, True):.1f} img/s |", flush=True)
    print("\n400x400 RGB photos, CPU, one kernel for all:\n")
    print("| kernel | photos | direct convolution | FFT | direct / FFT |")
    print("|---|---|---|---|---|")
    for size in range(3, 23, 2):
        kernel = torch.rand(size, size)
        for count in (1, 16):
            ops.FFT_MIN_KERNEL, ops.FFT_MAX_PLANES = 1 << 30, fft_max_planes
            direct = filter_ms(batch[:count], kernel / kernel.sum())
            ops.FFT_MIN_KERNEL, ops.FFT_MAX_PLANES = 1, 1 << 30
            fft = filter_ms(batch[:count], kernel / kernel.sum())
            print(f"| {size}x{size} | {count} | {direct:.2f} ms | {fft:.2f} ms | {direct / fft:.2f}x |", flush=True)
    ops.FFT_MAX_PLANES = fft_max_planes
    ops.FFT_MIN_KERNEL = fft_min_kernel


if __name__ == "__main__":
    main()
