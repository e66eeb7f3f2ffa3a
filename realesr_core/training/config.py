"""The training layer's options, at the bottom: what one iteration needs (`StepOptions`), everything about a run
(`TrainingConfig`, the step's options and the run's), the loss weights of the official stages, the named presets,
and the TOML file and `--set KEY=VALUE` overrides that fill a config. Nothing here imports the code it configures.

A mistake (an unknown key, a wrong type, a batch that does not divide the pool, a missing folder) is a clear error
here, before any model is loaded or any step is run."""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10, which ComfyUI still supports
    import tomli as tomllib

from ..degradation.pipeline import PRESETS as DEGRADATION_PRESETS
from ..degradation.pipeline import DegradationConfig
from ..errors import RealESRError
from ..upscaling.options import PRECISION_CHOICES


class ConfigError(RealESRError, ValueError):
    pass


@dataclass(frozen=True)
class LossWeights:
    """Weights of the generator's losses; a weight of 0 leaves that loss out."""

    pixel: float = 1.0
    charbonnier: float = 0.0
    perceptual: float = 0.0
    gan: float = 0.0
    ldl: float = 0.0
    ms_ssim: float = 0.0


LOSS_NAMES = tuple(f.name for f in fields(LossWeights))
STAGE_LOSSES = {"net": LossWeights(), "gan": LossWeights(perceptual=1.0, gan=0.1)}  # the official two stages
GAN_KINDS = ("vanilla", "hinge", "lsgan")


@dataclass(frozen=True, kw_only=True)
class StepOptions:
    """What one training iteration needs to know. `stage` picks the official loss weights, which `losses` overrides
    by name; `degradation` is a preset name, or empty for paired data; `patch` is the side of the high-resolution
    patch the degraded pairs are cropped to."""

    stage: str = "net"
    losses: dict[str, float] = field(default_factory=dict)
    degradation: str = "realesrgan_x4"
    patch: int = 256
    lr: float = 2e-4
    discriminator_lr: float = 1e-4
    gan_kind: str = "vanilla"
    ema_decay: float = 0.999
    pool_size: int = 180
    milestones: tuple[int, ...] = ()
    gamma: float = 0.5
    grad_clip: float = 0.0
    accumulate: int = 1
    precision: str = "auto"
    channels_last: bool = True
    compile: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("patch", "accumulate"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("lr", "discriminator_lr"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be above 0, got {getattr(self, name)}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be within 0..1 (below 1), got {self.ema_decay}")
        for name, choices in (("stage", STAGE_LOSSES), ("precision", PRECISION_CHOICES), ("gan_kind", GAN_KINDS)):
            _check_choice(name, getattr(self, name), choices)
        if self.degradation:
            _check_choice("degradation", self.degradation, DEGRADATION_PRESETS)
        unknown = sorted(set(self.losses) - set(LOSS_NAMES))
        if unknown:
            raise ConfigError(f"unknown loss {', '.join(unknown)}; known: {', '.join(LOSS_NAMES)}")
        if any(weight < 0 for weight in self.losses.values()):
            raise ConfigError(f"loss weights cannot be negative: {self.losses}")
        if self.pool_size < 0 or self.grad_clip < 0:
            raise ConfigError("pool_size and grad_clip cannot be negative")

    @property
    def loss_weights(self) -> LossWeights:
        return dataclasses.replace(STAGE_LOSSES[self.stage], **self.losses)

    @property
    def degradation_config(self) -> DegradationConfig | None:
        return DEGRADATION_PRESETS[self.degradation] if self.degradation else None


@dataclass(frozen=True, kw_only=True)
class TrainingConfig(StepOptions):
    """One run: the step's options and the run's. Every `*_every` counts optimizer steps; `batch` is per process;
    `degrade_size` is the side every ground truth is cropped or padded to before it is degraded (the official 400);
    `discriminator` is a trained discriminator to start from (without one, D starts fresh)."""

    model: str
    hr_dir: str
    output_dir: str
    steps: int = 1000
    batch: int = 4
    degrade_size: int = 400
    lr_dir: str = ""
    val_dir: str = ""
    val_lr_dir: str = ""
    val_every: int = 1000
    val_luma: bool = False
    val_crop_border: int = -1  # -1: the scale, as BasicSR's options set it
    samples: int = 4
    discriminator: str = ""
    discriminator_feat: int = 64
    vgg19: str = ""
    workers: int = 2
    checkpoint_every: int = 1000
    log_every: int = 10
    device: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("steps", "batch", "degrade_size", "val_every", "checkpoint_every", "log_every",
                     "discriminator_feat"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.degradation and not self.lr_dir:
            raise ConfigError("without a degradation preset the low-resolution images come from lr_dir: give one")
        if self.batch % self.accumulate:
            raise ConfigError(f"batch ({self.batch}) must be a multiple of accumulate ({self.accumulate})")
        if self.workers < 0 or self.val_crop_border < -1 or self.samples < 0:
            raise ConfigError("workers and samples cannot be negative, val_crop_border not below -1")
        if self.pool_size and not self.lr_dir and self.pool_size % self.batch:
            raise ConfigError(f"pool_size ({self.pool_size}) must be a multiple of the batch ({self.batch}) "
                              f"per process; set pool_size to a multiple of it, or 0 to train without the pool")
        if not self.lr_dir and self.patch > self.degrade_size:
            raise ConfigError(f"the patch ({self.patch}) cannot be larger than degrade_size ({self.degrade_size})")

    def step_options(self, paired: bool = False) -> StepOptions:
        """The step's options of this run (pairs train without the pool, as the official paired fine-tune)."""
        own = {f.name: getattr(self, f.name) for f in fields(StepOptions)}
        return StepOptions(**{**own, "pool_size": 0 if paired else self.pool_size})

    def replace(self, **changes: Any) -> TrainingConfig:
        """A copy with `changes` (validated; unknown keys named)."""
        unknown = sorted(set(changes) - {f.name for f in fields(self)})
        if unknown:
            raise ConfigError(f"unknown option {', '.join(unknown)}; known: {', '.join(f.name for f in fields(self))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "milestones": list(self.milestones)}


def _check_choice(name: str, value: str, choices: Any) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r}; known: {', '.join(choices)}")


# The official recipe (REALESRGAN.md 4) and traiNNer-redux's Compact numbers (TRAINING.md 1; their pools hold 192
# pairs, the nearest multiple of their batches to the official 180). The milestone equals the run's length in the
# official files, which keeps the learning rate constant: no milestone says the same.
PRESETS: dict[str, dict[str, Any]] = {
    "realesrnet_x4plus": dict(stage="net", lr=2e-4, batch=12, patch=256, steps=1_000_000, degradation="realesrgan_x4"),
    "realesrgan_x4plus": dict(stage="gan", lr=1e-4, batch=12, patch=256, steps=400_000, degradation="realesrgan_x4"),
    "finetune_x4plus": dict(stage="gan", lr=1e-4, batch=12, patch=256, steps=400_000, degradation="realesrgan_x4"),
    "finetune_pairs": dict(stage="gan", lr=1e-4, batch=12, patch=256, steps=400_000, degradation=""),
    "realesrnet_x2plus": dict(stage="net", lr=2e-4, batch=12, patch=256, steps=1_000_000, degradation="realesrgan_x2"),
    "realesrgan_x2plus": dict(stage="gan", lr=1e-4, batch=12, patch=256, steps=400_000, degradation="realesrgan_x2"),
    "compact_net_x4": dict(stage="net", lr=2e-4, batch=16, patch=256, steps=450_000, degradation="realesrgan_x4",
                           pool_size=192),
    "compact_gan_x4": dict(stage="gan", lr=1e-4, batch=8, patch=384, steps=250_000, degradation="realesrgan_x4",
                           pool_size=192),
    # fidelity training on plain bicubic pairs: every batch is alike, so the pool has nothing to mix
    "bicubic_x2": dict(stage="net", lr=2e-4, batch=16, patch=128, steps=100_000, degradation="bicubic_x2", pool_size=0),
    "bicubic_x4": dict(stage="net", lr=2e-4, batch=16, patch=256, steps=100_000, degradation="bicubic_x4", pool_size=0),
}
def preset(name: str) -> dict[str, Any]:
    _check_choice("training preset", name, PRESETS)
    return dict(PRESETS[name])


def parse_value(text: str) -> Any:
    """A command-line value as TOML reads it (numbers, booleans, arrays, quoted strings), else the bare string."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def apply_setting(options: dict[str, Any], setting: str) -> None:
    """`KEY=VALUE` (or `losses.NAME=VALUE`) into `options`."""
    key, sep, text = setting.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"a setting is KEY=VALUE, got {setting!r}")
    key, value = key.strip(), parse_value(text.strip())
    if key.startswith("losses."):
        options["losses"] = {**options.get("losses", {}), key.removeprefix("losses."): value}
    else:
        options[key] = value


def build_config(options: dict[str, Any]) -> TrainingConfig:
    """A TrainingConfig from plain options: `preset` (if any) first, the rest over it; types are checked, so a
    string where a number belongs is named rather than failing mid-run."""
    options = dict(options)
    merged = preset(options.pop("preset")) if "preset" in options else {}
    losses = {**merged.pop("losses", {}), **options.pop("losses", {})}
    merged.update(options)
    known = {f.name: f for f in fields(TrainingConfig)}
    unknown = sorted(set(merged) - set(known))
    if unknown:
        raise ConfigError(f"unknown option {', '.join(unknown)}; known: preset, {', '.join(known)}")
    missing = [name for name in ("model", "hr_dir", "output_dir") if not merged.get(name)]
    if missing:
        raise ConfigError(f"missing {', '.join(missing)}")
    typed = {name: _typed(name, value, known[name].type) for name, value in merged.items()}
    typed["losses"] = {name: _typed(f"losses.{name}", weight, "float") for name, weight in losses.items()}
    return TrainingConfig(**typed)


def _typed(name: str, value: Any, kind: str) -> Any:
    if kind == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind == "tuple[int, ...]" and isinstance(value, (list, tuple)) and all(type(v) is int for v in value):
        return tuple(value)
    expected = {"str": str, "int": int, "bool": bool, "float": float, "dict[str, float]": dict}.get(kind)
    if expected is not None and type(value) is expected:
        return value
    raise ConfigError(f"{name} should be {kind.replace('tuple[int, ...]', 'a list of integers')}, "
                      f"got {value!r} ({type(value).__name__})")


def load_config_file(path: str | os.PathLike, settings: list[str] = ()) -> TrainingConfig:
    """A TOML run file (flat keys, an optional `[losses]` table), then `--set` overrides."""
    path = Path(path)
    try:
        options = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read the training config {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    for setting in settings:
        apply_setting(options, setting)
    return build_config(options)
