"""Benchmark: our tiled engine against ComfyUI's built-in tiling and Real-ESRGAN's, on one machine, one photo.

    python bench/tiling.py                      # speed table (256, 512) + seam table (288 photo, 96-px tiles)
    python bench/tiling.py --sizes 256          # only some sizes
    python bench/tiling.py --memory             # peak RSS of one 1024x1024 -> 4096x4096 x4plus upscale
    python bench/tiling.py --ceiling [SIZE]     # bare network: fp32/bf16, NCHW/NHWC, plain or in CPU row strips

Every run happens in its own process so that its peak RSS is its own. The baselines are re-created from their
published descriptions (ComfyUI's `tiled_scale`, Real-ESRGAN's `tile_process`), run on our RRDBNet with the same
weights, computed plainly as BasicSR and spandrel do (no row strips). Ratios are against the built-in algorithm measured
in the same invocation.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from realesr_core import load_model, upscale  # noqa: E402
from realesr_core.models.archs import rrdbnet  # noqa: E402

MODEL = "RealESRGAN_x4plus"
MFLOP_PER_PIXEL = 35.8


def photo(size: int) -> torch.Tensor:
    """A real photo (scikit-image's astronaut, public domain), resized with Lanczos when larger than 512."""
    from PIL import Image
    from skimage import data

    image = Image.fromarray(data.astronaut())
    if size > 512:
        image = image.resize((size, size), Image.LANCZOS)
    array = np.asarray(image)[:size, :size]
    return torch.from_numpy(array.copy()).permute(2, 0, 1)[None].float() / 255


@torch.inference_mode()
def comfy_builtin(module: torch.nn.Module, image: torch.Tensor, scale: int, tile: int = 512,
                  overlap: int = 32) -> torch.Tensor:
    """ComfyUI's ImageUpscaleWithModel: fp32, NCHW, one tile per forward on the module's device, each result moved
    to the host and accumulated there (linear feather, normalised sum), as comfy.utils.tiled_scale does."""
    _, channels, height, width = image.shape
    device = next(module.parameters()).device
    if height <= tile and width <= tile:
        return module(image.to(device)).cpu().clamp(0, 1)
    out = torch.zeros(1, channels, height * scale, width * scale)
    div = torch.zeros_like(out)
    ys = sorted({min(y, max(height - overlap, 0)) for y in range(0, max(height - overlap, 1), tile - overlap)})
    xs = sorted({min(x, max(width - overlap, 0)) for x in range(0, max(width - overlap, 1), tile - overlap)})
    feather = round(overlap * scale)
    for y in ys:
        for x in xs:
            piece = image[..., y : y + tile, x : x + tile].to(device)
            result = module(piece).cpu()
            mask = torch.ones_like(result)
            for dim in (2, 3):
                length = result.shape[dim]
                if feather < length:
                    for t in range(feather):
                        weight = (t + 1) / feather
                        mask.narrow(dim, t, 1).mul_(weight)
                        mask.narrow(dim, length - 1 - t, 1).mul_(weight)
            ys_out, xs_out = y * scale, x * scale
            region = (..., slice(ys_out, ys_out + result.shape[2]), slice(xs_out, xs_out + result.shape[3]))
            out[region] += result * mask
            div[region] += mask
    return (out / div).clamp(0, 1)


@torch.inference_mode()
def realesrgan_tiles(module: torch.nn.Module, image: torch.Tensor, scale: int, tile: int = 512,
                     tile_pad: int = 10) -> torch.Tensor:
    """Real-ESRGAN's tile_process: hard-cropped tiles, each with `tile_pad` pixels of context, no blending."""
    _, channels, height, width = image.shape
    out = torch.zeros(1, channels, height * scale, width * scale)
    for ty in range(math.ceil(height / tile)):
        for tx in range(math.ceil(width / tile)):
            y0, y1 = ty * tile, min((ty + 1) * tile, height)
            x0, x1 = tx * tile, min((tx + 1) * tile, width)
            py0, py1 = max(y0 - tile_pad, 0), min(y1 + tile_pad, height)
            px0, px1 = max(x0 - tile_pad, 0), min(x1 + tile_pad, width)
            result = module(image[..., py0:py1, px0:px1])
            oy, ox = (y0 - py0) * scale, (x0 - px0) * scale
            out[..., y0 * scale : y1 * scale, x0 * scale : x1 * scale] = result[
                ..., oy : oy + (y1 - y0) * scale, ox : ox + (x1 - x0) * scale]
    return out.clamp(0, 1)


@contextlib.contextmanager
def plain_network():
    """Our RRDBNet as BasicSR and spandrel run it: no row strips (the baselines run this)."""
    saved = rrdbnet.CPU_STRIP_BYTES, rrdbnet.STRIP_ELEMENTS
    rrdbnet.CPU_STRIP_BYTES = rrdbnet.STRIP_ELEMENTS = sys.maxsize
    try:
        yield
    finally:
        rrdbnet.CPU_STRIP_BYTES, rrdbnet.STRIP_ELEMENTS = saved


def run_one(method: str, size: int, tile: int, output: str | None) -> dict:
    if not method.startswith("ours"):
        with plain_network():
            return _run_one(method, size, tile, output)
    return _run_one(method, size, tile, output)


def _run_one(method: str, size: int, tile: int, output: str | None) -> dict:
    torch.manual_seed(0)
    model = load_model(MODEL)
    image = photo(size)
    info: dict = {}
    started = time.perf_counter()
    if method == "builtin":
        result = comfy_builtin(model.module, image, model.scale, **({"tile": tile} if tile else {}))
    elif method == "builtin-whole":
        result = comfy_builtin(model.module, image, model.scale, tile=10**6)
    elif method.startswith("realesrgan"):
        pad = int(method.split(":")[1]) if ":" in method else 10
        result = realesrgan_tiles(model.module, image, model.scale, **({"tile": tile} if tile else {}), tile_pad=pad)
    else:
        precision = "fp32" if method == "ours-fp32" else "auto"
        upscaled = upscale(model, image, tile=tile, precision=precision)
        result = upscaled.image
        info = {"tile": upscaled.tile_size, "tiles": upscaled.tile_count, "precision": upscaled.precision}
    seconds = time.perf_counter() - started
    if output:
        np.save(output, result.numpy())
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "rss_mb": rss, **info}


def measure(method: str, size: int, tile: int = 0, keep: bool = False) -> tuple[dict, np.ndarray | None]:
    with tempfile.TemporaryDirectory() as folder:
        output = str(Path(folder) / "out.npy") if keep else ""
        line = subprocess.run([sys.executable, __file__, "--run", method, str(size), str(tile), output],
                              check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        return json.loads(line), (np.load(output) if keep else None)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(1 / mse)


def matmul_peak(dtype: torch.dtype, n: int = 2048) -> float:
    a, b = torch.rand(n, n, dtype=dtype), torch.rand(n, n, dtype=dtype)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(3))
    return 2 * n**3 / best / 1e9


def _timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def speed_table(sizes: list[int]) -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; matmul peak: "
          f"fp32 {matmul_peak(torch.float32):.0f} GFLOP/s, bf16 {matmul_peak(torch.bfloat16):.0f} GFLOP/s\n")
    print("| input | method | seconds | speed vs built-in | GFLOP/s | tiled vs whole PSNR | peak RSS |")
    print("|---|---|---|---|---|---|---|")
    for size in sizes:
        rows = {method: measure(method, size, keep=True) for method in ("builtin", "realesrgan", "ours", "ours-fp32")}
        for method, (info, result) in rows.items():
            reference = whole_image(method, size, rows)
            gflops = MFLOP_PER_PIXEL * size * size / info["seconds"] / 1e3
            decided = f" ({info['precision']}, {info['tiles']} tile(s) of {info['tile']})" if "tiles" in info else ""
            label = method + decided
            print(f"| {size}x{size} | {label} | {info['seconds']:.1f} | "
                  f"{rows['builtin'][0]['seconds'] / info['seconds']:.2f}x | {gflops:.0f} | "
                  f"{psnr(result, reference):.1f} dB | {info['rss_mb']:.0f} MB |", flush=True)


def whole_image(method: str, size: int, rows: dict) -> np.ndarray:
    """The same method's whole-image result (same precision), re-using a run that already was one tile."""
    info, result = rows[method]
    if info.get("tiles") == 1 or (method in ("builtin", "realesrgan") and size <= 512):
        return result
    reference = {"builtin": "builtin-whole", "realesrgan": "builtin-whole"}.get(method, method)
    return measure(reference, size, tile=10**6, keep=True)[1]


def seam_table(size: int, tile: int) -> None:
    print(f"\nSeams: {size}x{size} photo, tiles of {tile} input pixels, fp32, each against its own whole-image result\n")
    print("| scheme | PSNR |")
    print("|---|---|")
    plain_whole = measure("builtin-whole", size, keep=True)[1]
    ours_whole = measure("ours-fp32", size, tile=10**6, keep=True)[1]
    for label, method, reference in (
        ("ComfyUI built-in (overlap 32, linear feather)", "builtin", plain_whole),
        ("Real-ESRGAN (hard crop, 10 px context)", "realesrgan:10", plain_whole),
        ("Real-ESRGAN (hard crop, 32 px context)", "realesrgan:32", plain_whole),
        ("realesr (overlap 32, blend 16)", "ours-fp32", ours_whole),
    ):
        result = measure(method, size, tile=tile, keep=True)[1]
        print(f"| {label} | {psnr(result, reference):.1f} dB |", flush=True)


@torch.inference_mode()
def ceiling(size: int, rounds: int = 2) -> None:
    """The bare network on one input in each layout and precision, plain (as BasicSR runs it) and with our CPU row
    strips, interleaved, best of `rounds`: what the network itself gains over fp32 NCHW on this machine."""
    import copy

    model = load_model(MODEL)
    image = photo(size)
    nchw = copy.deepcopy(model.module)
    nhwc = copy.deepcopy(model.module).to(memory_format=torch.channels_last)
    image_nhwc = image.contiguous(memory_format=torch.channels_last)

    def bf16() -> None:
        with torch.autocast("cpu", torch.bfloat16):
            nhwc(image_nhwc)

    def plain(run):
        def wrapped() -> None:
            with plain_network():
                run()
        return wrapped

    runs = {"fp32 NCHW": plain(lambda: nchw(image)), "fp32 channels_last": plain(lambda: nhwc(image_nhwc)),
            "bf16 channels_last": plain(bf16), "fp32 channels_last, row strips": lambda: nhwc(image_nhwc),
            "bf16 channels_last, row strips": bf16}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            times[name].append(_timed(run))
    best = {name: min(values) for name, values in times.items()}
    print(f"| {size}x{size}, no padding | seconds | vs fp32 NCHW |\n|---|---|---|")
    for name, seconds in best.items():
        print(f"| {name} | {seconds:.2f} | {best['fp32 NCHW'] / seconds:.2f}x |")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--run":
        method, size, tile, output = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
        print(json.dumps(run_one(method, size, tile, output or None)))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[256, 512])
    parser.add_argument("--seam-size", type=int, default=288)
    parser.add_argument("--seam-tile", type=int, default=96)
    parser.add_argument("--memory", action="store_true", help="only the 1024x1024 peak-RSS run")
    parser.add_argument("--ceiling", type=int, nargs="?", const=256, metavar="SIZE",
                        help="only the bare network's layout/precision/strip ratios (default size 256)")
    args = parser.parse_args()
    if args.ceiling:
        ceiling(args.ceiling)
        return
    if args.memory:
        info, _ = measure("ours", 1024)
        print(f"1024x1024 -> 4096x4096, {MODEL}, defaults: {info['seconds']:.0f} s, peak RSS {info['rss_mb']:.0f} MB, "
              f"{info['tiles']} tiles of {info['tile']} px, {info['precision']}")
        return
    if args.sizes:
        speed_table(args.sizes)
    if args.seam_size:
        seam_table(args.seam_size, args.seam_tile)


if __name__ == "__main__":
    main()
