"""Benchmark: peak memory of the Upscale node on long frame batches (video frames entering ComfyUI as one IMAGE).

    python bench/long_batch.py                      # 1, 16, 32, 64 frames of 128x128, realesr-animevideov3 x4
    python bench/long_batch.py --frames 1 64 --size 96
    python bench/long_batch.py --video --frames 24 96 --size 160   # the Upscale Video node on clips of those lengths

Each run is its own process: it loads the model, builds the frame batch, measures its resident memory (the baseline),
runs our Upscale node on the batch, and reports the peak resident memory above that baseline next to the size of the
one output batch the node must return. ComfyUI's built-in algorithm (a normalised sum over full-size float buffers
per frame, then the whole batch clamped and moved to [B, H, W, C]) is run the same way for comparison. With --video
the frames are encoded as an H.264 clip first and the Upscale Video node streams it into a file: its peak must not
grow with the number of frames.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
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


@torch.inference_mode()
def run_video(clip: str) -> dict:
    """The Upscale Video node on a clip the parent process made (making it here would raise the peak first)."""
    from nodes.upscale_model import to_upscale_model
    from nodes.video import UpscaleVideo
    from realesr_core import load_model

    upscale_model = to_upscale_model(load_model(MODEL))
    baseline = current_rss_mb()
    (out,) = UpscaleVideo().upscale(upscale_model, clip, "libx264", 18, "medium", "as source", 0, 32, "auto", 0.0)
    shutil.rmtree(out.parent)
    return {"above_baseline_mb": peak_rss_mb() - baseline}


def write_clip(images: torch.Tensor, path: Path) -> Path:
    """The frames as an H.264 clip at 12 frames per second."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=12)
        stream.height, stream.width = images.shape[1:3]
        for image in images:
            frame = av.VideoFrame.from_ndarray((image * 255).round().byte().numpy(), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def measure(method: str, count: int, size: int) -> dict:
    call = f"run_one({method!r}, {count}, {size})"
    if method == "video":
        clip = write_clip(frames(count, size), Path(tempfile.mkdtemp()) / "clip.mp4")
        call = f"run_video({str(clip)!r})"
    code = f"import sys, json; sys.path[:0] = {[str(ROOT), str(ROOT / 'bench')]!r}; import long_batch; " \
           f"print(json.dumps(long_batch.{call}))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    if method == "video":
        shutil.rmtree(clip.parent)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[1, 16, 32, 64])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--video", action="store_true", help="the Upscale Video node on clips of --frames frames")
    args = parser.parse_args()
    if args.video:
        print(f"{MODEL} x4 on {args.size}x{args.size} clips (CPU); peak RSS above the loaded model\n")
        print("| frames | Upscale Video node |\n|---|---|")
        for count in args.frames:
            print(f"| {count} | {measure('video', count, args.size)['above_baseline_mb']:.0f} MB |", flush=True)
        return
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
