"""One iteration of Real-ESRGAN's recipe, in the official order: degrade ground truths on the device, trade them
through the pair pool, sharpen the targets, step G on its weighted losses with D frozen, then step D with separate real
and fake backward passes, then the EMA. A step whose loss is not finite is skipped and the loss is named."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..degradation import ops
from ..degradation.pipeline import DegradationConfig, degrade, get_preset
from ..errors import RealESRError
from ..imaging import check_images
from .ema import ModelEMA
from .losses import PerceptualLoss, charbonnier_loss, gan_loss, l1_loss, ldl_loss, ms_ssim_loss
from .pool import TrainingPairPool

MAX_SKIPPED_IN_A_ROW = 10


@dataclass(frozen=True)
class LossWeights:
    """Weights of the generator's losses; a weight of 0 leaves that loss out."""

    pixel: float = 1.0
    charbonnier: float = 0.0
    perceptual: float = 0.0
    gan: float = 0.0
    ldl: float = 0.0
    ms_ssim: float = 0.0


STAGE_LOSSES = {"net": LossWeights(), "gan": LossWeights(perceptual=1.0, gan=0.1)}  # the official two stages


class NonFiniteLossError(RealESRError):
    pass


class TrainingStep:
    """Holds what one iteration needs (networks, optimisers, EMA, pool, losses) and runs it on a batch of ground
    truths. Needs a discriminator exactly when the GAN weight is above 0, a perceptual loss when its weight is."""

    def __init__(self, generator: nn.Module, degradation: DegradationConfig | str | None, *,
                 weights: LossWeights = STAGE_LOSSES["net"], discriminator: nn.Module | None = None,
                 perceptual: PerceptualLoss | None = None, lr: float = 2e-4, discriminator_lr: float = 1e-4,
                 ema_decay: float = 0.999, pool_size: int = 180, gan_kind: str = "vanilla", seed: int = 0,
                 milestones: tuple[int, ...] = (), gamma: float = 0.5, sharpen_targets: bool | None = None) -> None:
        self.config = get_preset(degradation) if isinstance(degradation, str) else degradation
        # the official recipe trains on USM-sharpened targets, unless the preset says not to (bicubic fidelity)
        self.sharpen_targets = (sharpen_targets if sharpen_targets is not None
                                else self.config is None or self.config.sharpen_input)
        if (weights.gan > 0) != (discriminator is not None):
            raise RealESRError("a GAN weight above 0 needs a discriminator, and a discriminator needs a GAN weight")
        if weights.perceptual > 0 and perceptual is None:
            raise RealESRError("a perceptual weight above 0 needs a PerceptualLoss (VGG19 weights)")
        self.generator = generator.train().requires_grad_(True)  # loaded models come frozen for inference
        self.discriminator, self.perceptual = discriminator, perceptual
        self.weights, self.gan_kind, self.seed = weights, gan_kind, seed
        self.optimizer = torch.optim.Adam(generator.parameters(), lr=lr, betas=(0.9, 0.99))
        self.discriminator_optimizer = (torch.optim.Adam(discriminator.parameters(), lr=discriminator_lr,
                                                         betas=(0.9, 0.99)) if discriminator is not None else None)
        # MultiStep, stepped once per trained step (the official milestone equals the run's length: a constant LR)
        self.schedulers = [torch.optim.lr_scheduler.MultiStepLR(optimizer, list(milestones), gamma)
                           for optimizer in (self.optimizer, self.discriminator_optimizer) if optimizer is not None]
        self.ema = ModelEMA(generator, ema_decay)
        self.pool = TrainingPairPool(pool_size, torch.Generator().manual_seed(seed))
        self.skipped_in_a_row = 0

    def __call__(self, ground_truths: torch.Tensor, step: int, low: torch.Tensor | None = None) -> dict[str, float]:
        """Trains on `[B, 3, P, P]` ground truths in 0..1, degraded here, or on given `low` inputs (paired data, which
        the official recipe feeds without the pool); the logged values (or `skipped`, naming the loss)."""
        check_images(ground_truths, (3,))
        if low is not None:
            check_images(low, (3,))
            clean = ground_truths.float()
        elif self.config is None:
            raise RealESRError("a training step without a degradation preset trains on pairs: give it `low` inputs")
        else:
            degraded = degrade(ground_truths, self.config, seed=self.seed * 1_000_003 + step).degraded
            low, clean = self.pool.exchange(degraded, ground_truths.float())
        target = ops.on_colour(clean, ops.usm_sharpen) if self.sharpen_targets else clean
        if self.discriminator is not None:
            self.discriminator.requires_grad_(False)
        output = self.generator(low)
        if output.shape != target.shape:
            raise RealESRError(f"the generator made {list(output.shape)} from inputs {list(low.shape)}, but the "
                               f"targets are {list(target.shape)}: the inputs must be the targets divided by its scale")
        losses = self._generator_losses(low, output, target)
        logged = {name: loss.item() for name, loss in losses.items()}
        bad = next((name for name, value in logged.items() if not math.isfinite(value)), None)
        if bad is not None:
            return self._skip(bad)
        logged["lr"] = self.optimizer.param_groups[0]["lr"]
        self.optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        self.optimizer.step()
        if self.discriminator is not None:
            logged.update(self._discriminator_step(clean, output.detach().clone()))
        self.ema.update(self.generator)
        for scheduler in self.schedulers:
            scheduler.step()
        self.skipped_in_a_row = 0
        return logged

    def state_dict(self) -> dict:
        """Everything that decides the next steps (degradation draws are seeded by step): resuming from it is exact."""
        state = {"generator": self.generator.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "ema": self.ema.state_dict(), "pool": self.pool.state_dict(),
                 "schedulers": [scheduler.state_dict() for scheduler in self.schedulers],
                 "skipped_in_a_row": self.skipped_in_a_row}
        if self.discriminator is not None:
            state["discriminator"] = self.discriminator.state_dict()
            state["discriminator_optimizer"] = self.discriminator_optimizer.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        if ("discriminator" in state) != (self.discriminator is not None):
            raise RealESRError("this training state is from a run " + ("with" if "discriminator" in state else
                               "without") + " a discriminator; resume it with the same stage")
        self.generator.load_state_dict(state["generator"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.ema.module.load_state_dict(state["ema"])
        self.pool.load_state_dict(state["pool"])
        for scheduler, scheduler_state in zip(self.schedulers, state["schedulers"], strict=True):
            scheduler.load_state_dict(scheduler_state)
        self.skipped_in_a_row = int(state["skipped_in_a_row"])
        if self.discriminator is not None:
            self.discriminator.load_state_dict(state["discriminator"])
            self.discriminator_optimizer.load_state_dict(state["discriminator_optimizer"])

    def _generator_losses(self, low: torch.Tensor, output: torch.Tensor,
                          target: torch.Tensor) -> dict[str, torch.Tensor]:
        w, losses = self.weights, {}
        if w.pixel:
            losses["pixel"] = w.pixel * l1_loss(output, target)
        if w.charbonnier:
            losses["charbonnier"] = w.charbonnier * charbonnier_loss(output, target)
        if w.perceptual:
            losses["perceptual"] = w.perceptual * self.perceptual(output, target)
        if w.ms_ssim:
            losses["ms_ssim"] = w.ms_ssim * ms_ssim_loss(output, target)
        if w.ldl:
            with torch.no_grad():
                ema_output = self.ema.module(low)
            losses["ldl"] = w.ldl * ldl_loss(output, target, ema_output)
        if w.gan:
            losses["gan"] = w.gan * gan_loss(self.discriminator(output), True, self.gan_kind, for_discriminator=False)
        return losses

    def _discriminator_step(self, real: torch.Tensor, fake: torch.Tensor) -> dict[str, float]:
        self.discriminator.requires_grad_(True)
        self.discriminator_optimizer.zero_grad(set_to_none=True)
        real_logits = self.discriminator(real)
        real_loss = gan_loss(real_logits, True, self.gan_kind)
        real_loss.backward()
        fake_logits = self.discriminator(fake)
        fake_loss = gan_loss(fake_logits, False, self.gan_kind)
        fake_loss.backward()
        self.discriminator_optimizer.step()
        return {"d_real": real_loss.item(), "d_fake": fake_loss.item(),
                "d_real_logit": real_logits.mean().item(), "d_fake_logit": fake_logits.mean().item()}

    def _skip(self, loss_name: str) -> dict[str, float | str]:
        self.optimizer.zero_grad(set_to_none=True)
        self.skipped_in_a_row += 1
        if self.skipped_in_a_row >= MAX_SKIPPED_IN_A_ROW:
            raise NonFiniteLossError(f"the {loss_name} loss was not finite {self.skipped_in_a_row} steps in a row; "
                                     f"training stopped (lower the learning rate, or check the data for NaNs)")
        return {"skipped": loss_name}
