"""Real-ESRGAN's second-order degradation pipeline: sample parameters, then apply them.

`sample_parameters` draws every random choice (per image, once for the batch, or split as the official training
pipeline splits them: `batch_draws`) from a `torch.Generator` and returns plain data that serialises to JSON;
`apply_parameters` turns an image batch and such data into the degraded batch, deterministically (noise comes from
seeds stored in the parameters). `degrade` does both.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import torch

from ..errors import RealESRError
from ..image_tensors import check_images
from . import ops
from .jpeg import diff_jpeg
from .kernels import KERNEL_TYPES, build_kernel

Params = dict[str, Any]
KERNEL_SIZES = tuple(range(7, 22, 2))
NOISE_SEED_STRIDE = 1_000_003
DIRECTIONS = ("up", "down", "keep")


@dataclass(frozen=True)
class DegradationConfig:
    """Every probability and range of the pipeline; the defaults are Real-ESRGAN's official x4 settings."""

    scale: int = 4
    sharpen_input: bool = True  # Real-ESRGAN degrades the USM-sharpened ground truth
    # first degradation
    blur_prob: float = 1.0
    kernel_prob: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sinc_prob: float = 0.1
    blur_sigma: tuple[float, float] = (0.2, 3.0)
    betag_range: tuple[float, float] = (0.5, 4.0)
    betap_range: tuple[float, float] = (1.0, 2.0)
    resize_prob: tuple[float, float, float] = (0.2, 0.7, 0.1)  # up, down, keep
    resize_range: tuple[float, float] = (0.15, 1.5)
    noise_prob: float = 1.0
    gaussian_noise_prob: float = 0.5
    noise_range: tuple[float, float] = (1.0, 30.0)
    poisson_scale_range: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_prob: float = 1.0
    jpeg_range: tuple[float, float] = (30.0, 95.0)
    # second degradation
    second_order_prob: float = 1.0
    second_blur_prob: float = 0.8
    kernel_prob2: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sinc_prob2: float = 0.1
    blur_sigma2: tuple[float, float] = (0.2, 1.5)
    betag_range2: tuple[float, float] = (0.5, 4.0)
    betap_range2: tuple[float, float] = (1.0, 2.0)
    resize_prob2: tuple[float, float, float] = (0.3, 0.4, 0.3)
    resize_range2: tuple[float, float] = (0.3, 1.2)
    gaussian_noise_prob2: float = 0.5
    noise_range2: tuple[float, float] = (1.0, 25.0)
    poisson_scale_range2: tuple[float, float] = (0.05, 2.5)
    gray_noise_prob2: float = 0.4
    jpeg_prob2: float = 1.0
    jpeg_range2: tuple[float, float] = (30.0, 95.0)
    # final stage
    final_sinc_prob: float = 0.8
    resize_modes: tuple[str, ...] = ("area", "bilinear", "bicubic")
    final_resize_modes: tuple[str, ...] = ("area", "bilinear", "bicubic")

    def with_overrides(self, **overrides: Any) -> "DegradationConfig":
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise RealESRError(f"unknown degradation setting(s) {', '.join(unknown)}")
        return replace(self, **{k: _checked(k, v, getattr(self, k)) for k, v in overrides.items()})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _checked(name: str, value: Any, default: Any) -> Any:
    """An override must have the shape of the default it replaces."""
    def number(x: Any) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool)

    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, (int, float)):
        ok = number(value)
    elif name.endswith("resize_modes"):
        ok = isinstance(value, (list, tuple)) and value and all(v in ops.RESIZE_MODES for v in value)
    else:
        ok = isinstance(value, (list, tuple)) and len(value) == len(default) and all(number(v) for v in value)
    if not ok:
        example = list(default) if isinstance(default, tuple) else default
        raise RealESRError(f"degradation setting {name} must look like {example!r}, got {value!r}")
    return tuple(value) if isinstance(value, list) else value


OFFICIAL_X4 = DegradationConfig()
DEGRADATION_PRESETS: dict[str, DegradationConfig] = {
    "realesrgan_x4": OFFICIAL_X4,
    "realesrgan_x2": OFFICIAL_X4.with_overrides(scale=2),
    "light_x4": OFFICIAL_X4.with_overrides(
        blur_sigma=(0.2, 1.5), sinc_prob=0.05, resize_range=(0.5, 1.2), noise_range=(1, 10),
        poisson_scale_range=(0.05, 1.0), jpeg_range=(60, 95), second_order_prob=0.5, second_blur_prob=0.5,
        blur_sigma2=(0.2, 1.0), noise_range2=(1, 8), poisson_scale_range2=(0.05, 0.8), jpeg_range2=(60, 95),
        final_sinc_prob=0.5,
    ),
    "heavy_x4": OFFICIAL_X4.with_overrides(
        blur_sigma=(0.5, 4.0), sinc_prob=0.2, resize_range=(0.1, 1.5), noise_range=(5, 40),
        poisson_scale_range=(0.5, 4.0), jpeg_range=(20, 80), second_blur_prob=1.0, blur_sigma2=(0.5, 2.0),
        noise_range2=(5, 35), poisson_scale_range2=(0.5, 3.5), jpeg_range2=(20, 80), final_sinc_prob=0.9,
    ),
    "bicubic_x4": OFFICIAL_X4.with_overrides(
        sharpen_input=False, blur_prob=0.0, resize_prob=(0.0, 0.0, 1.0), noise_prob=0.0, jpeg_prob=0.0,
        second_order_prob=0.0, final_sinc_prob=0.0, final_resize_modes=("bicubic",), jpeg_prob2=0.0,
    ),
}
# fidelity training: plain bicubic x2
DEGRADATION_PRESETS["bicubic_x2"] = DEGRADATION_PRESETS["bicubic_x4"].with_overrides(scale=2)


def get_preset(name: str, **overrides: Any) -> DegradationConfig:
    if name not in DEGRADATION_PRESETS:
        raise RealESRError(f"unknown degradation preset {name!r}; known: {', '.join(DEGRADATION_PRESETS)}")
    return DEGRADATION_PRESETS[name].with_overrides(**overrides) if overrides else DEGRADATION_PRESETS[name]


# ------------------------------------------------------------------------------------------------------ sampling


class _Draw:
    """Random draws from one generator, as plain Python numbers."""

    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator

    def uniform(self, low: float, high: float) -> float:
        return float(low + (high - low) * torch.rand((), generator=self.generator, dtype=torch.float64))

    def chance(self, probability: float) -> bool:
        return bool(torch.rand((), generator=self.generator, dtype=torch.float64) < probability)

    def choice(self, options: tuple, weights: tuple[float, ...] | None = None) -> Any:
        weights_t = torch.tensor(weights if weights is not None else [1.0] * len(options), dtype=torch.float64)
        return options[int(torch.multinomial(weights_t, 1, generator=self.generator))]

    def seed(self) -> int:
        return int(torch.randint(0, 2**62, (), generator=self.generator))


def sample_kernel(draw: _Draw, kernel_prob: tuple[float, ...], sinc_prob: float, sigma: tuple[float, float],
                  betag: tuple[float, float], betap: tuple[float, float]) -> Params:
    """One blur kernel, as Real-ESRGAN's dataset draws it (random_mixed_kernels, or a sinc with `sinc_prob`)."""
    size = draw.choice(KERNEL_SIZES)
    if draw.chance(sinc_prob):
        low = math.pi / 3 if size < 13 else math.pi / 5
        return {"type": "sinc", "size": size, "cutoff": draw.uniform(low, math.pi)}
    kind = draw.choice(KERNEL_TYPES[:6], kernel_prob)
    sigma_x = draw.uniform(*sigma)
    if kind.endswith("iso") and not kind.endswith("aniso"):
        sigma_y, theta = sigma_x, 0.0
    else:
        sigma_y, theta = draw.uniform(*sigma), draw.uniform(-math.pi, math.pi)
    params = {"type": kind, "size": size, "sigma_x": sigma_x, "sigma_y": sigma_y, "theta": theta}
    if kind.startswith(("generalized", "plateau")):
        low, high = betag if kind.startswith("generalized") else betap
        params["beta"] = draw.uniform(low, 1.0) if draw.chance(0.5) else draw.uniform(1.0, high)
    return params


def sample_blur_kernels(config: DegradationConfig, count: int, seed: int) -> list[Params]:
    """First-stage blur kernels as the pipeline draws them, one per image."""
    draw = _Draw(torch.Generator().manual_seed(int(seed) % 2**63))
    return [sample_kernel(draw, config.kernel_prob, config.sinc_prob, config.blur_sigma, config.betag_range,
                          config.betap_range) for _ in range(count)]


class _BatchDecisions:
    """The choices Real-ESRGAN's training pipeline makes once per batch (`feed_data` draws them with Python's and
    NumPy's RNGs for the whole batch): both resizes (direction, factor, mode), Gaussian or Poisson noise in both
    stages, whether the second blur happens, and the final order and resize mode. Each is made at the first image
    that needs it and kept for the rest of the batch; a fresh store per image makes them per image. Kernels, noise
    amounts, gray noise and JPEG qualities stay per image, as the official dataset and degradations draw them."""

    def __init__(self) -> None:
        self.made: dict[str, Any] = {}

    def once(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self.made:
            self.made[key] = make()
        return self.made[key]


def _sample_resize(draw: _Draw, probs: tuple[float, float, float], span: tuple[float, float],
                   modes: tuple[str, ...]) -> Params:
    direction = draw.choice(DIRECTIONS, probs)
    factor = {"up": lambda: draw.uniform(1.0, span[1]), "down": lambda: draw.uniform(span[0], 1.0),
              "keep": lambda: 1.0}[direction]()
    return {"direction": direction, "factor": factor, "mode": draw.choice(modes)}


def _sample_noise(draw: _Draw, gaussian: bool, sigma: tuple[float, float], poisson: tuple[float, float],
                  gray_prob: float) -> Params:
    if gaussian:
        return {"type": "gaussian", "sigma": draw.uniform(*sigma), "gray": draw.chance(gray_prob), "seed": draw.seed()}
    return {"type": "poisson", "scale": draw.uniform(*poisson), "gray": draw.chance(gray_prob), "seed": draw.seed()}


def _sample_one(draw: _Draw, c: DegradationConfig, height: int, width: int, batch: _BatchDecisions) -> Params:
    first = {
        "blur": sample_kernel(draw, c.kernel_prob, c.sinc_prob, c.blur_sigma, c.betag_range, c.betap_range)
        if draw.chance(c.blur_prob) else None,
        "resize": batch.once("resize", lambda: _sample_resize(draw, c.resize_prob, c.resize_range, c.resize_modes)),
        "noise": _sample_noise(draw, batch.once("gaussian", lambda: draw.chance(c.gaussian_noise_prob)),
                               c.noise_range, c.poisson_scale_range, c.gray_noise_prob)
        if draw.chance(c.noise_prob) else None,
        "jpeg": {"quality": draw.uniform(*c.jpeg_range)} if draw.chance(c.jpeg_prob) else None,
    }
    second = None
    if draw.chance(c.second_order_prob):
        second = {
            "blur": sample_kernel(draw, c.kernel_prob2, c.sinc_prob2, c.blur_sigma2, c.betag_range2, c.betap_range2)
            if batch.once("blur2", lambda: draw.chance(c.second_blur_prob)) else None,
            "resize": batch.once("resize2", lambda: _sample_resize(draw, c.resize_prob2, c.resize_range2,
                                                                   c.resize_modes)),
            "noise": _sample_noise(draw, batch.once("gaussian2", lambda: draw.chance(c.gaussian_noise_prob2)),
                                   c.noise_range2, c.poisson_scale_range2, c.gray_noise_prob2)
            if draw.chance(c.noise_prob) else None,
        }
    sinc = None
    if draw.chance(c.final_sinc_prob):
        sinc = {"type": "sinc", "size": draw.choice(KERNEL_SIZES), "cutoff": draw.uniform(math.pi / 3, math.pi)}
    final = {
        "order": batch.once("order", lambda: draw.choice(("resize_then_jpeg", "jpeg_then_resize"))),
        "resize_mode": batch.once("final_mode", lambda: draw.choice(c.final_resize_modes)),
        "sinc": sinc,
        "jpeg": {"quality": draw.uniform(*c.jpeg_range2)} if draw.chance(c.jpeg_prob2) else None,
    }
    return {"scale": c.scale, "input_size": [height, width], "sharpen_input": c.sharpen_input,
            "first": first, "second": second, "final": final}


def sample_parameters(config: DegradationConfig, batch: int, height: int, width: int, seed: int | None = None,
                      generator: torch.Generator | None = None, same_on_batch: bool = False,
                      batch_draws: bool = False) -> list[Params]:
    """Draws one parameter set per image (or one shared by the whole batch), as JSON-serialisable dicts. With
    `batch_draws`, the choices the official training pipeline makes once per batch (resizes, noise kinds, the second
    blur or not, the final order and resize mode) are shared by every image and the rest drawn per image."""
    if generator is None:
        generator = torch.Generator().manual_seed(0 if seed is None else int(seed) % 2**63)
    draw = _Draw(generator)
    if same_on_batch:
        shared = _sample_one(draw, config, height, width, _BatchDecisions())
        return [shared for _ in range(batch)]
    decisions = _BatchDecisions()
    return [_sample_one(draw, config, height, width, decisions if batch_draws else _BatchDecisions())
            for _ in range(batch)]


# ------------------------------------------------------------------------------------------------------ applying


def _blur(images: torch.Tensor, kernel: Params | None) -> torch.Tensor:
    return images if kernel is None else ops.filter2d(images, build_kernel(kernel).to(images.device))


def _noise(images: torch.Tensor, noise: Params | None, indices: list[int]) -> torch.Tensor:
    """Each image's noise comes from the stored seed and its place in the batch, so shared parameters give each
    frame its own grain, and replaying gives the same grain whatever the grouping."""
    if noise is None:
        return images
    add = ops.gaussian_noise if noise["type"] == "gaussian" else ops.poisson_noise
    amount = noise["sigma"] if noise["type"] == "gaussian" else noise["scale"]
    noisy = []
    for position, index in enumerate(indices):
        generator = torch.Generator().manual_seed((int(noise["seed"]) + NOISE_SEED_STRIDE * index) % 2**63)
        noisy.append(add(images[position : position + 1], [amount], [noise["gray"]], generator))
    return torch.cat(noisy, 0)


def _jpeg(images: torch.Tensor, jpeg: Params | None) -> torch.Tensor:
    if jpeg is None:
        return images
    return diff_jpeg(images.clamp(0, 1), jpeg["quality"], differentiable=False)


def _apply_one(image: torch.Tensor, p: Params, indices: list[int]) -> torch.Tensor:
    """The degradation of a batch that shares one parameter set."""
    scale = p["scale"]
    height, width = p["input_size"]
    out = ops.usm_sharpen(image) if p["sharpen_input"] else image
    first = p["first"]
    out = _blur(out, first["blur"])
    factor = first["resize"]["factor"]
    out = ops.resize(out, (int(height * factor), int(width * factor)), first["resize"]["mode"])
    out = _jpeg(_noise(out, first["noise"], indices), first["jpeg"])
    if p["second"] is not None:
        second = p["second"]
        out = _blur(out, second["blur"])
        factor = second["resize"]["factor"]
        out = ops.resize(out, (int(height / scale * factor), int(width / scale * factor)), second["resize"]["mode"])
        out = _noise(out, second["noise"], indices)
    final = p["final"]
    target = (max(1, height // scale), max(1, width // scale))
    if final["order"] == "resize_then_jpeg":
        out = _blur(ops.resize(out, target, final["resize_mode"]), final["sinc"])
        out = _jpeg(out.clamp(0, 1), final["jpeg"])
    else:
        out = _jpeg(out.clamp(0, 1), final["jpeg"])
        out = _blur(ops.resize(out, target, final["resize_mode"]), final["sinc"])
    return out.clamp(0, 1)


@dataclass
class Degraded:
    degraded: torch.Tensor  # [B, C, H/scale, W/scale] (or [B, C, H, W] with keep_size)
    target: torch.Tensor  # the clean image, USM-sharpened when asked
    params: list[Params] = field(default_factory=list)


def apply_parameters(images: torch.Tensor, params: list[Params], *, quantize: bool = True, keep_size: bool = False,
                     sharpen_target: bool = False) -> Degraded:
    """Applies drawn parameters; the same images and parameters always give the same output."""
    check_images(images, ops.CHANNELS)
    if len(params) != images.shape[0]:
        raise RealESRError(f"{len(params)} parameter sets for a batch of {images.shape[0]} images")
    height, width = images.shape[-2:]
    if any(list(p["input_size"]) != [height, width] for p in params):
        raise RealESRError("the parameters were drawn for another image size")
    groups: dict[int, list[int]] = {}
    for index, p in enumerate(params):
        groups.setdefault(id(p), []).append(index)  # images sharing one dict (same_on_batch) go through together

    def degrade_colour(colour: torch.Tensor) -> torch.Tensor:
        pieces: dict[int, torch.Tensor] = {}
        for indices in groups.values():
            out = _apply_one(colour[indices], params[indices[0]], indices)
            for position, index in enumerate(indices):
                pieces[index] = out[position : position + 1]
        return torch.cat([pieces[i] for i in range(len(params))], 0)

    degraded = ops.on_colour(images, degrade_colour)
    if quantize:
        degraded = ops.quantize(degraded)
    if keep_size:
        degraded = ops.resize(degraded, (height, width), "bicubic").clamp(0, 1)
    target = ops.on_colour(images, ops.usm_sharpen) if sharpen_target else images.float()
    return Degraded(degraded, target, params)


def degrade(images: torch.Tensor, config: DegradationConfig | str = "realesrgan_x4", *, seed: int | None = None,
            generator: torch.Generator | None = None, same_on_batch: bool = False, batch_draws: bool = False,
            quantize: bool = True, keep_size: bool = False, sharpen_target: bool = False) -> Degraded:
    """Samples and applies the full pipeline: per-image damage by default, the same on every image on request, or
    the official training split (`batch_draws`, see sample_parameters)."""
    check_images(images, ops.CHANNELS)
    if isinstance(config, str):
        config = get_preset(config)
    params = sample_parameters(config, images.shape[0], *images.shape[-2:], seed=seed, generator=generator,
                               same_on_batch=same_on_batch, batch_draws=batch_draws)
    return apply_parameters(images, params, quantize=quantize, keep_size=keep_size, sharpen_target=sharpen_target)
