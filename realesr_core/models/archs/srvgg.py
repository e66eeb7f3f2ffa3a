"""SRVGGNetCompact, Real-ESRGAN's small VGG-style network (realesr-animevideov3, realesr-general-x4v3). Keys:
`body.N.weight` / `body.N.bias`, convs at even N and PReLU slopes at odd N; its state dicts are told apart in
`models/detect/srvgg.py`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = ("prelu", "relu", "leakyrelu")


def _activation(act_type: str, num_feat: int) -> nn.Module:
    if act_type == "prelu":
        return nn.PReLU(num_parameters=num_feat)
    if act_type == "relu":
        return nn.ReLU()
    if act_type == "leakyrelu":
        return nn.LeakyReLU(0.1)
    raise ValueError(f"unknown activation {act_type!r}; expected one of {ACTIVATIONS}")


class SRVGGNetCompact(nn.Module):
    """A plain conv stack in LR space, pixel shuffle, plus the nearest-upsampled input (the net learns a residual)."""

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        num_feat: int = 64,
        num_conv: int = 16,
        upscale: int = 4,
        act_type: str = "prelu",
    ) -> None:
        super().__init__()
        if upscale < 1:
            raise ValueError(f"SRVGGNetCompact needs an integer upscale >= 1, got {upscale}")
        if num_in_ch not in (1, num_out_ch):
            raise ValueError(f"the nearest-upsampled input ({num_in_ch} ch) cannot be added to {num_out_ch} output ch")
        self.scale = upscale
        self.num_in_ch = num_in_ch
        self.num_out_ch = num_out_ch
        layers: list[nn.Module] = [nn.Conv2d(num_in_ch, num_feat, 3, 1, 1), _activation(act_type, num_feat)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, 1, 1), _activation(act_type, num_feat)]
        layers.append(nn.Conv2d(num_feat, num_out_ch * upscale * upscale, 3, 1, 1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.pixel_shuffle(self.body(x), self.scale)
        # A 1-channel input broadcasts over the output channels (gray-in, colour-out models).
        return out + F.interpolate(x, scale_factor=self.scale, mode="nearest")

    def peak_elements_per_pixel(self) -> float:
        """Activation elements alive at the peak of a forward pass, per input pixel (sizes the tiles)."""
        return 3 * self.body[0].out_channels + 3 * self.num_out_ch * self.scale**2

    def output_layer(self) -> nn.Module:
        """The last layer, which the engine runs in fp32 where reduced precision would quantise the result (its
        fp32 output also makes the residual addition fp32)."""
        return self.body[-1]
