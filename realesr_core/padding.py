"""Border padding that works for any image size."""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
