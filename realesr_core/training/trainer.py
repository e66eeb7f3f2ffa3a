"""A whole training run: every check before the first step, the data stream, the steps, metrics, validation,
checkpoints and exact resume, on one process or under torchrun.

The output folder holds `model.safetensors` (the EMA generator, the model to use), `generator.safetensors` (the raw
one), `discriminator.safetensors` (gan stage), `state/` (one file per rank: everything the next steps depend on),
`metrics.jsonl` and `samples/`. Checkpoints are written every `checkpoint_every` steps, at the end, on Ctrl+C (the
step under way finishes first) and on an error, but never while steps are being skipped for non-finite losses: a
run that stops after too many of them keeps its last good checkpoint."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import shutil
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from safetensors.torch import save_file

from ..degradation.pipeline import get_preset
from ..errors import RealESRError
from ..files import write_atomically
from ..media.images import write_image
from ..models import ModelDescriptor, load_discriminator, load_model, new_model, save_model
from ..models.archs.discriminator import UNetDiscriminatorSN
from ..models.rescaled import OutputRescaled
from ..upscaling.device import cpu_has_native_bf16
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
from .step import NonFiniteLossError, TrainingStep
from .validation import ValidationImage, memory_validation_images, psnr, ssim, validation_images

# options a resumed run may change; any other difference means another run
CHANGEABLE_ON_RESUME = {"steps", "val_every", "checkpoint_every", "log_every", "samples", "workers", "device",
                        "val_dir", "val_lr_dir", "val_luma", "val_crop_border"}
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


def training_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """autocast's dtype: `auto` is bf16 on CUDA cards and CPUs with native bf16, else fp32 (None)."""
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("fp16 training needs a CUDA device (on a CPU use bf16 or fp32)")
    if precision == "auto":
        native = torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_has_native_bf16()
        return torch.bfloat16 if native else None
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


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
        self._check_output(resume)
        self.rank, self.world, self.device = _rank_world_device(config.device)
        self.descriptor = model or load_generator(config.model, config.seed)
        weights = config.loss_weights
        with _seeded(config.seed):
            discriminator = self._discriminator() if weights.gan else None
        network = self.descriptor.network
        self.scale = int(network.scale)
        self.degradation = get_preset(config.degradation) if config.degradation else None
        self._check_scale_and_patch()
        self.dataset = self._dataset()
        perceptual = self._perceptual() if weights.perceptual else None
        wants_validation = config.val_dir or (images is not None and images.validation_high)
        self.validation = self._validation_images() if self.rank == 0 and wants_validation else []
        generator = _trainable_copy(network).to(self.device)
        self.step = TrainingStep(
            generator, self.degradation, weights=weights, discriminator=discriminator and discriminator.to(self.device),
            perceptual=perceptual and perceptual.to(self.device), lr=config.lr, discriminator_lr=config.discriminator_lr,
            ema_decay=config.ema_decay, pool_size=0 if self.paired else config.pool_size, gan_kind=config.gan_kind,
            seed=config.seed, milestones=config.milestones, gamma=config.gamma, patch=config.patch,
            accumulate=config.accumulate, amp_dtype=training_dtype(config.precision, self.device),
            grad_clip=config.grad_clip, channels_last=config.channels_last, compile=config.compile)
        self.done = self._resume() if resume else 0

    # -- checks and construction -------------------------------------------------------------------------------
    def _check_output(self, resume: bool) -> None:
        has_state = _state_folder(self.output) is not None
        if resume and not has_state:
            raise ConfigError(f"nothing to resume in {self.output}: it holds no state/ folder from an earlier run")
        if not resume and has_state:
            raise ConfigError(f"{self.output} already holds a run (state/): resume it (--resume) or choose another "
                              f"output folder")

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
                              f"{multiple} for this network")
        if not self.paired and config.patch > config.degrade_size:
            raise ConfigError(f"the patch ({config.patch}) cannot be larger than degrade_size ({config.degrade_size})")
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
            return ImagePairs(find_training_pairs(config.hr_dir, config.lr_dir, self.scale, config.patch),
                              config.patch, self.scale, config.seed)
        return HighResolutionImages(find_training_images(config.hr_dir, config.patch), config.seed,
                                    config.degrade_size)

    def _discriminator(self) -> UNetDiscriminatorSN:
        if self.config.discriminator:
            return load_discriminator(self.config.discriminator)
        return UNetDiscriminatorSN(num_feat=self.config.discriminator_feat)

    def _perceptual(self) -> PerceptualLoss:
        try:
            return PerceptualLoss(vgg19_features(self.config.vgg19 or None))
        except RealESRError as exc:
            raise ConfigError(f"{exc}. To train without it: --loss perceptual=0 (or losses.perceptual = 0), or name "
                              f"the file with --set vgg19=PATH") from exc

    def _validation_images(self) -> list[ValidationImage]:
        config, images = self.config, self.images
        if images is not None:
            return memory_validation_images(images.validation_high, self.scale, low=images.validation_low,
                                            degradation=self.degradation)
        return validation_images(config.val_dir, self.scale, lr_dir=config.val_lr_dir or None,
                                 degradation=self.degradation)

    # -- the run -----------------------------------------------------------------------------------------------
    def run(self) -> TrainingResult:
        config, last_values = self.config, None
        metrics = _Metrics(self.output, self.done) if self.rank == 0 else None
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
            if self._healthy():
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
        if self.world > 1:  # every rank stops at the same step, or the others would wait forever
            flag = torch.tensor([float(stop)], device=self.device if dist.get_backend() == "nccl" else "cpu")
            dist.all_reduce(flag)
            stop = bool(flag.item())
        return stop

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

    # -- checkpoints -------------------------------------------------------------------------------------------
    def save(self) -> None:
        """Model files (rank 0) and every rank's state, swapped in only when complete."""
        fresh, current, old = (self.output / name for name in ("state.tmp", "state", "state.old"))
        if self.rank == 0:
            shutil.rmtree(fresh, ignore_errors=True)
            fresh.mkdir(parents=True)
        _barrier(self.world)
        state = {"step": self.done, "world": self.world, "config": self.config.to_dict(),
                 "training": self.step.state_dict(), "torch_rng": torch.get_rng_state(),
                 "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else []}
        torch.save(state, fresh / f"rank{self.rank}.pt")
        _barrier(self.world)
        if self.rank == 0:
            self._save_models()
            if current.exists():
                current.rename(old)
            fresh.rename(current)
            shutil.rmtree(old, ignore_errors=True)
        _barrier(self.world)

    def _save_models(self) -> None:
        ema, raw = self.step.ema.module, self.step.generator
        base = self.descriptor.name or self.descriptor.architecture  # what loaders and the command line show
        for module, file, name in ((ema, "model", f"{base}-finetuned"), (raw, "generator", f"{base}-finetuned-raw")):
            rescale = self.descriptor.output_rescale
            wrapped = OutputRescaled(module, rescale) if rescale else module
            save_model(dataclasses.replace(self.descriptor, module=wrapped, name=name,
                                           source=f"trained from {self.descriptor.name or self.descriptor.source}"),
                       self.output / f"{file}.safetensors")
        if self.step.discriminator is not None:
            state = {k: v.detach().cpu().contiguous() for k, v in self.step.discriminator.state_dict().items()}
            write_atomically(self.output / "discriminator.safetensors",
                             lambda temporary: save_file(state, str(temporary)), ".tmp")

    def _resume(self) -> int:
        folder = _state_folder(self.output)
        path = folder / f"rank{self.rank}.pt"
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except (OSError, RuntimeError, EOFError) as exc:
            raise ConfigError(f"cannot read the training state {path}: {exc}") from exc
        if state["world"] != self.world:
            raise ConfigError(f"the run was trained by {state['world']} process(es); resume it with as many "
                              f"(each keeps its own pair pool), not {self.world}")
        saved, ours = state["config"], self.config.to_dict()
        changed = sorted(k for k in ours if k not in CHANGEABLE_ON_RESUME and saved.get(k) != ours[k])
        if changed:
            details = ", ".join(f"{k}: {saved.get(k)!r} -> {ours[k]!r}" for k in changed)
            raise ConfigError(f"this is not the run in {self.output} ({details}); only "
                              f"{', '.join(sorted(CHANGEABLE_ON_RESUME))} may change on resume")
        self.step.load_state_dict(state["training"])
        torch.set_rng_state(state["torch_rng"].cpu())
        if state["cuda_rng"]:
            torch.cuda.set_rng_state_all([rng.cpu() for rng in state["cuda_rng"]])
        return int(state["step"])


def train(config: TrainingConfig, *, resume: bool = False, model: ModelDescriptor | None = None,
          progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
          images: TrainingImages | None = None) -> TrainingResult:
    """Checks everything, then trains (see TrainingRun)."""
    return TrainingRun(config, resume=resume, model=model, progress=progress, should_stop=should_stop,
                       images=images).run()


def _trainable_copy(network: torch.nn.Module) -> torch.nn.Module:
    """The loaded model stays as it was (a ComfyUI model may be in use elsewhere): training changes a copy."""
    return copy.deepcopy(network).float().train().requires_grad_(True)


def _state_folder(output: Path) -> Path | None:
    """`state/`, or `state.old/` when a save was cut between its two renames."""
    for name in ("state", "state.old"):
        if (output / name / "rank0.pt").is_file():
            return output / name
    return None


def start_distributed(local_rank: int, device: str = "") -> None:
    """Joins the process group torchrun set up (its address and rank come from torchrun's environment): NCCL on
    GPUs, where each process takes the GPU of its local rank, gloo on CPUs. The command line calls this when it runs
    under torchrun; a library caller does the same, or starts a group of its own."""
    cuda = torch.cuda.is_available() and not device.startswith("cpu")
    if cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")


def _rank_world_device(device: str) -> tuple[int, int, torch.device]:
    if dist.is_initialized() and dist.get_world_size() > 1:
        chosen = (torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl"
                  else torch.device("cpu"))
        return dist.get_rank(), dist.get_world_size(), chosen
    return 0, 1, torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def _barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


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


class _Metrics:
    """`metrics.jsonl` (rows of a resumed run's steps that were not checkpointed are dropped), and TensorBoard
    when it is installed."""

    def __init__(self, output: Path, first_step: int) -> None:
        output.mkdir(parents=True, exist_ok=True)
        self.path = output / "metrics.jsonl"
        kept = []
        if self.path.exists():
            kept = [line for line in self.path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= first_step]
        self.path.write_text("".join(line + "\n" for line in kept))
        self.file = self.path.open("a")
        self.last_validation: dict[str, float] | None = None
        self.board = _tensorboard(output / "tensorboard")

    def write(self, step: int, row: dict[str, Any]) -> None:
        if "validation" in row:
            self.last_validation = row["validation"]
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
        self.file.write(json.dumps({"step": step, "time": time.time(), **clean}) + "\n")
        self.file.flush()
        if self.board is not None:
            flat = {**{k: v for k, v in row.items() if k != "validation"},
                    **{f"validation/{k}": v for k, v in row.get("validation", {}).items()}}
            for name, value in flat.items():
                self.board.add_scalar(name, value, step)

    def close(self) -> None:
        self.file.close()
        if self.board is not None:
            self.board.close()


def _tensorboard(folder: Path) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(folder))
