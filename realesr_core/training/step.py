"""One iteration of Real-ESRGAN's recipe, in the official order: degrade ground truths on the device, crop the pairs
to the patch, trade them through the pair pool, sharpen the targets, step G on its weighted losses with D frozen,
then step D on the real images and then on G's outputs (separate forward and backward passes), then the EMA. A step
whose loss is not finite is skipped and the loss is named.

D runs three times a step, as in BasicSR's `optimize_parameters`: in train mode each forward of a spectral-norm layer
advances its power iteration, so the order and number of D's forwards are part of the official step (a test replays
BasicSR's step). `discriminator_passes="shared"` takes D's fake logits from the forward of G's GAN loss instead: one
D forward less, not the official step (docs/training.md has what it changes). The first `discriminator_warmup` steps
train D alone, G frozen (BasicSR's `net_d_init_iters`), so that G's GAN loss starts against a D that has learnt
something. The net stage sharpens the whole ground truths before cropping them, as the official RealESRNet model.

Under torch.distributed (torchrun) G and D train as DistributedDataParallel (`distributed`); the EMA, the pool and
the degradation draws stay per process, and each rank draws from its own seed."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
import warnings
from collections.abc import Callable, Iterator

import torch
from torch import nn

from ..degradation import ops
from ..degradation.pipeline import degrade
from ..errors import RealESRError
from ..image_tensors import check_images
from ..upscaling.device import training_dtype as auto_training_dtype
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
    """autocast's dtype, None for fp32: `auto` is bf16 where the device has it natively, fp16 (with a GradScaler) on
    cards with fast fp16 but no native bf16, else fp32."""
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("fp16 training needs a CUDA device (on a CPU use bf16 or fp32)")
    chosen = (auto_training_dtype(device) if precision == "auto" else
              {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision])
    return None if chosen == torch.float32 else chosen


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
        # the official recipe trains on USM-sharpened targets, unless the preset says not to (bicubic fidelity);
        # RealESRNet (no discriminator) sharpens the whole ground truths once, degrades them and crops its targets
        # from them, RealESRGAN sharpens its crops after the pool
        self.sharpen_targets = self.degradation is None or self.degradation.sharpen_input
        self.sharpen_before_crop = (self.sharpen_targets and options.stage == "net" and discriminator is None
                                    and self.degradation is not None)
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
        self.optimizer = _adam(generator, options.generator_lr)
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
        # A NaN in a batch shows as a non-finite loss, skipped by name: no finite check, which would make the host
        # wait for the device every step.
        check_images(ground_truths, (3,), finite=False)
        if ground_truths.shape[0] % self.accumulate:
            raise RealESRError(f"a batch of {ground_truths.shape[0]} cannot be split into {self.accumulate} "
                               f"micro-batches: the batch must be a multiple of accumulate")
        if low is not None:
            check_images(low, (3,), finite=False)
            clean = ground_truths.float()
            target = _sharpened(clean) if self.sharpen_targets else clean
        elif self.degradation is None:
            raise RealESRError("a training step without a degradation preset trains on pairs: give it `low` inputs")
        else:
            low, clean, target = self._synthesise(ground_truths, step)
        low, clean, target = (x.contiguous(memory_format=self.memory_format) for x in (low, clean, target))
        warming_up = self.discriminator is not None and step < self.options.discriminator_warmup
        logged, fakes = self._generator_step(low, target, train=not warming_up)
        if "skipped" in logged:
            return logged
        if self.discriminator is not None:
            shared = self.options.discriminator_passes == "shared" and not warming_up
            logged.update(self._discriminator_step(clean, None if shared else fakes))
        self.scaler.update()
        self.ema.update(self.generator)
        with warnings.catch_warnings():  # during D's warm-up G's optimiser does not step, yet its schedule goes on
            warnings.filterwarnings("ignore", re.escape("Detected call of `lr_scheduler.step()` before"))
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
        return (((self.seed * 1_000_003 + step) * 8 + offset) * 65_537 + self.rank) % 2**63

    def _synthesise(self, ground_truths: torch.Tensor, step: int
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Degraded inputs, clean images (D's real ones) and G's targets, cropped and traded through the pool."""
        high = ground_truths.float()
        degradation = self.degradation
        if self.sharpen_before_crop:  # the ESRNet stage: the pool trades sharpened targets, nothing sharpens again
            high = _sharpened(high)
            degradation = dataclasses.replace(degradation, sharpen_input=False)  # the pipeline would sharpen again
        degraded = degrade(high, degradation, seed=self._seed_for(step, "degradation"),
                           batch_draws=self.options.degradation_draws == "batch").degraded
        low, high = self._crop(degraded, high, step)
        if self.pool is not None:
            low, high = self.pool.exchange(low, high)
        if self.sharpen_before_crop or not self.sharpen_targets:
            return low, high, high
        return low, high, _sharpened(high)

    def _crop(self, low: torch.Tensor, high: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.patch == high.shape[-1] == high.shape[-2]:
            return low, high
        scale = high.shape[-1] // low.shape[-1]
        generator = torch.Generator().manual_seed(self._seed_for(step, "crop"))
        return paired_random_crop(low, high, self.patch, scale, generator)

    def _autocast(self) -> contextlib.AbstractContextManager:
        device_type = next(self.generator.parameters()).device.type
        return torch.autocast(device_type, self.amp_dtype, enabled=self.amp_dtype is not None)

    def _generator_step(self, low: torch.Tensor, target: torch.Tensor, train: bool = True
                        ) -> tuple[dict[str, float], torch.Tensor | None]:
        """Steps G (unless `train` is off: D's warm-up), with D frozen; the logged values (or `skipped`) and G's
        outputs for D's fake pass. With shared D passes, D's fake-pass gradients are left in D."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.discriminator is not None:
            self.discriminator_optimizer.zero_grad(set_to_none=True)
        totals: dict[str, float | torch.Tensor] = {"lr": self.optimizer.param_groups[0]["lr"]}
        outputs = []
        # G's GAN loss moves G only: the official step freezes D for it; shared passes keep D's graph for the fake pass
        frozen = self.discriminator if self.options.discriminator_passes == "official" else None
        for last, (low_part, target_part) in _micro_batches(self.accumulate, low, target):
            with (distributed.no_sync(self.generator_ddp, last), self._autocast(), torch.set_grad_enabled(train),
                  _frozen(frozen)):
                output = self.run_generator(low_part)
                if output.shape != target_part.shape:
                    raise RealESRError(
                        f"the generator made {list(output.shape)} from inputs {list(low_part.shape)}, but the targets "
                        f"are {list(target_part.shape)}: the inputs must be the targets divided by its scale")
                output = output.float()  # losses in fp32: autocast's bf16/fp16 outputs lose the small differences
                outputs.append(output.detach())
                if not train:
                    continue
                losses, shared_fake = self._generator_losses(low_part, output, target_part)
            values = read_all({name: loss.detach() for name, loss in losses.items()})  # one host wait
            bad = next((name for name, value in values.items() if not math.isfinite(value)), None)
            if bad is not None:
                return self._skip(bad), None
            self._generator_backward(losses, output, shared_fake)
            if shared_fake is not None:
                values.update(self._fake_backward(shared_fake[1]))
            for name, value in values.items():
                totals[name] = totals.get(name, 0.0) + value / self.accumulate
        if train:
            self._optimizer_step(self.optimizer, self.generator)
        return read_all(totals), torch.cat(outputs)

    def _generator_backward(self, losses: dict[str, torch.Tensor], output: torch.Tensor,
                            shared_fake: tuple[torch.Tensor, torch.Tensor] | None) -> None:
        """Backpropagates G's losses into G only: D is frozen, and with shared D passes G's GAN loss reaches G
        through D's input, cut from G's graph, whose logits D's fake pass reuses."""
        scaled = {name: self.scaler.scale(loss / self.accumulate) for name, loss in losses.items()}
        if shared_fake is None:
            sum(scaled.values()).backward()
            return
        detached_output, _ = shared_fake
        (through_d,) = torch.autograd.grad(scaled.pop("gan"), detached_output, retain_graph=True)
        tensors, gradients = [output], [through_d]
        if scaled:
            tensors.append(sum(scaled.values()))
            gradients.append(None)
        torch.autograd.backward(tensors, gradients)

    def _fake_backward(self, logits: torch.Tensor) -> dict[str, float]:
        """Shared D passes: D's loss on G's outputs from the logits G's loss used, backpropagated into D's weights
        on this process (DDP averages it with the real pass, whose backward is the synchronised one)."""
        loss = gan_loss(logits, False, self.gan_kind)
        torch.autograd.backward(self.scaler.scale(loss / self.accumulate),
                                inputs=list(self.discriminator.parameters()))
        return {"d_fake": loss.detach(), "d_fake_logit": logits.mean().detach()}  # read with the step's other values

    def _generator_losses(self, low: torch.Tensor, output: torch.Tensor, target: torch.Tensor
                          ) -> tuple[dict[str, torch.Tensor], tuple[torch.Tensor, torch.Tensor] | None]:
        """G's weighted losses; with shared D passes also D's input (G's output cut from G's graph) and its logits,
        which D's fake pass reuses."""
        w, losses, shared_fake = self.weights, {}, None
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
            # the module itself, not its DDP wrapper: D is frozen here, and a shared fake pass's gradients stay on
            # this process until the real pass's synchronised backward (as in DDP's no_sync)
            if self.options.discriminator_passes == "shared":
                d_input = output.detach().contiguous(memory_format=self.memory_format).requires_grad_(True)
            else:
                d_input = output.contiguous(memory_format=self.memory_format)
            logits = self.discriminator(d_input).float()
            losses["gan"] = w.gan * gan_loss(logits, True, self.gan_kind, for_discriminator=False)
            if self.options.discriminator_passes == "shared":
                shared_fake = d_input, logits
        return losses, shared_fake

    def _discriminator_step(self, real: torch.Tensor, fakes: torch.Tensor | None) -> dict[str, float]:
        """D's real pass, then its fake pass on G's outputs `fakes` (None: it ran with G's step), each with its own
        backward, and D's update."""
        passes = [("real", real, True)] + ([("fake", fakes, False)] if fakes is not None else [])
        totals: dict[str, float | torch.Tensor] = {}
        for last, parts in _micro_batches(self.accumulate, *(images for _, images, _ in passes)):
            with distributed.no_sync(self.discriminator_ddp, last):
                for (name, _, is_real), images in zip(passes, parts, strict=True):
                    with self._autocast():
                        logits = self.discriminator_ddp(images.contiguous(memory_format=self.memory_format)).float()
                        loss = gan_loss(logits, is_real, self.gan_kind)
                    self.scaler.scale(loss / self.accumulate).backward()
                    totals[f"d_{name}"] = totals.get(f"d_{name}", 0.0) + loss.detach() / self.accumulate
                    totals[f"d_{name}_logit"] = (totals.get(f"d_{name}_logit", 0.0)
                                                 + logits.mean().detach() / self.accumulate)
        self._optimizer_step(self.discriminator_optimizer, self.discriminator)
        return read_all(totals)

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


def _sharpened(images: torch.Tensor) -> torch.Tensor:
    """USM-sharpened RGB targets in 0..1 (`ops.on_colour` without its checks: the step checked the batch)."""
    return ops.usm_sharpen(images).clamp(0, 1)


def read_all(values: dict[str, torch.Tensor | float]) -> dict[str, float]:
    """The logged values as floats, the tensors among them read from the device in one transfer (a `.item()` each
    would make the host wait for the device once per value: ten times a step)."""
    tensors = {name: value for name, value in values.items() if isinstance(value, torch.Tensor)}
    if not tensors:
        return dict(values)
    read = torch.stack([t.float().reshape(()) for t in tensors.values()]).tolist()
    return {**values, **dict(zip(tensors, read, strict=True))}


def _adam(network: nn.Module, lr: float) -> torch.optim.Adam:
    """The official optimiser (Adam, betas 0.9 / 0.99); fused on CPUs and GPUs: one kernel instead of a dozen
    per parameter list (D's update 11 -> 2 ms on this CPU), the same update up to rounding."""
    fused = next(network.parameters()).device.type in ("cpu", "cuda")
    return torch.optim.Adam(network.parameters(), lr=lr, betas=(0.9, 0.99), fused=fused)


@contextlib.contextmanager
def _frozen(network: nn.Module | None) -> Iterator[None]:
    """`network`'s parameters take no gradient inside (BasicSR's `requires_grad = False` on D during G's step)."""
    if network is None:
        yield
        return
    network.requires_grad_(False)
    try:
        yield
    finally:
        network.requires_grad_(True)


def _micro_batches(count: int, *batches: torch.Tensor) -> Iterator[tuple[bool, tuple[torch.Tensor, ...]]]:
    parts = [batch.chunk(count) for batch in batches]
    for index in range(count):
        yield index == count - 1, tuple(part[index] for part in parts)
