"""The training layer's options, at the bottom: what one iteration needs (`StepOptions`), everything about a run
(`TrainingConfig`, the step's options and the run's), the loss weights of the official stages, the named presets,
and the TOML file and `--set KEY=VALUE` overrides that fill a config. Nothing here imports the code it configures.

A mistake (an unknown key, a wrong type, a value out of bounds, a patch the discriminator cannot take) is a clear
error here, before any model is loaded or any step is run; the rules that turn options into a run's settings (the pool
from the batch, the learning rate from the stage, the EMA decay from the run's length, the discriminator's warm-up)
live here too, so the command line, the TOML file and the ComfyUI node apply the same ones."""

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

from ..degradation import DEGRADATION_PRESETS
from ..degradation.pipeline import DegradationConfig
from ..errors import RealESRError
from ..models.archs.discriminator import SIZE_MULTIPLE as DISCRIMINATOR_SIZE_MULTIPLE
from ..option_fields import check_options, option


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
STAGE_LR = {"net": 2e-4, "gan": 1e-4}  # the official stages' generator learning rates
GAN_KINDS = ("vanilla", "hinge", "lsgan")
TRAINING_PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# MS-SSIM's five scales of an 11-px window need crops of 11 x 2^4 px; VGG19's conv5_4 comes after four poolings
MS_SSIM_MIN_SIDE = 11 * 2 ** 4
PERCEPTUAL_MIN_SIDE = 2 ** 4
# official: D runs three times a step (G's GAN loss, then real, then fake), as BasicSR's optimize_parameters; shared:
# D's fake pass reuses the forward of G's GAN loss (one D forward less, not the official step: see docs/training.md)
DISCRIMINATOR_PASSES = ("official", "shared")
# batch: the official split (resize, noise kind, second blur, final order drawn once per batch, the rest per image);
# image: every draw per image
DEGRADATION_DRAWS = ("batch", "image")
OFFICIAL_EMA_DECAY = 0.999
# Steps that train only a fresh discriminator before G's GAN loss starts (G frozen). Measured (docs/training.md):
# RealESRGAN_x4plus's outputs against a fresh D at the official lr, batch 4: D's real-fake logit gap reaches the
# level a trained D holds within about 200 steps and levels off by 500; before that G's GAN loss follows a D that
# tells nothing apart.
DISCRIMINATOR_WARMUP = 200


def decay_for_run(steps: int, decay: float = OFFICIAL_EMA_DECAY) -> float:
    """The EMA decay a run of `steps` uses: `decay`, lowered for short runs so that the EMA averages over at most the
    last tenth of the run. A fine-tune starts the EMA at the starting weights, and 0.999 averages over about 1000
    steps: after 300 steps it would still be 74% the model it started from. Runs of 10,000 steps and more keep the
    official 0.999."""
    return min(decay, max(0.0, 1.0 - 10.0 / steps))


def degradation_varies(degradation: DegradationConfig) -> bool:
    """Whether two batches can be degraded differently; the pool mixes batches, so with a degradation whose every
    draw is certain (plain bicubic) it has nothing to mix."""
    d = degradation
    return (d.blur_prob > 0 or d.noise_prob > 0 or d.jpeg_prob > 0 or d.second_order_prob > 0 or d.jpeg_prob2 > 0
            or d.final_sinc_prob > 0 or d.resize_prob[2] < 1 or len(set(d.final_resize_modes)) > 1)


@dataclass(frozen=True, kw_only=True)
class StepOptions:
    """What one training iteration needs to know; the defaults are the official fine-tune's. `losses` overrides the
    stage's loss weights by name. Each option's help and accepted values are on its field (`option`): the command line
    and the ComfyUI node generate their arguments and inputs from them."""

    stage: str = option("gan", "net: L1 against sharpened targets (ESRNet, fidelity); gan: L1 + VGG19 perceptual + "
                               "adversarial (ESRGAN, the official fine-tune).", choices=tuple(STAGE_LOSSES))
    losses: dict[str, float] = field(default_factory=dict)  # loss name -> weight, over the stage's (LOSS_NAMES)
    degradation: str = option("realesrgan_x4", "How the low-resolution inputs are made from the ground truths: "
                                               "realesrgan = the official real-world damage, light / heavy = less or "
                                               "more of it, bicubic = plain downscaling; none: your own pairs "
                                               "(lr_dir). Its scale must be the model's.",
                              choices=("none", *DEGRADATION_PRESETS))
    degradation_draws: str = option("batch", "batch: as the official pipeline, the resizes, the noise kinds, the "
                                             "second blur or not and the final order are drawn once per batch and "
                                             "the rest per image (the pool mixes batches); image: every draw per "
                                             "image.", choices=DEGRADATION_DRAWS)
    patch: int = option(256, "Side of the high-resolution training patch in pixels (the model sees patch / scale); "
                             "a multiple of the scale, and of 8 with a discriminator.",
                        minimum=8, maximum=4096, step=8)
    lr: float = option(0.0, "Adam's learning rate for the model (G).", minimum=1e-7, maximum=1e-2, step=1e-5,
                       zero_means="the stage's official rate: net 2e-4, gan 1e-4")
    discriminator_lr: float = option(1e-4, "Adam's learning rate for the discriminator (D).", minimum=1e-7,
                                     maximum=1e-2, step=1e-5, flag="--d-lr")
    discriminator_passes: str = option("official", "official: D runs three times a step as in BasicSR (G's GAN loss, "
                                                   "then real, then fake); shared: the fake pass reuses the forward "
                                                   "of G's GAN loss, faster but not the official step "
                                                   "(docs/training.md).", choices=DISCRIMINATOR_PASSES)
    discriminator_warmup: int = option(DISCRIMINATOR_WARMUP, "Steps that train a fresh discriminator alone, G frozen, "
                                                             "before G's GAN loss starts (at most a tenth of the run; "
                                                             "none when starting from a trained discriminator).",
                                       minimum=0, maximum=10**7)
    gan_kind: str = option("vanilla", "The adversarial loss (the official: vanilla).", choices=GAN_KINDS)
    ema_decay: float = option(OFFICIAL_EMA_DECAY, "EMA decay of the saved model. The run uses at most 1 - 10 / steps, "
                                                  "so the EMA averages over at most the last tenth of the run (0.999 "
                                                  "from 10,000 steps on).", minimum=0.0, maximum=0.99999)
    pool_size: int = option(180, "Pairs in the official training-pair pool, which mixes batches of different "
                                 "degradations; the run takes the nearest multiple of the batch (no pool for pairs or "
                                 "bicubic).", minimum=0, maximum=100_000)
    milestones: tuple[int, ...] = ()  # steps where both learning rates are multiplied by gamma
    gamma: float = option(0.5, "Factor of the learning rates at each milestone.", minimum=0.0, maximum=1.0)
    grad_clip: float = option(0.0, "Largest gradient norm of each network.", minimum=1e-6, maximum=1e6,
                              zero_means="no clipping")
    accumulate: int = option(1, "Micro-batches per step: the same update (G exactly, D closely) with less memory.",
                             minimum=1, maximum=256)
    precision: str = option("auto", "auto: bf16 autocast where the device has it natively (losses and VGG in fp32), "
                                    "fp16 with a gradient scaler on CUDA cards with fast fp16 but no bf16, else fp32.",
                            choices=TRAINING_PRECISIONS)
    channels_last: bool = option(True, "Train on channels-last tensors (faster with cuDNN and oneDNN).")
    compile: bool = option(False, "torch.compile the generator (slow first steps).")
    seed: int = option(0, "Seeds the crops, flips, degradations and fresh weights: a seed replays a run.",
                       minimum=0, maximum=2**64 - 1)

    def __post_init__(self) -> None:
        _checked_options(self)
        if self.degradation != "none":
            scale = DEGRADATION_PRESETS[self.degradation].scale
            if self.patch % scale:
                raise ConfigError(f"the patch ({self.patch}) must be a multiple of the scale of the degradation "
                                  f"preset {self.degradation!r} ({scale})")
        unknown = sorted(set(self.losses) - set(LOSS_NAMES))
        if unknown:
            raise ConfigError(f"unknown loss {', '.join(unknown)}; known: {', '.join(LOSS_NAMES)}")
        if any(weight < 0 for weight in self.losses.values()):
            raise ConfigError(f"loss weights cannot be negative: {self.losses}")
        weights = self.loss_weights
        if weights.gan and self.patch % DISCRIMINATOR_SIZE_MULTIPLE:
            raise ConfigError(f"the patch ({self.patch}) must be a multiple of {DISCRIMINATOR_SIZE_MULTIPLE}: the "
                              f"discriminator halves it three times")
        for weight, smallest, loss in ((weights.ms_ssim, MS_SSIM_MIN_SIDE, "MS-SSIM"),
                                       (weights.perceptual, PERCEPTUAL_MIN_SIDE, "perceptual")):
            if weight and self.patch < smallest:
                raise ConfigError(f"the {loss} loss needs a patch of at least {smallest} px, got {self.patch}")
        if any(milestone < 1 for milestone in self.milestones):
            raise ConfigError(f"milestones are steps from 1 on, got {list(self.milestones)}")

    @property
    def loss_weights(self) -> LossWeights:
        return dataclasses.replace(STAGE_LOSSES[self.stage], **self.losses)

    @property
    def generator_lr(self) -> float:
        return self.lr or STAGE_LR[self.stage]

    @property
    def degradation_config(self) -> DegradationConfig | None:
        return None if self.degradation == "none" else DEGRADATION_PRESETS[self.degradation]


@dataclass(frozen=True, kw_only=True)
class TrainingConfig(StepOptions):
    """One run: the step's options and the run's; the defaults are the official fine-tune at a batch and a length that
    suit one consumer GPU. `model`: a bundled name, a model file or `new:ARCH:key=value,...`; `hr_dir`: the
    high-resolution images (empty with images in memory); `output_dir`: the run's folder."""

    model: str
    hr_dir: str
    output_dir: str
    steps: int = option(5000, "Optimizer steps of the run (a resumed run may raise it).", minimum=1, maximum=10**9)
    batch: int = option(4, "Images per step and process (the official 12 needs a big GPU).", minimum=1, maximum=1024)
    degrade_size: int = option(400, "Side every ground truth is cropped or padded to before it is degraded (the "
                                    "official 400).", minimum=16, maximum=4096)
    lr_dir: str = option("", "Low-resolution partners of hr_dir's images (same relative paths): paired training, "
                             "no synthetic degradation.")
    val_dir: str = option("", "Held-out high-resolution images: PSNR/SSIM and samples every val_every steps.")
    val_lr_dir: str = option("", "Low-resolution partners of val_dir's images (else the degradation makes them).")
    val_every: int = option(1000, "Steps between validations.", minimum=1, maximum=10**9)
    val_luma: bool = option(False, "Score PSNR/SSIM on BT.601 luma (as the papers' tables) instead of RGB.")
    val_crop_border: int = option(-1, "Pixels left out at every edge when scoring; -1: the scale, as BasicSR.",
                                  minimum=-1, maximum=1024)
    samples: int = option(4, "Validation outputs saved in samples/ at each validation.", minimum=0, maximum=10**6)
    discriminator: str = option("", "A trained discriminator to start from: the official *_netD.pth or a "
                                    "discriminator.safetensors of ours (without one, D starts fresh and warms up).")
    discriminator_feat: int = option(64, "Width of a fresh discriminator (the official 64).", minimum=1, maximum=1024)
    vgg19: str = option("", "VGG19's ImageNet weights file for the perceptual loss (default: torchvision's cache, "
                            "~/.cache/torch/hub/checkpoints/vgg19-dcbb9e9d.pth; never downloaded).")
    workers: int = option(2, "Processes that read and crop the images.", minimum=0, maximum=256)
    checkpoint_every: int = option(1000, "Steps between checkpoints (state/, the model files).", minimum=1,
                                   maximum=10**9)
    log_every: int = option(10, "Steps between rows of metrics.jsonl.", minimum=1, maximum=10**9)
    device: str = option("", "cpu, cuda, cuda:1, ... (default: cuda if available; under torchrun the rank's).")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.degradation == "none" and not self.lr_dir:
            raise ConfigError("without a degradation preset the low-resolution images come from lr_dir: give one")
        if self.batch % self.accumulate:
            raise ConfigError(f"batch ({self.batch}) must be a multiple of accumulate ({self.accumulate})")
        if not self.lr_dir:
            self._check_degradation_sizes()

    def _check_degradation_sizes(self) -> None:
        scale = DEGRADATION_PRESETS[self.degradation].scale
        if self.patch > self.degrade_size:
            raise ConfigError(f"the patch ({self.patch}) cannot be larger than degrade_size ({self.degrade_size})")
        if self.degrade_size % scale:
            raise ConfigError(f"degrade_size ({self.degrade_size}) must be a multiple of the scale ({scale})")

    def step_options(self, paired: bool = False) -> StepOptions:
        """The step's options under this run's rules: no pool for pairs or for a degradation with nothing random, else
        the pool size nearest to `pool_size` that the batch divides; the EMA decay for the run's length; D's warm-up
        only for a fresh D, and at most a tenth of the run."""
        own = {f.name: getattr(self, f.name) for f in fields(StepOptions)}
        return StepOptions(**{**own, "pool_size": self.run_pool_size(paired), "ema_decay": self.run_ema_decay,
                              "discriminator_warmup": self.run_discriminator_warmup})

    def run_pool_size(self, paired: bool = False) -> int:
        degradation = self.degradation_config
        if paired or not self.pool_size or degradation is None or not degradation_varies(degradation):
            return 0
        return max(self.batch, round(self.pool_size / self.batch) * self.batch)

    @property
    def run_ema_decay(self) -> float:
        return decay_for_run(self.steps, self.ema_decay)

    @property
    def run_discriminator_warmup(self) -> int:
        if self.discriminator or not self.loss_weights.gan:
            return 0
        return min(self.discriminator_warmup, self.steps // 10)  # a short run keeps nine tenths for G

    def notes(self, paired: bool = False) -> list[str]:
        """What the run's rules chose, for the log."""
        said = [f"EMA decay {self.run_ema_decay:g}" + (f" (ema_decay {self.ema_decay:g} averages over more than a "
                f"tenth of {self.steps} steps)" if self.run_ema_decay != self.ema_decay else ""),
                f"learning rate {self.generator_lr:g} (G), {self.discriminator_lr:g} (D)"
                if self.loss_weights.gan else f"learning rate {self.generator_lr:g}"]
        pool = self.run_pool_size(paired)
        if pool != self.pool_size:
            why = ("paired data goes without the pool" if paired or not self.degradation else
                   "the degradation has nothing random to mix" if not pool else
                   f"the nearest multiple of the batch ({self.batch}) to pool_size {self.pool_size}")
            said.append(f"training-pair pool of {pool} pairs: {why}")
        if self.loss_weights.gan:
            warmup = self.run_discriminator_warmup
            said.append(f"discriminator from {self.discriminator}" if self.discriminator else
                        f"fresh discriminator, trained alone (G frozen) for the first {warmup} steps" if warmup else
                        "fresh discriminator, no warm-up")
            if self.discriminator_passes != "official":
                said.append("discriminator passes: shared (the fake pass reuses G's forward; not the official step)")
        if self.degradation and self.degradation_draws != "batch" and not paired:
            said.append("degradations drawn per image (the official pipeline draws some once per batch)")
        return said

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


def _checked_options(options: Any) -> None:
    """Every option field's bounds and choices (`check_options`), as a ConfigError."""
    try:
        check_options(options)
    except ConfigError:
        raise
    except RealESRError as exc:
        raise ConfigError(str(exc)) from exc


# The official recipe (REALESRGAN.md 4) and traiNNer-redux's Compact numbers (TRAINING.md 1; their pools hold 192
# pairs, the nearest multiple of their batches to the official 180). The milestone equals the run's length in the
# official files, which keeps the learning rate constant: no milestone says the same. Learning rates follow the stage.
TRAINING_PRESETS: dict[str, dict[str, Any]] = {
    "realesrnet_x4plus": dict(stage="net", batch=12, patch=256, steps=1_000_000, degradation="realesrgan_x4"),
    "realesrgan_x4plus": dict(stage="gan", batch=12, patch=256, steps=400_000, degradation="realesrgan_x4"),
    "finetune_x4plus": dict(stage="gan", batch=12, patch=256, steps=400_000, degradation="realesrgan_x4"),
    "finetune_pairs": dict(stage="gan", batch=12, patch=256, steps=400_000, degradation="none"),
    "realesrnet_x2plus": dict(stage="net", batch=12, patch=256, steps=1_000_000, degradation="realesrgan_x2"),
    "realesrgan_x2plus": dict(stage="gan", batch=12, patch=256, steps=400_000, degradation="realesrgan_x2"),
    "compact_net_x4": dict(stage="net", batch=16, patch=256, steps=450_000, degradation="realesrgan_x4",
                           pool_size=192),
    "compact_gan_x4": dict(stage="gan", batch=8, patch=384, steps=250_000, degradation="realesrgan_x4",
                           pool_size=192),
    "bicubic_x2": dict(stage="net", batch=16, patch=128, steps=100_000, degradation="bicubic_x2"),
    "bicubic_x4": dict(stage="net", batch=16, patch=256, steps=100_000, degradation="bicubic_x4"),
}
def preset(name: str) -> dict[str, Any]:
    _check_choice("training preset", name, TRAINING_PRESETS)
    return dict(TRAINING_PRESETS[name])


def finetune_degradation(model_scale: int, paired: bool) -> str:
    """The degradation of a fine-tune that names none: none for pairs, else the official one of the model's scale
    (x2 and x4; a model of another scale must name a preset of its scale)."""
    if paired:
        return "none"
    return f"realesrgan_x{model_scale}" if model_scale in (2, 4) else StepOptions.degradation


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
