"""Benchmark: our training step against Real-ESRGAN's own (BasicSR 1.4.2 + realesrgan 0.3.0, run from the reference
venv that tools/basicsr_reference.py builds), and what the discriminator's passes and warm-up do to learning.

    python bench/training.py                 # speed: realesr-animevideov3 and RealESRGAN_x4plus, batch 4, GT patch 128
    python bench/training.py --models RealESRGAN_x4plus --batch 12 --patch 256     # the official size (a GPU)
    python bench/training.py --learning      # official vs shared D passes: D's logit gap and validation PSNR
    python bench/training.py --warmup        # a fresh D trained alone against RealESRGAN_x4plus: its logit gap

Speed rows do the GAN stage (L1 + perceptual + GAN, D num_feat 64) on 400² ground truths degraded on the device,
cropped to the patch, through a pool of two batches. BasicSR's row is `RealESRGANDataset` (per-image kernels drawn in
NumPy, images read from PNG files of the same crops) + `RealESRGANModel.feed_data` (its own degradation, pool, USM) +
`optimize_parameters`, fp32 on contiguous tensors as it is written, `.cuda()` neutralised. Ours is TrainingStep at its
defaults (the official D passes, the official per-batch draws, bf16 autocast where the CPU has it, channels_last),
and with shared D passes. VGG19 has random weights in both (the ImageNet ones are not to be had offline; the cost is
the same). Each row runs in its own process, rows alternate, the best of `--repeats` is kept; peak RSS is the
high-water mark of the steps; the degradation share is the part of a step spent making the pairs (ours: `degrade` on
the same batches, timed before the steps; BasicSR's: its dataset and feed_data, timed inside the steps).
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from realesr_core import load_model  # noqa: E402
from realesr_core.degradation import degrade  # noqa: E402
from realesr_core.media import write_image  # noqa: E402
from realesr_core.models import UNetDiscriminatorSN  # noqa: E402
from realesr_core.training import (  # noqa: E402
    PerceptualLoss,
    StepOptions,
    TrainingStep,
    build_config,
    train,
    training_dtype,
    vgg19_features,
)

DEGRADE_SIDE = 400
LOOPS = {"basicsr": "BasicSR RealESRGANModel (the reference)", "official": "realesr TrainingStep, defaults",
         "shared": "realesr TrainingStep, shared D passes"}
BASICSR_NETWORKS = {"realesr-animevideov3": "compact", "RealESRGAN_x4plus": "rrdb"}
TRAINING_PHOTOS = ("astronaut", "coffee", "rocket", "hubble_deep_field", "stereo_motorcycle")
HELD_OUT = "chelsea"


def ground_truths(count: int, batch: int) -> list[torch.Tensor]:
    from skimage import data

    photo = torch.from_numpy(data.astronaut().copy()).permute(2, 0, 1).float() / 255
    generator = torch.Generator().manual_seed(0)
    out = []
    for _ in range(count):
        corners = torch.randint(512 - DEGRADE_SIDE, (batch, 2), generator=generator).tolist()
        out.append(torch.stack([photo[:, top:top + DEGRADE_SIDE, left:left + DEGRADE_SIDE] for top, left in corners]))
    return out


def random_vgg19() -> dict:
    from torchvision.models import vgg19

    torch.manual_seed(0)
    return vgg19(weights=None).state_dict()


def measure(model: str, loop: str, batch: int, patch: int, steps: int) -> dict:
    """One row of ours, in this process: seconds per step, seconds degrading per step, peak RSS."""
    torch.manual_seed(0)
    generator = copy.deepcopy(load_model(model).network).float()
    perceptual = PerceptualLoss(vgg19_features(random_vgg19()))
    options = StepOptions(stage="gan", pool_size=batch * 2, patch=patch, discriminator_warmup=0,
                          discriminator_passes=loop)
    step = TrainingStep(generator, options, discriminator=UNetDiscriminatorSN(), perceptual=perceptual)
    work = ground_truths(steps + 1, batch)
    degrade(work[0], "realesrgan_x4", seed=0, batch_draws=True)  # warm-up
    start = time.perf_counter()
    for index, gt in enumerate(work[1:], start=1):
        degrade(gt, "realesrgan_x4", seed=index, batch_draws=True)
    degrading = (time.perf_counter() - start) / steps
    Path("/proc/self/clear_refs").write_text("5")  # the peak from here on: training, not building VGG19 and G
    step(work[0], 0)  # warm-up
    start = time.perf_counter()
    for index, gt in enumerate(work[1:], start=1):
        step(gt, index)
    per_step = (time.perf_counter() - start) / steps
    return {"per_step": per_step, "degrading": degrading, "peak_rss_mb": peak_rss_mb()}


def measure_basicsr(model: str, batch: int, patch: int, steps: int) -> dict:
    """BasicSR's row, in the reference venv, on PNG files of the crops our rows train on."""
    import basicsr_reference

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "experiments" / "pretrained_models").mkdir(parents=True)
        torch.save(random_vgg19(), root / "experiments" / "pretrained_models" / "vgg19-dcbb9e9d.pth")
        (root / "photos").mkdir()
        for index, image in enumerate(torch.cat(ground_truths(steps + 1, batch))):
            write_image(root / "photos" / f"{index:03d}.png", image[None])
        done = basicsr_reference.run_driver(["bench", str(root / "photos"), str(steps), str(batch), str(patch),
                                             BASICSR_NETWORKS[model]], root)
        if done.returncode:
            raise RuntimeError(f"BasicSR's step failed:\n{done.stdout}\n{done.stderr}")
        return json.loads(done.stdout.splitlines()[-1])


def peak_rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) / 1024


def speed(args: argparse.Namespace) -> None:
    dtype = training_dtype("auto", torch.device("cpu"))
    print(f"GAN stage (L1 + perceptual + GAN, D num_feat 64), batch {args.batch}, GT patch {args.patch} from "
          f"{DEGRADE_SIDE}² degraded, {args.steps} steps after a warm-up, best of {args.repeats} processes per row "
          f"(rows alternating), {torch.get_num_threads()} threads; ours: autocast {dtype}, channels_last")
    print("| model | step | it/s | s/step | vs BasicSR | peak RSS | degradation share |")
    print("|---|---|---|---|---|---|---|")
    for model in args.models:
        best: dict[str, dict] = {}
        for _ in range(args.repeats):
            for loop in LOOPS:
                command = [sys.executable, __file__, "--one", model, loop, "--batch", str(args.batch), "--patch",
                           str(args.patch), "--steps", str(args.steps)]
                done = subprocess.run(command, capture_output=True, text=True, check=True)
                row = json.loads(done.stdout.splitlines()[-1])
                if loop not in best or row["per_step"] < best[loop]["per_step"]:
                    best[loop] = row
        for loop, label in LOOPS.items():
            row = best[loop]
            print(f"| {model} | {label} | {1 / row['per_step']:.2f} | {row['per_step']:.2f} | "
                  f"{best['basicsr']['per_step'] / row['per_step']:.2f}x | {row['peak_rss_mb']:.0f} MB | "
                  f"{row['degrading'] / row['per_step']:.0%} |", flush=True)


def _photos(folder: Path, names: tuple[str, ...]) -> Path:
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        image = getattr(data, name)()
        image = (image[0] if isinstance(image, tuple) else image)[..., :3]  # a stereo pair's left view
        write_image(folder / f"{name}.png", torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float() / 255)
    return folder


def _run(args: argparse.Namespace, root: Path, name: str, stop_after: int | None = None,
         **options: object) -> list[dict]:
    config = build_config({"model": "realesr-animevideov3", "hr_dir": str(root / "hr"), "output_dir": str(root / name),
                           "losses": {"perceptual": 0.0}, "batch": args.batch, "patch": args.patch,
                           "degrade_size": args.degrade_size, "workers": 0, "log_every": 10, **options})
    asked = iter(range(10**9))
    train(config, should_stop=None if stop_after is None else lambda: next(asked) >= stop_after)
    return [json.loads(line) for line in (root / name / "metrics.jsonl").read_text().splitlines()]


def learning(args: argparse.Namespace) -> None:
    """Official and shared D passes from the same start (realesr-animevideov3, a fresh D after its warm-up, the
    official fine-tune's rates, no perceptual loss: VGG19's ImageNet weights are not to be had here)."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        _photos(root / "hr", TRAINING_PHOTOS)
        _photos(root / "val", (HELD_OUT,))
        runs = {passes: _run(args, root, passes, steps=args.learning_steps, discriminator_passes=passes,
                             val_dir=str(root / "val"), val_every=args.learning_steps // 3, samples=0)
                for passes in ("official", "shared")}
    print(f"GAN stage of realesr-animevideov3 (L1 + GAN, fresh D, warm-up {args.learning_steps // 10} steps), batch "
          f"{args.batch}, patch {args.patch} from {args.degrade_size}² degraded: D's mean real-minus-fake logit over the "
          f"last 10 steps, and validation PSNR on {HELD_OUT}")
    print("| step | official: D gap | shared: D gap | official: PSNR | shared: PSNR | official: it/s | shared: it/s |")
    print("|---|---|---|---|---|---|---|")
    rows = {passes: {row["step"]: row for row in metrics if "setup" not in row} for passes, metrics in runs.items()}
    for step in sorted(rows["official"]):
        if step % (args.learning_steps // 6) and step != args.learning_steps:
            continue
        cells = []
        for field in ("gap", "psnr", "it_per_s"):
            for passes in ("official", "shared"):
                row = rows[passes][step]
                value = (row["out_d_real"] - row["out_d_fake"] if field == "gap" else
                         row.get("validation", {}).get("psnr") if field == "psnr" else row["it_per_s"])
                cells.append("" if value is None else f"{value:.3f}" if field == "gap" else f"{value:.2f}")
        print(f"| {step} | " + " | ".join(cells) + " |", flush=True)


def warmup(args: argparse.Namespace) -> None:
    """A fresh D trained alone (G frozen) against RealESRGAN_x4plus at the official rate: its logit gap by step."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        _photos(root / "hr", TRAINING_PHOTOS)
        steps = args.warmup_steps  # a run caps the warm-up at a tenth of it: one ten times as long, stopped early
        metrics = _run(args, root, "warmup", stop_after=steps, model="RealESRGAN_x4plus", steps=10 * steps,
                       discriminator_warmup=steps, checkpoint_every=10 * steps)
    rows = [row for row in metrics if "setup" not in row and row.get("d_warmup")]
    print(f"A fresh UNetDiscriminatorSN trained alone against RealESRGAN_x4plus (batch {args.batch}, patch {args.patch} "
          f"from {args.degrade_size}² degraded by the official pipeline, lr 1e-4): mean real-minus-fake logit and D's "
          f"losses over each 10 steps")
    print("| step | D gap | l_d_real | l_d_fake |")
    print("|---|---|---|---|")
    for row in rows:
        print(f"| {row['step']} | {row['out_d_real'] - row['out_d_fake']:.3f} | {row['l_d_real']:.3f} | "
              f"{row['l_d_fake']:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["realesr-animevideov3", "RealESRGAN_x4plus"])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--patch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--degrade-size", type=int, default=400, help="--learning and --warmup: the degraded side")
    parser.add_argument("--repeats", type=int, default=2, help="processes per row, alternating rows; best kept")
    parser.add_argument("--learning", action="store_true", help="official vs shared D passes over a run")
    parser.add_argument("--learning-steps", type=int, default=300)
    parser.add_argument("--warmup", action="store_true", help="a fresh D's logit gap while it trains alone")
    parser.add_argument("--warmup-steps", type=int, default=600)
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "LOOP"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        model, loop = args.one
        row = (measure_basicsr(model, args.batch, args.patch, args.steps) if loop == "basicsr" else
               measure(model, loop, args.batch, args.patch, args.steps))
        print(json.dumps(row))
    elif args.learning:
        learning(args)
    elif args.warmup:
        warmup(args)
    else:
        speed(args)


if __name__ == "__main__":
    main()
