"""One iteration of Real-ESRGAN's recipe, in the official order: degrade ground truths on the device, crop the pairs
to the patch, trade them through the pair pool, sharpen the targets, step G on its weighted losses with D's weights
left alone, then step D with separate real and fake backward passes, then the EMA. A step whose loss is not finite is
skipped and the loss is named.

G's adversarial loss and D's fake pass share one D forward: the official step runs it twice, on the same images with
the same weights (D is stepped after both), so the second forward only repeats spectral norm's power iteration. Each
network still gets its own backward pass: G's gradient through D leaves D's weights alone, D's fake pass gets its own.

Under torch.distributed (torchrun) G and D train as DistributedDataParallel (`distributed`); the EMA, the pool and
the degradation draws stay per process, and each rank draws from its own seed."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator

import torch
from torch import nn

from ..degradation import ops
from ..degradation.pipeline import degrade
from ..errors import RealESRError
from ..imaging import check_images
from ..upscaling.device import cpu_has_native_bf16
from . import distributed
from .config import ConfigError, StepOptions
from .data import paired_random_crop
from .ema import ModelEMA
from .losses import PerceptualLoss, charbonnier_loss, gan_loss, l1_loss, ldl_loss, ms_ssim_loss
from .pool import TrainingPairPool

MAX_SKIPPED_IN_A_ROW = 10


class NonFiniteLossError(RealESRError):
    pass


def training_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """autocast's dtype: `auto` is bf16 on CUDA cards and CPUs with native bf16, else fp32 (None)."""
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("fp16 training needs a CUDA device (on a CPU use bf16 or fp32)")
    if precision == "auto":
        native = torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_has_native_bf16()
        return torch.bfloat16 if native else None
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


class TrainingStep:
    """Holds what one iteration needs (networks, optimisers, EMA, pool, losses) and runs it on a batch of ground
    truths, as `options` say. Needs a discriminator exactly when the GAN weight is above 0, a perceptual loss when its
    weight is.

    Degraded pairs are cropped to `options.patch` (one random place per batch, as the official step does after
    degrading 400² ground truths). `accumulate` runs the batch as that many micro-batches whose gradients add up to
    the whole batch's (less memory; G's update is the same, D's close: spectral norm's power iteration runs once per
    micro-batch, so each micro-batch meets a slightly different sigma). `precision` picks autocast's dtype (fp16
    brings a GradScaler); `grad_clip` is the largest gradient norm of each network (0: no clipping)."""

    def __init__(self, generator: nn.Module, options: StepOptions | None = None, *,
                 discriminator: nn.Module | None = None, perceptual: PerceptualLoss | None = None) -> None:
        self.options = options = options if options is not None else StepOptions()
        self.degradation = options.degradation_config
        # the official recipe trains on USM-sharpened targets, unless the preset says not to (bicubic fidelity)
        self.sharpen_targets = self.degradation is None or self.degradation.sharpen_input
        weights = options.loss_weights
        if (weights.gan > 0) != (discriminator is not None):
            raise RealESRError("a GAN weight above 0 needs a discriminator, and a discriminator needs a GAN weight")
        if weights.perceptual > 0 and perceptual is None:
            raise RealESRError("a perceptual weight above 0 needs a PerceptualLoss (VGG19 weights)")
        self.memory_format = torch.channels_last if options.channels_last else torch.contiguous_format
        self.generator = generator.train().requires_grad_(True).to(memory_format=self.memory_format)
        if discriminator is not None:
            discriminator.train().requires_grad_(True).to(memory_format=self.memory_format)
        self.discriminator, self.perceptual = discriminator, perceptual
        self.weights, self.gan_kind, self.seed, self.patch = weights, options.gan_kind, options.seed, options.patch
        self.accumulate, self.grad_clip = options.accumulate, options.grad_clip
        device = next(generator.parameters()).device
        self.amp_dtype = training_dtype(options.precision, device)
        self.rank = distributed.rank()
        # the networks the gradients flow through: DDP wrappers under torchrun (D's spectral-norm vectors follow
        # identical weights on every rank, so its buffers need no broadcast), the modules themselves otherwise
        self.generator_ddp = distributed.distributed(self.generator, broadcast_buffers=True)
        self.discriminator_ddp = (distributed.distributed(discriminator, broadcast_buffers=False)
                                  if discriminator is not None else None)
        self.run_generator: Callable[[torch.Tensor], torch.Tensor] = (
            torch.compile(self.generator_ddp) if options.compile else self.generator_ddp)
        self.optimizer = _adam(generator, options.lr)
        self.discriminator_optimizer = (_adam(discriminator, options.discriminator_lr)
                                        if discriminator is not None else None)
        # MultiStep, stepped once per trained step (the official milestone equals the run's length: a constant LR)
        self.schedulers = [torch.optim.lr_scheduler.MultiStepLR(optimizer, list(options.milestones), options.gamma)
                           for optimizer in (self.optimizer, self.discriminator_optimizer) if optimizer is not None]
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)
        self.ema = ModelEMA(generator, options.ema_decay)
        self.pool = (TrainingPairPool(options.pool_size, torch.Generator().manual_seed(self._seed_for(0, "pool")))
                     if options.pool_size else None)
        self.skipped_in_a_row = 0

    def __call__(self, ground_truths: torch.Tensor, step: int, low: torch.Tensor | None = None) -> dict[str, float]:
        """Trains on `[B, 3, S, S]` ground truths in 0..1, degraded here, or on given `low` inputs (paired data, which
        the official recipe feeds without the pool); the logged values (or `skipped`, naming the loss)."""
        check_images(ground_truths, (3,))
        if ground_truths.shape[0] % self.accumulate:
            raise RealESRError(f"a batch of {ground_truths.shape[0]} cannot be split into {self.accumulate} "
                               f"micro-batches: the batch must be a multiple of accumulate")
        if low is not None:
            check_images(low, (3,))
            clean = ground_truths.float()
        elif self.degradation is None:
            raise RealESRError("a training step without a degradation preset trains on pairs: give it `low` inputs")
        else:
            degraded = degrade(ground_truths, self.degradation, seed=self._seed_for(step, "degradation")).degraded
            low, clean = self._crop(degraded, ground_truths.float(), step)
            if self.pool is not None:
                low, clean = self.pool.exchange(low, clean)
        target = ops.on_colour(clean, ops.usm_sharpen) if self.sharpen_targets else clean
        low, clean, target = (x.contiguous(memory_format=self.memory_format) for x in (low, clean, target))
        logged = self._generator_step(low, target)
        if "skipped" in logged:
            return logged
        if self.discriminator is not None:
            logged.update(self._discriminator_step(clean))
        self.scaler.update()
        self.ema.update(self.generator)
        for scheduler in self.schedulers:
            scheduler.step()
        self.skipped_in_a_row = 0
        return logged

    def state_dict(self) -> dict:
        """Everything that decides the next steps (degradation draws are seeded by step): resuming from it is exact."""
        state = {"generator": self.generator.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "ema": self.ema.state_dict(), "pool": self.pool.state_dict() if self.pool else None,
                 "schedulers": [scheduler.state_dict() for scheduler in self.schedulers],
                 "scaler": self.scaler.state_dict(), "skipped_in_a_row": self.skipped_in_a_row}
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
        if self.pool is not None and state["pool"] is not None:
            self.pool.load_state_dict(state["pool"])
        for scheduler, scheduler_state in zip(self.schedulers, state["schedulers"], strict=True):
            scheduler.load_state_dict(scheduler_state)
        self.scaler.load_state_dict(state["scaler"])
        self.skipped_in_a_row = int(state["skipped_in_a_row"])
        if self.discriminator is not None:
            self.discriminator.load_state_dict(state["discriminator"])
            self.discriminator_optimizer.load_state_dict(state["discriminator_optimizer"])

    def _seed_for(self, step: int, purpose: str) -> int:
        """Independent, replayable draws per step, purpose and rank (ranks must not degrade alike)."""
        offset = {"degradation": 0, "crop": 1, "pool": 2}[purpose]
        return ((self.seed * 1_000_003 + step) * 8 + offset) * 65_537 + self.rank

    def _crop(self, low: torch.Tensor, high: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.patch is None or self.patch == high.shape[-1] == high.shape[-2]:
            return low, high
        scale = high.shape[-1] // low.shape[-1]
        generator = torch.Generator().manual_seed(self._seed_for(step, "crop"))
        return paired_random_crop(low, high, self.patch, scale, generator)

    def _autocast(self) -> contextlib.AbstractContextManager:
        device_type = next(self.generator.parameters()).device.type
        return torch.autocast(device_type, self.amp_dtype, enabled=self.amp_dtype is not None)

    def _generator_step(self, low: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        """Steps G, and leaves D's fake-pass gradients in D; the logged values, or `skipped`."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.discriminator is not None:
            self.discriminator_optimizer.zero_grad(set_to_none=True)
        totals: dict[str, float] = {}
        for last, (low_part, target_part) in _micro_batches(self.accumulate, low, target):
            with distributed.no_sync(self.generator_ddp, last), self._autocast():
                output = self.run_generator(low_part)
                if output.shape != target_part.shape:
                    raise RealESRError(
                        f"the generator made {list(output.shape)} from inputs {list(low_part.shape)}, but the targets "
                        f"are {list(target_part.shape)}: the inputs must be the targets divided by its scale")
                output = output.float()  # losses in fp32: autocast's bf16/fp16 outputs lose the small differences
                losses, fake = self._generator_losses(low_part, output, target_part)
            values = {name: loss.item() for name, loss in losses.items()}
            bad = next((name for name, value in values.items() if not math.isfinite(value)), None)
            if bad is not None:
                return self._skip(bad)
            self._generator_backward(losses, output, fake)
            if fake is not None:
                values.update(self._fake_backward(fake[1]))
            for name, value in values.items():
                totals[name] = totals.get(name, 0.0) + value / self.accumulate
        totals["lr"] = self.optimizer.param_groups[0]["lr"]
        self._optimizer_step(self.optimizer, self.generator)
        return totals

    def _generator_backward(self, losses: dict[str, torch.Tensor], output: torch.Tensor,
                            fake: tuple[torch.Tensor, torch.Tensor] | None) -> None:
        """Backpropagates G's losses into G only; the GAN loss reaches G through D's input, not D's weights."""
        scaled = {name: self.scaler.scale(loss / self.accumulate) for name, loss in losses.items()}
        if fake is None:
            sum(scaled.values()).backward()
            return
        detached_output, _ = fake
        (through_d,) = torch.autograd.grad(scaled.pop("gan"), detached_output, retain_graph=True)
        tensors, gradients = [output], [through_d]
        if scaled:
            tensors.append(sum(scaled.values()))
            gradients.append(None)
        torch.autograd.backward(tensors, gradients)

    def _fake_backward(self, logits: torch.Tensor) -> dict[str, float]:
        """D's loss on G's outputs from the logits G's loss used, backpropagated into D's weights on this process
        (DDP averages it with the real pass, whose backward is the synchronised one)."""
        loss = gan_loss(logits, False, self.gan_kind)
        torch.autograd.backward(self.scaler.scale(loss / self.accumulate),
                                inputs=list(self.discriminator.parameters()))
        return {"d_fake": loss.item(), "d_fake_logit": logits.mean().item()}

    def _generator_losses(self, low: torch.Tensor, output: torch.Tensor, target: torch.Tensor
                          ) -> tuple[dict[str, torch.Tensor], tuple[torch.Tensor, torch.Tensor] | None]:
        """G's weighted losses, and for the GAN loss D's input (G's output cut from G's graph) and its logits."""
        w, losses, fake = self.weights, {}, None
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
                ema_output = self.ema.module(low).float()
            losses["ldl"] = w.ldl * ldl_loss(output, target, ema_output)
        if w.gan:
            # the module itself, not its DDP wrapper: the fake pass's gradients stay on this process until the real
            # pass's synchronised backward (as in DDP's no_sync)
            detached_output = output.detach().contiguous(memory_format=self.memory_format).requires_grad_(True)
            logits = self.discriminator(detached_output).float()
            losses["gan"] = w.gan * gan_loss(logits, True, self.gan_kind, for_discriminator=False)
            fake = detached_output, logits
        return losses, fake

    def _discriminator_step(self, real: torch.Tensor) -> dict[str, float]:
        """D's real pass (its fake pass ran with G's step) and D's update."""
        totals = {"d_real": 0.0, "d_real_logit": 0.0}
        for last, (real_part,) in _micro_batches(self.accumulate, real):
            with distributed.no_sync(self.discriminator_ddp, last):
                with self._autocast():
                    logits = self.discriminator_ddp(real_part).float()
                    loss = gan_loss(logits, True, self.gan_kind)
                self.scaler.scale(loss / self.accumulate).backward()
                totals["d_real"] += loss.item() / self.accumulate
                totals["d_real_logit"] += logits.mean().item() / self.accumulate
        self._optimizer_step(self.discriminator_optimizer, self.discriminator)
        return totals

    def _optimizer_step(self, optimizer: torch.optim.Optimizer, network: nn.Module) -> None:
        if self.grad_clip:
            self.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(network.parameters(), self.grad_clip)
        self.scaler.step(optimizer)

    def _skip(self, loss_name: str) -> dict[str, float | str]:
        self.optimizer.zero_grad(set_to_none=True)
        self.skipped_in_a_row += 1
        if self.skipped_in_a_row >= MAX_SKIPPED_IN_A_ROW:
            raise NonFiniteLossError(f"the {loss_name} loss was not finite {self.skipped_in_a_row} steps in a row; "
                                     f"training stopped (lower the learning rate, or check the data for NaNs)")
        return {"skipped": loss_name}


def _adam(network: nn.Module, lr: float) -> torch.optim.Adam:
    """The official optimiser (Adam, betas 0.9 / 0.99); fused on CPUs and GPUs: one kernel instead of a dozen
    per parameter list (D's update 11 -> 2 ms on this CPU), the same update up to rounding."""
    fused = next(network.parameters()).device.type in ("cpu", "cuda")
    return torch.optim.Adam(network.parameters(), lr=lr, betas=(0.9, 0.99), fused=fused)


def _micro_batches(count: int, *batches: torch.Tensor) -> Iterator[tuple[bool, tuple[torch.Tensor, ...]]]:
    parts = [batch.chunk(count) for batch in batches]
    for index in range(count):
        yield index == count - 1, tuple(part[index] for part in parts)
