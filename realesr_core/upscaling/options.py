"""Everything a caller can choose about an upscale, in one validated object."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch

from ..errors import RealESRError
from ..option_fields import check_options, option
from .channels import ALPHA_MODES

# Reflect-padded pixels around the image. With 0, at its edges the network sees its own zero padding, as in training;
# against the same network given the real surroundings, that is 1-2 dB closer in the edge band than a reflected
# border on all three official model families (bench/border.py). ncnn and Real-ESRGAN's class pad 10.
DEFAULT_BORDER = 0
DEFAULT_OVERLAP = 32  # LR pixels of context around every tile
DEFAULT_BLEND = 16  # half-width of the cross-fade, within the context
# "fp32-strict" is fp32 with TF32 off (Ampere and later cards otherwise run fp32 convolutions in TF32).
PRECISIONS = {"fp32": torch.float32, "fp32-strict": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
PRECISION_CHOICES = ("auto", *PRECISIONS)


@dataclass(frozen=True)
class UpscaleOptions:
    """How to upscale; every field has a default that suits most images. Each field's help and accepted values are
    on the field (`option`): the command line and the ComfyUI nodes generate their arguments and inputs from them."""

    tile: int = option(0, "Tile size in input pixels; 0 picks the largest that fits in the memory budget (the whole "
                          "image as one window where it fits).", minimum=16, maximum=8192, step=8, zero_means="auto")
    overlap: int = option(DEFAULT_OVERLAP, "Context pixels each tile sees beyond its own area (more: more seamless, "
                                           "slower).", minimum=0, maximum=256, step=4)
    blend: int = option(DEFAULT_BLEND, "Half-width of the cross-fade between neighbouring tiles, within the context.",
                        minimum=0, maximum=256, step=2)
    border: int = option(DEFAULT_BORDER, "Pixels reflected around the image; 0 lets the network see its own edges "
                                         "(closest to real surroundings; ncnn and Real-ESRGAN use 10).",
                         minimum=0, maximum=256)
    precision: str = option("auto", "auto: fp16 on CUDA cards that run it well (else bf16 from Ampere on, else fp32), "
                                    "bf16 on CPUs with native bf16, else fp32. fp32 allows TF32 on Ampere and later "
                                    "cards (as PyTorch's convolutions do by default); fp32-strict never uses TF32. "
                                    "Tiles that come out NaN or black in reduced precision are re-run in fp32.",
                            choices=PRECISION_CHOICES)
    tiles_per_forward: int = option(0, "Tiles batched into one forward pass; 0: as many as fit on a GPU, one on a "
                                       "CPU.", minimum=1, maximum=64, zero_means="auto")
    channels_last: bool = option(True, "Run the network on channels-last inputs (faster with cuDNN and oneDNN).")
    compile: bool = option(False, "torch.compile the network for the call's window shape (slow first call).")
    alpha: str = option("model", "How transparency is upscaled: through the model as a gray image, or by a smooth "
                                 "resize.", choices=ALPHA_MODES)
    outscale: float | None = option(None, "Output scale factor (e.g. 2 with a x4 model: one pass and a resize).",
                                    minimum=0.05, maximum=16.0, step=0.05)
    width: int | None = option(None, "Output width in pixels (the height follows unless it is given too).",
                               minimum=1, maximum=1 << 17)
    height: int | None = option(None, "Output height in pixels (the width follows unless it is given too).",
                                minimum=1, maximum=1 << 17)
    output_bits: int = option(8, "Bit depth the result is for; above 8 (and always in bf16) the network's last layer "
                                 "runs in fp32, so reduced precision does not quantise the result.",
                              choices=(8, 10, 12, 16, 32))
    device: torch.device | str | None = None  # where the network runs (None: where its weights are)
    output_device: torch.device | str = "cpu"  # where the result is assembled
    output_dtype: torch.dtype = torch.float32  # the result's float type

    def __post_init__(self) -> None:
        check_options(self)
        if not self.output_dtype.is_floating_point:
            raise RealESRError(f"output_dtype must be a float type, got {self.output_dtype}")
        if self.outscale is not None and (self.width or self.height):
            raise RealESRError("give either outscale or width/height, not both")

    def for_bit_depth(self, bits: int) -> UpscaleOptions:
        """These options for a result written with `bits` per channel (a 16-bit PNG, a float TIFF, a 10-bit video):
        never below the depth asked for."""
        return self if bits <= self.output_bits else replace(self, output_bits=bits)

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]
