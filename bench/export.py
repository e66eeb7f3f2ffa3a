"""Benchmark: how closely exported files, run by their own runtimes on the CPU, follow our fp32 PyTorch output.

    python bench/export.py                          # every architecture, both formats, both precisions
    python bench/export.py --models realesr-animevideov3 --size 64

PSNR (dB, float output clamped to 0..1, not rounded) of onnxruntime / ncnn against PyTorch on crops of real photos
(scikit-image's), the lowest over the photos; goals: 50 dB for fp32 files, 40 dB for fp16. Rows: the official models
(RRDBNet x4, 23 and 6 blocks; SRVGGNetCompact, with and without its bicubic output resize), pixel-unshuffled RRDBNet x2
and x1 (x4plus's weights, first conv spread over the unshuffled channels), and fine-tuned models (a training run's
model.safetensors: weights that are no longer fp16 values). The last column: our fp16 ncnn export of an official model
against the official ncnn files, both through ncnn ("same" = identical .bin bytes and identical output).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from realesr_core import load_model  # noqa: E402
from realesr_core.export import export_fidelity, export_model, psnr, run_ncnn  # noqa: E402
from realesr_core.models import zoo  # noqa: E402

from helpers import fine_tuned, photo, to_tensor, unshuffled_x4plus  # noqa: E402

PHOTOS = (("astronaut", 100, 180), ("chelsea", 100, 150), ("coffee", 100, 200))
EXPORTS = ((".onnx", "fp32"), (".onnx", "fp16"), (".param", "fp32"), (".param", "fp16"))
MODELS = ("RealESRGAN_x4plus", "RealESRGAN_x4plus_anime_6B", "unshuffled-x2", "unshuffled-x1", "realesr-animevideov3",
          "realesr-animevideov3-x3", "finetuned-realesr-animevideov3", "finetuned-RealESRGAN_x4plus")
GOALS = {"fp32": 50.0, "fp16": 40.0}


def build(name: str, work: Path) -> object:
    if name.startswith("unshuffled-x"):
        return unshuffled_x4plus(load_model("RealESRGAN_x4plus"), int(name[-1]))
    if name.startswith("finetuned-"):
        return load_model(fine_tuned(name.removeprefix("finetuned-"), work / name))
    return load_model(name)


def against_official(name: str, model: object, folder: Path, images: torch.Tensor) -> str:
    if name not in zoo.PRETRAINED or zoo.packaged_param_file(zoo.PRETRAINED[name]) is None:
        return "-"
    official = zoo.packaged_param_file(zoo.PRETRAINED[name])[0]
    ours = export_model(model, folder / f"{name}-official.param", precision="fp16").files[0]
    same_bytes = ours.with_suffix(".bin").read_bytes() == official.with_suffix(".bin").read_bytes()
    a, b = run_ncnn(ours, images), run_ncnn(official, images)
    return "same" if same_bytes and torch.equal(a, b) else f"{psnr(a, b):.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--size", type=int, default=48, help="side of each photo crop (input pixels)")
    args = parser.parse_args()
    images = torch.cat([to_tensor(photo(args.size, name, top, left)) for name, top, left in PHOTOS])
    header = ["model", "architecture", "scale", *(f"{'ONNX' if s == '.onnx' else 'ncnn'} {p}" for s, p in EXPORTS),
              "ncnn fp16 vs official"]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        for name in args.models:
            model = build(name, work)
            cells = [name, model.architecture, f"x{model.scale}"]
            for suffix, precision in EXPORTS:
                path = export_model(model, work / f"m-x{model.scale}-{precision}{suffix}", precision=precision).files[0]
                worst = min(export_fidelity(model, path, image[None]) for image in images)
                cells.append(f"{worst:.1f}" + ("" if worst >= GOALS[precision] else " (below goal)"))
            cells.append(against_official(name, model, work, images))
            rows.append(cells)
            print(" | ".join(cells), file=sys.stderr, flush=True)
    print(f"PSNR (dB) against our fp32 PyTorch output, lowest of {len(PHOTOS)} photo crops of {args.size}x{args.size}; "
          f"goals {GOALS['fp32']:g} dB (fp32), {GOALS['fp16']:g} dB (fp16)\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for cells in rows:
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
