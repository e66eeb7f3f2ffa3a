"""A network followed by a fixed bicubic resize of its output (realesr-animevideov3 x2/x3 = x4 then resize)."""

from __future__ import annotations

from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import nn


class OutputRescaled(nn.Module):
    """Runs `network`, then resizes its output by `factor` with plain bicubic, as the ncnn graphs do."""

    def __init__(self, network: nn.Module, factor: float) -> None:
        super().__init__()
        scale = Fraction(network.scale) * Fraction(factor).limit_denominator(64)
        if scale.denominator != 1:
            raise ValueError(f"x{network.scale} resized by {factor} is not an integer scale")
        self.network = network
        self.factor = float(factor)
        self.scale = int(scale)
        self.num_in_ch = network.num_in_ch
        self.num_out_ch = network.num_out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.network(x)
        size = (x.shape[-2] * self.scale, x.shape[-1] * self.scale)
        return F.interpolate(out, size=size, mode="bicubic", align_corners=False)

    def peak_elements_per_pixel(self) -> float:
        return self.network.peak_elements_per_pixel()
