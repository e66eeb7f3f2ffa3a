"""A whole training run: construction (every check before the first step, the data, the networks, the step) and the
loop (steps, metrics, validation, checkpoints), on one process or under torchrun. Checkpoints and resume are
`checkpoints`, the metrics file `metrics`, process groups `distributed`.

The output folder holds `model.safetensors` (the EMA generator, the model to use), `generator.safetensors` (the raw
one), `discriminator.safetensors` (gan stage), `state/` (one file per rank: everything the next steps depend on),
`metrics.jsonl` and `samples/`. Checkpoints are written every `checkpoint_every` steps, at the end, on Ctrl+C (the
step under way finishes first) and on an error, but never while steps are being skipped for non-finite losses: a
run that stops after too many of them keeps its last good checkpoint."""

from __future__ import annotations

import copy
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import RealESRError
from ..media.images import write_image
from ..models import ModelDescriptor, load_discriminator, load_model, new_model
from ..models.archs.discriminator import UNetDiscriminatorSN
from . import distributed
from .checkpoints import Checkpoints, check_output
from .config import ConfigError, TrainingConfig, parse_value
from .data import (
    HighResolutionImages,
    ImagePairs,
    StepBatches,
    TrainingImages,
    find_training_images,
    find_training_pairs,
    memory_images,
    memory_pairs,
)
from .losses import PerceptualLoss, vgg19_features
from .metrics import MetricsLog
from .step import NonFiniteLossError, TrainingStep
from .validation import ValidationImage, memory_validation_images, psnr, ssim, validation_images

Progress = Callable[[int, int, dict[str, float]], None]


@dataclass
class TrainingResult:
    steps: int  # steps done, in all sessions of the run
    model_path: Path
    stopped: str  # "finished" or "interrupted"
    validation: dict[str, float] | None


def load_generator(model: str, seed: int = 0) -> ModelDescriptor:
    """A bundled name, a model file, or `new:ARCH:key=value,...` for a fresh network (initialised from `seed`)."""
    if not model.startswith("new:"):
        return load_model(model)
    _, _, rest = model.partition(":")
    architecture, _, arguments = rest.partition(":")
    hyperparameters = {}
    for argument in filter(None, arguments.split(",")):
        key, sep, value = argument.partition("=")
        if not sep:
            raise ConfigError(f"{model!r}: a fresh network's options are key=value, got {argument!r}")
        hyperparameters[key.strip()] = parse_value(value.strip())
    with _seeded(seed):
        return new_model(architecture, **hyperparameters)


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Fresh weights follow the run's seed; the caller's random state is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class TrainingRun:
    """Everything checked and built (data, networks, losses, the step, validation inputs, a resumed state), ready
    to `run()`. `model` stands in for `config.model` when the caller already has one (ComfyUI's UPSCALE_MODEL), and
    `images` for the config's folders (hr_dir, lr_dir, val_dir, val_lr_dir, which must then be empty) when the
    caller holds the images in memory (ComfyUI's IMAGE lists)."""

    def __init__(self, config: TrainingConfig, *, resume: bool = False, model: ModelDescriptor | None = None,
                 progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
                 images: TrainingImages | None = None) -> None:
        self.config, self.progress, self.should_stop, self.images = config, progress, should_stop, images
        if images is not None and (config.hr_dir or config.lr_dir or config.val_dir or config.val_lr_dir):
            raise ConfigError("images in memory replace the folders: leave hr_dir, lr_dir, val_dir and val_lr_dir "
                              "empty")
        self.paired = bool(config.lr_dir) or (images is not None and images.low is not None)
        self.output = Path(config.output_dir)
        check_output(self.output, resume)
        self.rank, self.world, self.device = distributed.rank_world_device(config.device)
        self.checkpoints = Checkpoints(self.output, self.rank, self.world, self.device)
        self.descriptor = model or load_generator(config.model, config.seed)
        weights = config.loss_weights
        with _seeded(config.seed):
            discriminator = self._discriminator() if weights.gan else None
        network = self.descriptor.network
        self.scale = int(network.scale)
        self.degradation = config.degradation_config
        self._check_scale_and_patch()
        self.dataset = self._dataset()
        perceptual = self._perceptual() if weights.perceptual else None
        wants_validation = config.val_dir or (images is not None and images.validation_high)
        self.validation = self._validation_images() if self.rank == 0 and wants_validation else []
        generator = _trainable_copy(network).to(self.device)
        self.step = TrainingStep(generator, config.step_options(self.paired),
                                 discriminator=discriminator and discriminator.to(self.device),
                                 perceptual=perceptual and perceptual.to(self.device))
        self.done = self.checkpoints.resume(config, self.step) if resume else 0
        self.notes = config.notes(self.paired)  # what the run's rules chose, for the log and metrics.jsonl

    # -- checks and construction -------------------------------------------------------------------------------
    def _check_scale_and_patch(self) -> None:
        config = self.config
        if self.degradation is not None and self.degradation.scale != self.scale:
            raise ConfigError(f"the degradation preset {config.degradation!r} makes x{self.degradation.scale} inputs "
                              f"but the model is x{self.scale}: pick a x{self.scale} preset")
        if config.patch % self.scale:
            raise ConfigError(f"the patch ({config.patch}) must be a multiple of the model's scale ({self.scale})")
        multiple = self.descriptor.size_multiple
        if (config.patch // self.scale) % multiple:
            raise ConfigError(f"the low-resolution patch ({config.patch // self.scale}) must be a multiple of "
                              f"{multiple} for this network: make the patch a multiple of {self.scale * multiple}")
        if not self.paired and config.degrade_size % (self.scale * multiple):
            raise ConfigError(f"degrade_size ({config.degrade_size}) must be a multiple of {self.scale * multiple}")

    def _dataset(self) -> torch.utils.data.Dataset:
        config, images = self.config, self.images
        if images is not None and images.low is not None:
            return ImagePairs(memory_pairs(images.high, images.low, self.scale, config.patch), config.patch,
                              self.scale, config.seed)
        if images is not None:
            return HighResolutionImages(memory_images(images.high, config.patch), config.seed, config.degrade_size)
        if config.lr_dir:
            try:
                pairs = find_training_pairs(config.hr_dir, config.lr_dir, self.scale, config.patch)
            except RealESRError as exc:
                if self.descriptor.scale == self.scale:
                    raise
                # realesr-animevideov3-x2: a x4 network whose output is resized; it is the network that trains
                raise RealESRError(f"{exc} ({self.descriptor.name or config.model} is a x{self.scale} network whose "
                                   f"output is resized to x{self.descriptor.scale}: it trains on x{self.scale} pairs)"
                                   ) from exc
            return ImagePairs(pairs, config.patch, self.scale, config.seed)
        return HighResolutionImages(find_training_images(config.hr_dir, config.patch), config.seed,
                                    config.degrade_size)

    def _discriminator(self) -> UNetDiscriminatorSN:
        if not self.config.discriminator:
            return UNetDiscriminatorSN(num_feat=self.config.discriminator_feat)
        try:
            return load_discriminator(self.config.discriminator)
        except RealESRError as exc:
            raise ConfigError(f"the discriminator to start from (--discriminator): {exc}") from exc

    def _perceptual(self) -> PerceptualLoss:
        try:
            return PerceptualLoss(vgg19_features(self.config.vgg19 or None))
        except RealESRError as exc:
            raise ConfigError(f"{exc}. To train without it: --loss perceptual=0 (or losses.perceptual = 0), or name "
                              f"the file with --set vgg19=PATH") from exc

    def _validation_images(self) -> list[ValidationImage]:
        config, images = self.config, self.images
        if images is not None:
            return memory_validation_images(images.validation_high, self.scale, self.descriptor.size_multiple,
                                            low=images.validation_low, degradation=self.degradation)
        return validation_images(config.val_dir, self.scale, self.descriptor.size_multiple,
                                 lr_dir=config.val_lr_dir or None, degradation=self.degradation)

    # -- the run -----------------------------------------------------------------------------------------------
    def run(self) -> TrainingResult:
        config, last_values, started = self.config, None, self.done
        metrics = MetricsLog(self.output, self.done) if self.rank == 0 else None
        if metrics is not None:
            metrics.write_setup(self.done, self.notes)
        batches = self._batches()
        interval: dict[str, list[float]] = {}
        interval_start, interval_steps = time.perf_counter(), 0
        stopped = "finished"
        try:
            with _stop_on_interrupt() as interrupted:
                while self.done < config.steps:
                    if self._stop_requested(interrupted):
                        stopped = "interrupted"
                        break
                    high, low = next(batches)
                    logged = self.step(high, self.done, low)
                    self.done += 1
                    interval_steps += 1
                    for name, value in logged.items():
                        interval.setdefault(name, []).append(1.0 if name == "skipped" else value)
                    last_values = {name: sum(values) / len(values) for name, values in interval.items()
                                   if name != "skipped"}
                    row: dict[str, Any] = {}
                    if self.done % config.log_every == 0 or self.done == config.steps:
                        seconds = time.perf_counter() - interval_start
                        row.update(last_values, it_per_s=interval_steps / seconds,
                                   skipped=len(interval.get("skipped", [])))
                        if self.done <= self.step.options.discriminator_warmup:
                            row["d_warmup"] = True  # G frozen: D trained alone
                        interval, interval_start, interval_steps = {}, time.perf_counter(), 0
                    if self.validation and (self.done % config.val_every == 0 or self.done == config.steps):
                        row["validation"] = self.validate()
                    if metrics is not None and row:
                        metrics.write(self.done, row)
                    if self.done % config.checkpoint_every == 0 and self.done < config.steps and self._healthy():
                        self.save()
                    if self.progress is not None and self.rank == 0:
                        self.progress(self.done, config.steps, last_values)
        except NonFiniteLossError:
            raise  # the last checkpoint is the last good one: nothing to save
        except BaseException:
            if self._healthy() and self.done > started:
                self.save()  # work is not lost: a resume continues from here
            raise
        finally:
            if metrics is not None:
                metrics.close()
        self.save()
        validation = metrics.last_validation if metrics is not None else None
        return TrainingResult(self.done, self.output / "model.safetensors", stopped, validation)

    def _healthy(self) -> bool:
        """Not within a run of skipped (non-finite) steps: the last good checkpoint is not overwritten by a bad one."""
        return self.step.skipped_in_a_row == 0

    def _stop_requested(self, interrupted: threading.Event) -> bool:
        stop = interrupted.is_set() or (self.should_stop is not None and self.should_stop())
        return distributed.any_rank(stop, self.device)

    def _batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        config = self.config
        sampler = StepBatches(len(self.dataset), config.batch, config.seed, self.done, config.steps, self.rank,
                              self.world)
        loader = torch.utils.data.DataLoader(self.dataset, batch_sampler=sampler, num_workers=config.workers,
                                             pin_memory=self.device.type == "cuda")
        for batch in loader:
            if self.paired:
                low, high = batch
                yield high.to(self.device, non_blocking=True), low.to(self.device, non_blocking=True)
            else:
                yield batch.to(self.device, non_blocking=True), None

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean PSNR / SSIM of the EMA generator on the validation images; the first `samples` outputs are saved."""
        config = self.config
        crop = self.scale if config.val_crop_border < 0 else config.val_crop_border
        network = self.step.ema.module
        scores = {"psnr": 0.0, "ssim": 0.0}
        for index, image in enumerate(self.validation):
            output = network(image.low.to(self.device)).float().clamp(0, 1).cpu()
            scores["psnr"] += psnr(output, image.high, config.val_luma, crop) / len(self.validation)
            scores["ssim"] += ssim(output, image.high, config.val_luma, crop) / len(self.validation)
            if index < config.samples:
                write_image(self.output / "samples" / f"{self.done:07d}_{image.name}.png", output)
        return scores

    def save(self) -> None:
        self.checkpoints.save(self.done, self.config, self.step, self.descriptor)


def train(config: TrainingConfig, *, resume: bool = False, model: ModelDescriptor | None = None,
          progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
          images: TrainingImages | None = None) -> TrainingResult:
    """Checks everything, then trains (see TrainingRun)."""
    return TrainingRun(config, resume=resume, model=model, progress=progress, should_stop=should_stop,
                       images=images).run()


def _trainable_copy(network: torch.nn.Module) -> torch.nn.Module:
    """The loaded model stays as it was (a ComfyUI model may be in use elsewhere): training changes a copy."""
    return copy.deepcopy(network).float().train().requires_grad_(True)


@contextmanager
def _stop_on_interrupt() -> Iterator[threading.Event]:
    """The first Ctrl+C asks the run to stop after the step under way (it then saves); a second one interrupts at
    once. Only the main thread can take signals: elsewhere (a ComfyUI worker) `should_stop` does this job."""
    interrupted = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield interrupted
        return

    def first_interrupt(signum: int, frame: Any) -> None:
        interrupted.set()
        signal.signal(signal.SIGINT, previous)
        print("\nstopping after this step and saving (Ctrl+C again to stop at once)", flush=True)

    previous = signal.signal(signal.SIGINT, first_interrupt)
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous)
