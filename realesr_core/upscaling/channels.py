"""Fitting images to models: alpha split off (and premultiplied colour), gray through colour models and back."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ImageError
from ..imaging import luminance

ALPHA_MODES = ("model", "resize")


def split_alpha(image: torch.Tensor, model_channels: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Returns (colour, alpha); alpha is None where the model takes the channels natively or there is none."""
    channels = image.shape[1]
    if channels == model_channels or channels not in (2, 4):
        return image, None
    return image[:, :-1], image[:, -1:]


def to_model_channels(image: torch.Tensor, model_channels: int) -> torch.Tensor:
    channels = image.shape[1]
    if channels == model_channels:
        return image
    if channels == 1 and model_channels == 3:
        return image.expand(-1, 3, -1, -1)
    if channels == 3 and model_channels == 1:
        return luminance(image)
    raise ImageError(f"a {channels}-channel image cannot go through a {model_channels}-channel model")


def from_model_channels(output: torch.Tensor, image_channels: int) -> torch.Tensor:
    if output.shape[1] == image_channels:
        return output
    if image_channels == 1:
        return luminance(output) if output.shape[1] == 3 else output[:, :1]
    if image_channels == 3 and output.shape[1] == 1:
        return output.expand(-1, 3, -1, -1)
    raise ImageError(f"cannot turn {output.shape[1]} model output channels into {image_channels}")


def premultiply(colour: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Transparent pixels carry no colour into their neighbours, so edges get no dark or stray-colour fringe."""
    return colour * alpha


def unpremultiply(colour: torch.Tensor, alpha: torch.Tensor, eps: float = 1.0 / 512) -> torch.Tensor:
    return torch.where(alpha > eps, colour / alpha.clamp_min(eps), torch.zeros_like(colour)).clamp(0, 1)


def keep_flat_alpha(alpha: torch.Tensor, upscaled: torch.Tensor) -> torch.Tensor:
    """The upscaled alpha `[1, 1, h, w]`, exact where the source's `[1, 1, H, W]` is flat: a pixel whose 3x3
    neighbourhood holds one value (inside an opaque or transparent area, or a layer of constant opacity) keeps it,
    where the network's ripples would turn 255 into 254 and 0 into 1. Edges keep the upscaled alpha."""
    padded = F.pad(alpha, (1, 1, 1, 1), mode="replicate")
    flat = F.max_pool2d(padded, 3, stride=1) == -F.max_pool2d(-padded, 3, stride=1)
    size = upscaled.shape[-2:]
    flat_up = F.interpolate(flat.to(alpha.dtype), size=size, mode="nearest").to(upscaled.device) > 0.5
    return torch.where(flat_up, F.interpolate(alpha, size=size, mode="nearest").to(upscaled.device), upscaled)
