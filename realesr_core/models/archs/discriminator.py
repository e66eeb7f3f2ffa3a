"""UNetDiscriminatorSN, Real-ESRGAN's discriminator: a U-Net with spectral norm that gives a realness logit per pixel.

Spectral norm is PyTorch's legacy `torch.nn.utils.spectral_norm` (one power iteration), whose parameters and buffers
(`weight_orig`, `weight_u`, `weight_v`) are the keys of the official `*_netD.pth` files, so those load key for key.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

LEAKY_SLOPE = 0.2
SIZE_MULTIPLE = 8  # three stride-2 downsamplings, then upsampled back onto the skips


class UNetDiscriminatorSN(nn.Module):
    """Input `[B, num_in_ch, H, W]` (H and W multiples of 8) -> logits `[B, 1, H, W]`."""

    def __init__(self, num_in_ch: int = 3, num_feat: int = 64, skip_connection: bool = True) -> None:
        super().__init__()
        self.num_in_ch, self.skip_connection = num_in_ch, skip_connection
        f = num_feat
        self.conv0 = nn.Conv2d(num_in_ch, f, 3, 1, 1)
        self.conv1 = spectral_norm(nn.Conv2d(f, f * 2, 4, 2, 1, bias=False))
        self.conv2 = spectral_norm(nn.Conv2d(f * 2, f * 4, 4, 2, 1, bias=False))
        self.conv3 = spectral_norm(nn.Conv2d(f * 4, f * 8, 4, 2, 1, bias=False))
        self.conv4 = spectral_norm(nn.Conv2d(f * 8, f * 4, 3, 1, 1, bias=False))
        self.conv5 = spectral_norm(nn.Conv2d(f * 4, f * 2, 3, 1, 1, bias=False))
        self.conv6 = spectral_norm(nn.Conv2d(f * 2, f, 3, 1, 1, bias=False))
        self.conv7 = spectral_norm(nn.Conv2d(f, f, 3, 1, 1, bias=False))
        self.conv8 = spectral_norm(nn.Conv2d(f, f, 3, 1, 1, bias=False))
        self.conv9 = nn.Conv2d(f, 1, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] % SIZE_MULTIPLE or x.shape[-1] % SIZE_MULTIPLE:
            raise ValueError(f"the discriminator needs heights and widths that are multiples of {SIZE_MULTIPLE}, "
                             f"got {x.shape[-2]}x{x.shape[-1]}")
        x0 = _lrelu(self.conv0(x))
        x1 = _lrelu(self.conv1(x0))
        x2 = _lrelu(self.conv2(x1))
        x3 = _lrelu(self.conv3(x2))
        x4 = self._up(self.conv4, x3, x2)
        x5 = self._up(self.conv5, x4, x1)
        x6 = self._up(self.conv6, x5, x0)
        return self._logits(_lrelu(self.conv8(_lrelu(self.conv7(x6)))))

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        """conv9 (3x3, one output channel) as a 1x1 conv onto its nine taps, then the taps summed in fp32, each
        shifted to its place: the same sums without oneDNN's slow one-output-channel convolution (a training step
        of Compact at batch 4, patch 128 on the CPU: 2.11 -> 1.94 s)."""
        weight = self.conv9.weight  # [1, C, 3, 3]
        taps = F.conv2d(x, weight.permute(2, 3, 0, 1).reshape(9, -1, 1, 1))  # tap (i, j) in channel 3 i + j
        taps = F.pad(taps.float(), (1, 1, 1, 1))
        height, width = x.shape[-2:]
        out = sum(taps[:, 3 * i + j : 3 * i + j + 1, i : i + height, j : j + width] for i in range(3) for j in range(3))
        return out + self.conv9.bias.float().view(1, 1, 1, 1)

    def _up(self, conv: nn.Module, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """Bilinear x2, conv, LeakyReLU, plus the encoder's feature map of that size (the U-Net's skip)."""
        out = _lrelu(conv(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)))
        return out + skip if self.skip_connection else out


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, LEAKY_SLOPE, inplace=True)


def read_hyperparameters(state: dict[str, torch.Tensor]) -> dict[str, int]:
    """num_in_ch and num_feat from `conv0.weight` (the skip connection leaves no trace in the keys)."""
    num_feat, num_in_ch = state["conv0.weight"].shape[:2]
    return {"num_in_ch": int(num_in_ch), "num_feat": int(num_feat)}
