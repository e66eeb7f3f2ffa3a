"""What a loaded model is: the network plus everything a caller needs to run it correctly."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import RealESRError
from .rescaled import OutputRescaled


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


def describe(model: Any) -> ModelDescriptor:
    """Our descriptor as it is, or one describing a spandrel descriptor (e.g. from ComfyUI's own loader).

    The spandrel model's module is used as it is, not copied or converted.
    """
    if isinstance(model, ModelDescriptor):
        return model
    if isinstance(getattr(model, "model", None), nn.Module) and hasattr(model, "scale"):
        requirements = getattr(model, "size_requirements", None)
        multiple = max(int(getattr(requirements, "multiple_of", 1) or 1), int(getattr(requirements, "minimum", 1) or 1))
        architecture = getattr(getattr(model, "architecture", None), "name", type(model.model).__name__)
        return ModelDescriptor(model.model, str(architecture), {}, int(model.scale),
                               int(getattr(model, "input_channels", 3)), int(getattr(model, "output_channels", 3)),
                               multiple, bool(getattr(model, "supports_half", False)),
                               bool(getattr(model, "supports_bfloat16", False)), source="spandrel")
    raise RealESRError(f"cannot upscale with a {type(model).__name__}: expected a model from load_model or spandrel")
