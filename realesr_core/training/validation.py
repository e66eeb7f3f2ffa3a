"""Validation as the field reports it: PSNR and SSIM of the 8-bit result against the clean image, on RGB or on BT.601
luma (Y in 16..235, as BasicSR and the papers' tables), with `crop_border` pixels left out at every edge. The
low-resolution inputs are made once, with a fixed seed, so every validation of a run (and of a resumed run) sees the
same images."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..degradation.pipeline import DegradationConfig, degrade
from ..errors import RealESRError
from ..image_tensors import luminance
from .data import ImageSource, find_training_images, find_training_pairs, load_rgb, memory_images, memory_pairs
from .losses import ssim_terms

VALIDATION_SEED = 20_240_101
Y_WEIGHTS = (65.481 / 255, 128.553 / 255, 24.966 / 255)  # ITU-R BT.601, Y = 16/255 + these · RGB


def _prepared(image: torch.Tensor, luma: bool, crop_border: int) -> torch.Tensor:
    image = torch.round(image.float().clamp(0, 1) * 255) / 255  # the 8-bit image a user would save
    if luma:
        image = 16 / 255 + luminance(image, Y_WEIGHTS)
    if crop_border:
        image = image[..., crop_border:-crop_border, crop_border:-crop_border]
    return image


def psnr(output: torch.Tensor, reference: torch.Tensor, luma: bool = False, crop_border: int = 0) -> float:
    """PSNR in dB of `[1, 3, H, W]` images in 0..1."""
    output, reference = _prepared(output, luma, crop_border), _prepared(reference, luma, crop_border)
    mse = torch.mean((output.double() - reference.double()) ** 2).item()
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def ssim(output: torch.Tensor, reference: torch.Tensor, luma: bool = False, crop_border: int = 0) -> float:
    """SSIM (11x11 Gaussian window, sigma 1.5, valid windows, channels averaged) of `[1, 3, H, W]` images in 0..1."""
    output, reference = _prepared(output, luma, crop_border), _prepared(reference, luma, crop_border)
    return ssim_terms(output.double(), reference.double())[0].mean().item()


@dataclass
class ValidationImage:
    name: str
    low: torch.Tensor  # [1, 3, h, w]
    high: torch.Tensor  # [1, 3, h * scale, w * scale]


def validation_images(hr_dir: str | os.PathLike, scale: int, size_multiple: int = 1, *,
                      lr_dir: str | os.PathLike | None = None,
                      degradation: DegradationConfig | None = None) -> list[ValidationImage]:
    """Held-out pairs: an LR/HR pair folder, or HR images degraded once with a fixed seed by `degradation`; cropped
    so that the network takes the low-resolution side (a multiple of `size_multiple`)."""
    if lr_dir:
        return [_cropped(high.stem, load_rgb(low)[None], load_rgb(high)[None], scale, size_multiple)
                for low, high in find_training_pairs(hr_dir, lr_dir, scale, patch=1)]
    return _degraded(find_training_images(hr_dir, min_side=scale * 8), scale, size_multiple, degradation)


def memory_validation_images(high: list[torch.Tensor], scale: int, size_multiple: int = 1, *,
                             low: list[torch.Tensor] | None = None,
                             degradation: DegradationConfig | None = None) -> list[ValidationImage]:
    """validation_images for images in memory (`[C, H, W]` in 0..1): pairs by position, or high-resolution images
    degraded once with the fixed seed; named image1, image2, ..."""
    if low is not None:
        return [_cropped(f"image{index + 1}", load_rgb(low_image)[None], load_rgb(high_image)[None], scale,
                         size_multiple)
                for index, (low_image, high_image) in enumerate(memory_pairs(high, low, scale, patch=1))]
    return _degraded(memory_images(high, scale * 8, "validation image"), scale, size_multiple, degradation)


def _cropped(name: str, low: torch.Tensor, high: torch.Tensor, scale: int, size_multiple: int) -> ValidationImage:
    """The pair's top-left part whose low-resolution side is a multiple of `size_multiple`."""
    height, width = (side // size_multiple * size_multiple for side in low.shape[-2:])
    return ValidationImage(name, low[..., :height, :width], high[..., :height * scale, :width * scale])


def _degraded(sources: list[ImageSource], scale: int, size_multiple: int,
              degradation: DegradationConfig | None) -> list[ValidationImage]:
    if degradation is None:
        raise RealESRError("validation images need low-resolution partners (val_lr_dir) or a degradation preset "
                           "to make their inputs")
    images = []
    step = scale * size_multiple
    for index, source in enumerate(sources):
        high = load_rgb(source)[None]
        high = high[..., :high.shape[-2] // step * step, :high.shape[-1] // step * step]
        low = degrade(high, degradation, seed=VALIDATION_SEED + index).degraded
        name = source.stem if isinstance(source, Path) else f"image{index + 1}"
        images.append(ValidationImage(name, low, high))
    return images
