"""JPEG compression: a differentiable torch model of libjpeg that runs batched on the device, and the exact
libjpeg path through Pillow.

The torch model follows what libjpeg (as Pillow calls it) does, where other differentiable JPEGs cut corners:
quality tables scaled with libjpeg's integer formula and clamped to 1..255 (so quality 100 works), edge
replication to whole 16x16 MCUs, JFIF colour conversion, 2x2 chroma averaging, the exact 8x8 DCT, and libjpeg's
"fancy" (triangle) chroma upsampling on decode. Quality may be a float and differ per image.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from PIL import Image

# ITU-T T.81 Annex K tables, natural order: rows are vertical frequency, columns horizontal.
LUMA_TABLE = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)
CHROMA_TABLE = (
    (17, 18, 24, 47, 99, 99, 99, 99),
    (18, 21, 26, 66, 99, 99, 99, 99),
    (24, 26, 56, 99, 99, 99, 99, 99),
    (47, 66, 99, 99, 99, 99, 99, 99),
    *((99,) * 8 for _ in range(4)),
)
RGB_TO_YCBCR = ((0.299, 0.587, 0.114), (-0.168736, -0.331264, 0.5), (0.5, -0.418688, -0.081312))
YCBCR_TO_RGB = ((1.0, 0.0, 1.402), (1.0, -0.344136, -0.714136), (1.0, 1.772, 0.0))


def quality_tables(quality: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image [B, 8, 8] tables with libjpeg's scaling: floor((T * S + 50) / 100) clamped to 1..255."""
    quality = quality.clamp(1, 100).to(device=device, dtype=torch.float32)
    scaling = torch.where(quality < 50, 5000 / quality, 200 - 2 * quality).view(-1, 1, 1)
    tables = []
    for base in (LUMA_TABLE, CHROMA_TABLE):
        table = torch.tensor(base, dtype=torch.float32, device=device)
        tables.append(torch.floor((table * scaling + 50) / 100).clamp(1, 255))
    return tables[0], tables[1]


def _dct_matrix(device: torch.device) -> torch.Tensor:
    """Orthonormal 8-point DCT-II: JPEG's F = 1/4 C(u) C(v) sum f cos cos is exactly D f D^T."""
    n = torch.arange(8, dtype=torch.float64)
    matrix = torch.cos((2 * n[None, :] + 1) * n[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    matrix[0] /= math.sqrt(2)
    return matrix.float().to(device)


def _round(x: torch.Tensor, differentiable: bool) -> torch.Tensor:
    """Rounding; in differentiable mode the cubic surrogate round(x) + (x - round(x))^3 keeps a gradient."""
    rounded = torch.round(x)
    return rounded + (x - rounded) ** 3 if differentiable else rounded


def _blocks(plane: torch.Tensor) -> torch.Tensor:
    """`[B, H, W]` planes (H, W multiples of 8) as `[B, rows, cols, 8, 8]` blocks."""
    return rearrange(plane, "b (rows y) (cols x) -> b rows cols y x", y=8, x=8)


def _unblocks(blocks: torch.Tensor) -> torch.Tensor:
    return rearrange(blocks, "b rows cols y x -> b (rows y) (cols x)")


def _compress_plane(plane: torch.Tensor, table: torch.Tensor, dct: torch.Tensor, differentiable: bool) -> torch.Tensor:
    blocks = _blocks(plane - 128)
    coefficients = dct @ blocks @ dct.T
    table = table[:, None, None]
    quantized = _round(coefficients / table, differentiable)
    return _unblocks(dct.T @ (quantized * table) @ dct) + 128


def _fancy_upsample(plane: torch.Tensor) -> torch.Tensor:
    """libjpeg's h2v2 'fancy' upsampling: each output sample is 3/4 of the nearest input and 1/4 of the next."""
    def along(x: torch.Tensor, dim: int) -> torch.Tensor:
        length = x.shape[dim]
        previous = torch.cat([x.narrow(dim, 0, 1), x.narrow(dim, 0, length - 1)], dim)
        following = torch.cat([x.narrow(dim, 1, length - 1), x.narrow(dim, length - 1, 1)], dim)
        even, odd = 0.75 * x + 0.25 * previous, 0.75 * x + 0.25 * following
        return torch.stack([even, odd], dim + 1).flatten(dim, dim + 1)

    return along(along(plane, 1), 2)


def diff_jpeg(images: torch.Tensor, quality: float | Sequence[float] | torch.Tensor,
              differentiable: bool = True) -> torch.Tensor:
    """JPEG-compresses a batch [B, C, H, W] (C = 1 or 3, 0..1) at a per-image (float) quality in 1..100.

    With `differentiable=False` the quantization and the 8-bit colour planes round exactly, as the codec does.
    """
    batch, channels, height, width = images.shape
    if channels not in (1, 3):
        raise ValueError(f"JPEG takes 1 or 3 channels, got {channels}")
    quality = torch.as_tensor(quality, dtype=torch.float32).flatten()
    quality = quality.expand(batch) if quality.numel() == 1 else quality
    device = images.device
    luma_table, chroma_table = quality_tables(quality, device)
    dct = _dct_matrix(device)
    pad_h, pad_w = -height % 16, -width % 16
    x = F.pad(images.float() * 255, [0, pad_w, 0, pad_h], mode="replicate")
    if channels == 1:
        y = _compress_plane(_round(x[:, 0], differentiable), luma_table, dct, differentiable)
        out = y[:, None]
    else:
        ycbcr = torch.einsum("ij,bjhw->bihw", torch.tensor(RGB_TO_YCBCR, device=device), x)
        ycbcr = ycbcr + torch.tensor([0.0, 128.0, 128.0], device=device).view(1, 3, 1, 1)
        ycbcr = _round(ycbcr, differentiable).clamp(0, 255)
        y = _compress_plane(ycbcr[:, 0], luma_table, dct, differentiable)
        chroma = F.avg_pool2d(ycbcr[:, 1:], 2)
        cb, cr = (_compress_plane(chroma[:, i], chroma_table, dct, differentiable) for i in (0, 1))
        cb, cr = _fancy_upsample(cb.clamp(0, 255)), _fancy_upsample(cr.clamp(0, 255))
        ycbcr = torch.stack([y.clamp(0, 255), cb, cr], 1) - torch.tensor([0.0, 128.0, 128.0], device=device).view(1, 3, 1, 1)
        out = torch.einsum("ij,bjhw->bihw", torch.tensor(YCBCR_TO_RGB, device=device), ycbcr)
    out = out.clamp(0, 255)
    if not differentiable:
        out = torch.round(out)
    return (out[..., :height, :width] / 255).to(images.dtype)


def pillow_jpeg(images: torch.Tensor, quality: int | Sequence[int]) -> torch.Tensor:
    """The real libjpeg round trip through Pillow, one image at a time (integer quality, 4:2:0)."""
    batch = images.shape[0]
    qualities = [int(round(float(q))) for q in torch.as_tensor(quality).flatten().expand(batch).tolist()]
    out = torch.empty_like(images)
    for i in range(batch):
        array = np.round(images[i].detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8)
        pil = Image.fromarray(array[..., 0] if array.shape[2] == 1 else array)
        buffer = io.BytesIO()
        pil.save(buffer, format="JPEG", quality=max(1, min(100, qualities[i])))
        decoded = np.asarray(Image.open(buffer), dtype=np.float32) / 255
        decoded = decoded[..., None] if decoded.ndim == 2 else decoded
        out[i] = torch.from_numpy(decoded).permute(2, 0, 1).to(out)
    return out
