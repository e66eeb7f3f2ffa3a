"""Small operations on image batches `[B, C, H, W]` in 0..1 that the engine, the degradation and the file code
share: the input check, padding that works for any size, and conversion to gray."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .errors import ImageError

CHANNEL_NAMES = {1: "1 (gray)", 2: "2 (gray+alpha)", 3: "3 (RGB)", 4: "4 (RGBA)"}
# ITU-R BT.601 luma, as Pillow and OpenCV convert RGB to gray (exact for gray images expanded to RGB).
BT601_WEIGHTS = (0.299, 0.587, 0.114)


def check_images(images: torch.Tensor, channels: Sequence[int] = (1, 2, 3, 4), finite: bool = True) -> None:
    """Rejects what no model or degradation can run on, with a message that says what was wrong. `finite=False`
    leaves out the NaN / infinity check, which reads the whole batch (on a GPU: a host wait) where a loop checks
    its results anyway."""
    if not isinstance(images, torch.Tensor):
        raise ImageError(f"expected an image tensor, got {type(images).__name__}")
    if images.dim() != 4:
        raise ImageError(f"expected an image batch [B, C, H, W], got shape {list(images.shape)}")
    if images.numel() == 0:
        raise ImageError(f"image batch is empty: shape {list(images.shape)}")
    if not images.is_floating_point():
        raise ImageError(f"expected a float image in 0..1, got dtype {images.dtype}")
    if finite and not torch.isfinite(images).all():
        raise ImageError("image contains NaN or infinite values")
    if images.shape[1] not in channels:
        expected = ", ".join(CHANNEL_NAMES[c] for c in channels)
        raise ImageError(f"expected {expected} channels, got {images.shape[1]}")


def luminance(rgb: torch.Tensor, weights: Sequence[float] = BT601_WEIGHTS) -> torch.Tensor:
    """`[B, 3, H, W]` to `[B, 1, H, W]` as a weighted sum of the channels."""
    return (rgb * torch.tensor(weights, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)).sum(1, keepdim=True)


def pad_reflect(x: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """Reflect padding (reflect-101, as ncnn and OpenCV's default) that also works when a side is thinner than
    the pad: it reflects as far as the image allows and replicates the remaining edge pixels."""
    height, width = x.shape[-2:]
    reflect = [min(left, width - 1), min(right, width - 1), min(top, height - 1), min(bottom, height - 1)]
    if any(reflect):
        x = F.pad(x, reflect, mode="reflect")
    rest = [left - reflect[0], right - reflect[1], top - reflect[2], bottom - reflect[3]]
    if any(rest):
        x = F.pad(x, rest, mode="replicate")
    return x


def pad_to_multiple(size: int, multiple: int) -> int:
    """How many pixels to add so that `size` becomes a multiple of `multiple`."""
    return -size % multiple
