"""Whole-image inference with ncnn-style border handling."""

from __future__ import annotations

import torch

from .descriptor import ModelDescriptor
from .errors import ImageError
from .padding import pad_reflect, pad_to_multiple

BORDER_CONTEXT = 10  # LR pixels of reflected border, as ncnn adds around every tile


def check_image(image: torch.Tensor) -> None:
    """Rejects what no model can run on, with a message that says what was wrong."""
    if not isinstance(image, torch.Tensor):
        raise ImageError(f"expected an image tensor, got {type(image).__name__}")
    if image.dim() != 4:
        raise ImageError(f"expected an image batch [B, C, H, W], got shape {list(image.shape)}")
    if image.numel() == 0:
        raise ImageError(f"image batch is empty: shape {list(image.shape)}")
    if not image.is_floating_point():
        raise ImageError(f"expected a float image in 0..1, got dtype {image.dtype}")
    if not torch.isfinite(image).all():
        raise ImageError("image contains NaN or infinite values")


@torch.no_grad()
def upscale_whole(model: ModelDescriptor, image: torch.Tensor, context: int = BORDER_CONTEXT) -> torch.Tensor:
    """Runs the network on the whole batch `[B, C, H, W]` (C = the model's input channels), unclamped output.

    The input is reflect-padded by `context` pixels (plus up to the model's size multiple) so the border pixels
    see image-like surroundings, as ncnn does, and the padding is cropped from the result.
    """
    check_image(image)
    if image.shape[1] != model.in_channels:
        raise ImageError(f"model takes {model.in_channels} channels, image has {image.shape[1]}")
    height, width = image.shape[-2:]
    bottom = context + pad_to_multiple(height + 2 * context, model.size_multiple)
    right = context + pad_to_multiple(width + 2 * context, model.size_multiple)
    parameter = next(model.module.parameters())
    padded = pad_reflect(image.to(parameter.device, parameter.dtype), context, bottom, context, right)
    out = model.module(padded)
    s = model.scale
    return out[..., context * s : (context + height) * s, context * s : (context + width) * s]
