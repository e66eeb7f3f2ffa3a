"""What a loaded model is: the network plus everything a caller needs to run it correctly."""

from __future__ import annotations

import copy
import enum
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import RealESRError
from .rescaled import OutputRescaled


class ModelTiling(enum.Enum):
    """Whether the engine may cut an image into tiles for a model (spandrel's three cases)."""

    SUPPORTED = "supported"  # tiles give the whole image's result up to the seams the overlap hides
    DISCOURAGED = "discouraged"  # one piece whenever it fits (attention windows or global statistics differ)
    INTERNAL = "internal"  # the model tiles itself: always one piece


@dataclass
class ModelDescriptor:
    """A ready-to-run model (eval mode, fp32 weights) and the facts about it.

    `module(x)` maps `[B, in_channels, H, W]` (H and W multiples of `size_multiple`) in 0..1 to
    `[B, out_channels, H * scale, W * scale]`, unclamped. `tiling` says whether the engine may cut the image
    (`ModelTiling`). `channels_last`: the network runs on channels-last inputs (ours are faster so; other loaders' models
    get plain contiguous inputs).
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
    tiling: ModelTiling = ModelTiling.SUPPORTED
    channels_last: bool = True

    @property
    def network(self) -> nn.Module:
        """The bare architecture module whose state dict is the canonical one (no output resize, no spandrel call)."""
        if isinstance(self.module, (OutputRescaled, ThroughSpandrel)):
            return self.module.network
        return self.module

    @property
    def spandrel_descriptor(self) -> Any | None:
        """The spandrel `ImageModelDescriptor` that runs a model of another architecture (None for ours)."""
        return self.module.descriptor if isinstance(self.module, ThroughSpandrel) else None

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.network.state_dict()

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v}" for k, v in self.hyperparameters.items())
        rescale = f", output x{self.output_rescale}" if self.output_rescale else ""
        label = self.name or self.source
        return f"ModelDescriptor({label}: {self.architecture}({params}){rescale}, x{self.scale})"


class ThroughSpandrel(nn.Module):
    """Runs another loader's spandrel model the way spandrel does, one image at a time: its own call function (some
    models return tuples or want extra input channels), its padding to the size requirements, its clamping.

    In reduced precision it runs under autocast: several architectures build float32 tensors inside their forward
    (SwinIR's attention mask for any size but its training size) and would otherwise fail on mixed types.
    """

    def __init__(self, descriptor: Any) -> None:
        super().__init__()
        self.network = descriptor.model  # registered, so parameters, copies and .to() follow the weights
        self.descriptor = descriptor

    def __deepcopy__(self, memo: dict) -> "ThroughSpandrel":
        """A copy of the weights (the engine runs a copy on another device or in another precision) with a shallow
        copy of the descriptor around them: what others hung on the descriptor (ComfyUI's model patcher) is shared,
        never copied."""
        descriptor = copy.copy(self.descriptor)
        vars(descriptor)["_model"] = copy.deepcopy(self.network, memo)  # spandrel's read-only `model`
        return ThroughSpandrel(descriptor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduced = x.dtype in (torch.float16, torch.bfloat16)
        with torch.autocast(x.device.type, dtype=x.dtype, enabled=reduced):
            return torch.cat([self.descriptor(x[i : i + 1]).to(x.dtype) for i in range(x.shape[0])])


def describe(model: Any, *, source: str = "spandrel", name: str | None = None) -> ModelDescriptor:
    """Our descriptor as it is, or one describing a spandrel descriptor (e.g. from ComfyUI's own loader), whose
    module calls through that descriptor; the weights are used as they are, not copied or converted."""
    if isinstance(model, ModelDescriptor):
        return model
    if isinstance(getattr(model, "model", None), nn.Module) and hasattr(model, "scale"):
        requirements = getattr(model, "size_requirements", None)
        tiling = ModelTiling[getattr(getattr(model, "tiling", None), "name", "SUPPORTED")]
        architecture = getattr(getattr(model, "architecture", None), "name", type(model.model).__name__)
        return ModelDescriptor(
            module=ThroughSpandrel(model) if callable(model) else model.model,
            architecture=str(architecture),
            hyperparameters=dict(getattr(model.model, "hyperparameters", None) or {}),
            scale=int(model.scale),
            in_channels=int(getattr(model, "input_channels", 3)),
            out_channels=int(getattr(model, "output_channels", 3)),
            size_multiple=int(getattr(requirements, "multiple_of", 1) or 1),
            supports_fp16=bool(getattr(model, "supports_half", False)),
            supports_bf16=bool(getattr(model, "supports_bfloat16", False)),
            source=source,
            name=name,
            tags=[str(tag) for tag in getattr(model, "tags", None) or []],
            tiling=tiling,
            channels_last=False,
        )
    raise RealESRError(f"cannot upscale with a {type(model).__name__}: expected a model from load_model or spandrel")
