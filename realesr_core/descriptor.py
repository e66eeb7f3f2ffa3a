"""What a loaded model is: the network plus everything a caller needs to run it correctly."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .archs import OutputRescaled


@dataclass
class ModelDescriptor:
    """A ready-to-run model (eval mode, fp32 weights) and the facts about it.

    `module(x)` maps `[B, in_channels, H, W]` (H and W multiples of `size_multiple`) in 0..1 to
    `[B, out_channels, H * scale, W * scale]`, unclamped.
    """

    module: nn.Module
    architecture: str
    hyperparameters: dict[str, Any]
    scale: int
    in_channels: int
    out_channels: int
    size_multiple: int
    supports_fp16: bool
    supports_bf16: bool
    source: str
    name: str | None = None
    output_rescale: float | None = None
    tags: list[str] = field(default_factory=list)

    @property
    def network(self) -> nn.Module:
        """The bare architecture module whose state dict is the canonical one (no output resize)."""
        return self.module.network if isinstance(self.module, OutputRescaled) else self.module

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.network.state_dict()

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v}" for k, v in self.hyperparameters.items())
        rescale = f", output x{self.output_rescale}" if self.output_rescale else ""
        label = self.name or self.source
        return f"ModelDescriptor({label}: {self.architecture}({params}){rescale}, x{self.scale})"
