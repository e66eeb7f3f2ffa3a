"""Benchmark: TrainingStep's GAN stage on this machine, and the share of each step spent synthesising degradations.

    python bench/training.py                 # realesr-animevideov3 and RealESRGAN_x4plus, batch 4, GT patch 128

The perceptual loss runs on VGG19 with random weights (the ImageNet ones are not to be had offline; the cost is the
same). The degradation share is the time of `degrade` on the same batches, measured in the same run, over the time of
whole steps. The issue's baseline (a plain fp32 eager re-creation of BasicSR's step) is not written yet.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from realesr_core import load_model  # noqa: E402
from realesr_core.degradation.pipeline import degrade  # noqa: E402
from realesr_core.models.archs.discriminator import UNetDiscriminatorSN  # noqa: E402
from realesr_core.training.losses import PerceptualLoss, vgg19_features  # noqa: E402
from realesr_core.training.step import STAGE_LOSSES, TrainingStep  # noqa: E402


def batches(count: int, batch: int, patch: int) -> list[torch.Tensor]:
    from skimage import data

    photo = torch.from_numpy(data.astronaut().copy()).permute(2, 0, 1).float() / 255
    generator = torch.Generator().manual_seed(0)
    out = []
    for _ in range(count):
        corners = torch.randint(512 - patch, (batch, 2), generator=generator).tolist()
        out.append(torch.stack([photo[:, top:top + patch, left:left + patch] for top, left in corners]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["realesr-animevideov3", "RealESRGAN_x4plus"])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--patch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    vgg = vgg19_features(torchvision_random_weights())
    work = batches(args.steps + 1, args.batch, args.patch)
    print(f"GAN stage (L1 + perceptual + GAN, D num_feat 64), batch {args.batch}, GT patch {args.patch}, "
          f"{torch.get_num_threads()} threads")
    print(f"{'model':24} {'it/s':>6} {'s/step':>7} {'degradation share':>18}")
    for name in args.models:
        step = TrainingStep(copy.deepcopy(load_model(name).module).float(), "realesrgan_x4",
                            weights=STAGE_LOSSES["gan"], discriminator=UNetDiscriminatorSN(),
                            perceptual=PerceptualLoss(vgg), pool_size=args.batch * 2)
        step(work[0], 0)  # warm-up
        start = time.perf_counter()
        for index, ground_truths in enumerate(work[1:], start=1):
            step(ground_truths, index)
        per_step = (time.perf_counter() - start) / args.steps
        start = time.perf_counter()
        for index, ground_truths in enumerate(work[1:], start=1):
            degrade(ground_truths, "realesrgan_x4", seed=index)
        degrading = (time.perf_counter() - start) / args.steps
        print(f"{name:24} {1 / per_step:6.2f} {per_step:7.2f} {degrading / per_step:17.0%}", flush=True)


def torchvision_random_weights() -> dict:
    from torchvision.models import vgg19

    torch.manual_seed(0)
    return vgg19(weights=None).state_dict()


if __name__ == "__main__":
    main()
