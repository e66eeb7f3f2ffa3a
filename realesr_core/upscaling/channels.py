"""Fitting images to models: alpha split off (and premultiplied colour), gray through colour models and back."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ImageError
from ..image_tensors import luminance

ALPHA_MODES = ("model", "resize")


def split_alpha(image: torch.Tensor, model_channels: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Returns (colour, alpha); alpha is None where the model takes the channels natively or there is none."""
    channels = image.shape[1]
    if channels == model_channels or channels not in (2, 4):
        return image, None
    return image[:, :-1], image[:, -1:]


def to_model_channels(image: torch.Tensor, model_channels: int) -> torch.Tensor:
    """The image as the model takes it: gray repeated for a colour model, the luminance for a gray model (1-channel
    denoisers such as DnCNN and DRUNet)."""
    channels = image.shape[1]
    if channels == model_channels:
        return image
    if channels == 1 and model_channels == 3:
        return image.expand(-1, 3, -1, -1)
    if channels == 3 and model_channels == 1:
        return luminance(image)
    if model_channels < 1:
        raise ImageError(f"the model says it takes {model_channels} image channels, so no image can go through it "
                         "(is it an image model?)")
    raise ImageError(f"the model takes {_channels(model_channels)} images, not {_channels(channels)} ones")


def from_model_channels(output: torch.Tensor, image_channels: int) -> torch.Tensor:
    """The model's output with the image's channels: a gray result becomes gray RGB (a tensor of its own, which
    later steps may change in place), a colour result of a gray image its luminance."""
    if output.shape[1] == image_channels:
        return output
    if image_channels == 1:
        return luminance(output) if output.shape[1] == 3 else output[:, :1]
    if image_channels == 3 and output.shape[1] == 1:
        return output.repeat(1, 3, 1, 1)
    raise ImageError(f"the model gives {_channels(output.shape[1])} images, which cannot be turned into "
                     f"{_channels(image_channels)} ones")


_KINDS = {1: "gray", 2: "gray+alpha", 3: "RGB", 4: "RGBA"}


def _channels(count: int) -> str:
    return f"{_KINDS[count]} ({count}-channel)" if count in _KINDS else f"{count}-channel"


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
