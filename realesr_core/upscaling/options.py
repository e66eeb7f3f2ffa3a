"""Everything a caller can choose about an upscale, in one validated object."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from ..errors import RealESRError
from .channels import ALPHA_MODES

# Reflect-padded pixels around the image. With 0, at its edges the network sees its own zero padding, as in training;
# against the same network given the real surroundings, that is 1-2 dB closer in the edge band than a reflected
# border on all three official model families (bench/border.py). ncnn and Real-ESRGAN's class pad 10.
DEFAULT_BORDER = 0
DEFAULT_OVERLAP = 32  # LR pixels of context around every tile
DEFAULT_BLEND = 16  # half-width of the cross-fade, within the context
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
PRECISION_CHOICES = ("auto", *PRECISIONS)


@dataclass(frozen=True)
class UpscaleOptions:
    """How to upscale; every field has a default that suits most images.

    tile: core size in input pixels (0 = from free memory). overlap: context pixels around each tile. blend:
    half-width of the cross-fade. border: pixels reflected around the image (0 = the network's own edges, the
    closest to what it gives with real surroundings). precision: auto / fp32 / fp16 / bf16 (auto: fp16 on CUDA,
    bf16 on CPUs with native bf16, else fp32). tiles_per_forward: tiles batched into one forward (0 = as many as
    fit on a GPU, one on a CPU). channels_last: run the network on channels-last inputs. compile: torch.compile the
    network (slow first call). alpha: "model" runs the alpha channel through the network as a gray image,
    "resize" resizes it smoothly. outscale / width / height: the output size (one of them, or width and height
    together); factors above the model's scale use repeated passes. device: where the network runs (None: where
    its weights are). output_device and output_dtype: where the result is assembled, and its float type.
    """

    tile: int = 0
    overlap: int = DEFAULT_OVERLAP
    blend: int = DEFAULT_BLEND
    border: int = DEFAULT_BORDER
    precision: str = "auto"
    tiles_per_forward: int = 0
    channels_last: bool = True
    compile: bool = False
    alpha: str = "model"
    outscale: float | None = None
    width: int | None = None
    height: int | None = None
    device: torch.device | str | None = None
    output_device: torch.device | str = "cpu"
    output_dtype: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        if self.precision not in PRECISION_CHOICES:
            raise RealESRError(f"precision must be one of {', '.join(PRECISION_CHOICES)}; got {self.precision!r}")
        if not self.output_dtype.is_floating_point:
            raise RealESRError(f"output_dtype must be a float type, got {self.output_dtype}")
        if self.alpha not in ALPHA_MODES:
            raise RealESRError(f"alpha mode must be one of {', '.join(ALPHA_MODES)}, got {self.alpha!r}")
        if min(self.tile, self.overlap, self.blend, self.border, self.tiles_per_forward) < 0:
            raise RealESRError("tile, overlap, blend, border and tiles_per_forward must not be negative")
        if self.outscale is not None and (self.width or self.height):
            raise RealESRError("give either outscale or width/height, not both")
        if self.outscale is not None and not self.outscale > 0:
            raise RealESRError(f"outscale must be positive, got {self.outscale}")
        if (self.width is not None and self.width < 1) or (self.height is not None and self.height < 1):
            raise RealESRError(f"output width and height must be positive, got width={self.width}, height={self.height}")

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]
