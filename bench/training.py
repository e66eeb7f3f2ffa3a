"""Benchmark: the GAN stage as BasicSR writes it (plain fp32 eager, contiguous tensors) against our TrainingStep at
its defaults, in one run, with it/s, peak RSS and the share of each step spent synthesising degradations.

    python bench/training.py                 # realesr-animevideov3 and RealESRGAN_x4plus, batch 4, GT patch 128
    python bench/training.py --models RealESRGAN_x4plus --batch 12 --patch 256     # the official size (a GPU)

Both loops do the official step: 400² ground truths degraded on the device (our batched pipeline in both: BasicSR's
per-image numpy kernels would only slow the baseline), a random crop to the patch, the pair pool, USM-sharpened
targets, G on L1 + perceptual + GAN leaving D's weights alone, D on separate real and fake backward passes, the EMA
(ours takes D's fake logits from the forward G's GAN loss made; the plain loop runs that forward again). VGG19 has
random weights (the ImageNet ones are not to be had offline; the cost is the same). Each row runs in its own process;
its peak RSS is the high-water mark of the training steps (reset after the networks are built, Linux); each row is
the best of `--repeats` processes, run alternately with the other loop's, since this machine is shared. The
degradation share is `degrade` on the same batches, timed in the same process before the steps, over a step.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from realesr_core import load_model  # noqa: E402
from realesr_core.degradation import ops  # noqa: E402
from realesr_core.degradation.pipeline import degrade  # noqa: E402
from realesr_core.models.archs.discriminator import UNetDiscriminatorSN  # noqa: E402
from realesr_core.training import (  # noqa: E402
    ModelEMA,
    PerceptualLoss,
    StepOptions,
    TrainingPairPool,
    TrainingStep,
    gan_loss,
    l1_loss,
    paired_random_crop,
    training_dtype,
    vgg19_features,
)

DEGRADE_SIDE = 400
LOOPS = {"plain": "BasicSR-style fp32 eager", "ours": "realesr TrainingStep, defaults"}


def ground_truths(count: int, batch: int) -> list[torch.Tensor]:
    from skimage import data

    photo = torch.from_numpy(data.astronaut().copy()).permute(2, 0, 1).float() / 255
    generator = torch.Generator().manual_seed(0)
    out = []
    for _ in range(count):
        corners = torch.randint(512 - DEGRADE_SIDE, (batch, 2), generator=generator).tolist()
        out.append(torch.stack([photo[:, top:top + DEGRADE_SIDE, left:left + DEGRADE_SIDE] for top, left in corners]))
    return out


class PlainStep:
    """The official `optimize_parameters` with its `feed_data`, written out the way BasicSR does it."""

    def __init__(self, generator: torch.nn.Module, perceptual: PerceptualLoss, patch: int, pool_size: int) -> None:
        self.generator = generator.train().requires_grad_(True)  # loaded models come frozen for inference
        self.discriminator, self.perceptual = UNetDiscriminatorSN(), perceptual
        self.optimizer_g = torch.optim.Adam(self.generator.parameters(), lr=1e-4, betas=(0.9, 0.99))
        self.optimizer_d = torch.optim.Adam(self.discriminator.parameters(), lr=1e-4, betas=(0.9, 0.99))
        self.ema, self.pool, self.patch = ModelEMA(self.generator), TrainingPairPool(pool_size), patch

    def __call__(self, gt: torch.Tensor, step: int) -> None:
        lq = degrade(gt, "realesrgan_x4", seed=step).degraded
        lq, gt = paired_random_crop(lq, gt, self.patch, 4, torch.Generator().manual_seed(step))
        lq, gt = self.pool.exchange(lq, gt)
        gt_usm = ops.on_colour(gt, ops.usm_sharpen)
        self.discriminator.requires_grad_(False)
        self.optimizer_g.zero_grad()
        output = self.generator(lq)
        loss = (l1_loss(output, gt_usm) + self.perceptual(output, gt_usm)
                + 0.1 * gan_loss(self.discriminator(output), True, for_discriminator=False))
        loss.backward()
        self.optimizer_g.step()
        self.discriminator.requires_grad_(True)
        self.optimizer_d.zero_grad()
        gan_loss(self.discriminator(gt), True).backward()
        gan_loss(self.discriminator(output.detach().clone()), False).backward()
        self.optimizer_d.step()
        self.ema.update(self.generator)


def measure(model: str, loop: str, batch: int, patch: int, steps: int) -> dict:
    """One row, in this process: seconds per step, seconds degrading per step, peak RSS."""
    torch.manual_seed(0)
    generator = copy.deepcopy(load_model(model).network).float()
    perceptual = PerceptualLoss(vgg19_features(random_vgg19()))
    if loop == "plain":
        step = PlainStep(generator, perceptual, patch, pool_size=batch * 2)
    else:
        options = StepOptions(stage="gan", degradation="realesrgan_x4", lr=1e-4, pool_size=batch * 2, patch=patch)
        step = TrainingStep(generator, options, discriminator=UNetDiscriminatorSN(), perceptual=perceptual)
    work = ground_truths(steps + 1, batch)
    degrade(work[0], "realesrgan_x4", seed=0)  # warm-up
    start = time.perf_counter()
    for index, gt in enumerate(work[1:], start=1):
        degrade(gt, "realesrgan_x4", seed=index)
    degrading = (time.perf_counter() - start) / steps
    Path("/proc/self/clear_refs").write_text("5")  # the peak from here on: training, not building VGG19 and G
    step(work[0], 0)  # warm-up
    start = time.perf_counter()
    for index, gt in enumerate(work[1:], start=1):
        step(gt, index)
    per_step = (time.perf_counter() - start) / steps
    return {"per_step": per_step, "degrading": degrading, "peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) / 1024


def random_vgg19() -> dict:
    from torchvision.models import vgg19

    torch.manual_seed(0)
    return vgg19(weights=None).state_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["realesr-animevideov3", "RealESRGAN_x4plus"])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--patch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2, help="processes per row, alternating loops; best kept")
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "LOOP"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(*args.one, args.batch, args.patch, args.steps)))
        return
    dtype = training_dtype("auto", torch.device("cpu"))
    print(f"GAN stage (L1 + perceptual + GAN, D num_feat 64), batch {args.batch}, GT patch {args.patch} from "
          f"{DEGRADE_SIDE}² degraded, {args.steps} steps after a warm-up, best of {args.repeats} processes per row "
          f"(plain and ours alternating), {torch.get_num_threads()} threads; ours: autocast {dtype}, channels_last")
    print("| model | loop | it/s | s/step | vs plain | peak RSS | degradation share |")
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
                  f"{best['plain']['per_step'] / row['per_step']:.2f}x | {row['peak_rss_mb']:.0f} MB | "
                  f"{row['degrading'] / row['per_step']:.0%} |", flush=True)


if __name__ == "__main__":
    main()
