"""Degradation operations on image batches `[B, C, H, W]` in 0..1, on any device, with per-image parameters."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from einops import rearrange

from ..image_tensors import check_images, luminance, pad_reflect

RESIZE_MODES = ("area", "bilinear", "bicubic")
POISSON_GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # the grayscale conversion of Real-ESRGAN's Poisson noise
CHANNELS = (1, 3, 4)  # gray, RGB, RGBA (alpha passes through undamaged)


def on_colour(images: torch.Tensor, operation: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Checks the batch and runs `operation` on its colour channels; an RGBA image's alpha is left undamaged and
    follows the result's size."""
    check_images(images, CHANNELS)
    images = images.float()
    if images.shape[1] != 4:
        return operation(images).clamp(0, 1)
    out = operation(images[:, :3])
    return torch.cat([out, resize(images[:, 3:], out.shape[-2:], "area")], 1).clamp(0, 1)


# On the CPU, a 2-D filter of at least FFT_MIN_KERNEL taps over at most FFT_MAX_PLANES image planes (one image:
# the pipeline's per-image damage) runs as a product of Fourier transforms, within 1e-6 of the direct sums: oneDNN's
# grouped convolution is slow with so few groups (one 400x400 RGB image, 21x21: 4-5x faster by FFT), and fast
# with more (16 images: the direct convolution is 2-7x faster). `python bench/degradation.py` prints both.
FFT_MIN_KERNEL = 9
FFT_MAX_PLANES = 6


def filter2d(images: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Correlates each image with its own kernel ([k, k] for all, or [B, k, k]), reflect-padded: one grouped conv
    (or, for one or two images on the CPU, FFT products)."""
    batch, channels = images.shape[:2]
    if kernels.dim() == 2:
        kernels = kernels.expand(batch, -1, -1)
    size = kernels.shape[-1]
    padded = pad_reflect(images, size // 2, size // 2, size // 2, size // 2)
    if images.device.type == "cpu" and size >= FFT_MIN_KERNEL and batch * channels <= FFT_MAX_PLANES:
        return _correlate_fft(padded, kernels[:, None], images.shape[-2:])
    weight = kernels.to(images).repeat_interleave(channels, 0)[:, None]
    out = F.conv2d(rearrange(padded, "b c h w -> 1 (b c) h w"), weight, groups=batch * channels)
    return rearrange(out, "1 (b c) h w -> b c h w", b=batch)


def _correlate_fft(padded: torch.Tensor, kernels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The valid part of correlating `padded` with `kernels` ([B, 1, k, k]), top-left `size`, via the FFT. The
    transforms are zero-padded to lengths with no prime factor above 5 (fast), at least the padded image's, so the
    circular product wraps only outside the valid part."""
    lengths = (_fft_length(padded.shape[-2]), _fft_length(padded.shape[-1]))
    work = torch.float64 if padded.dtype == torch.float64 else torch.float32
    image_spectrum = torch.fft.rfft2(padded.to(work), s=lengths)
    kernel_spectrum = torch.fft.rfft2(kernels.to(padded.device, work), s=lengths)
    out = torch.fft.irfft2(image_spectrum * kernel_spectrum.conj(), s=lengths)
    return out[..., : size[0], : size[1]].to(padded.dtype).contiguous()


def _fft_length(minimum: int) -> int:
    length = minimum
    while True:
        rest = length
        for prime in (2, 3, 5):
            while rest % prime == 0:
                rest //= prime
        if rest == 1:
            return length
        length += 1


def filter2d_separable(images: torch.Tensor, kernel_1d: torch.Tensor) -> torch.Tensor:
    """filter2d with the kernel outer(k, k), as two 1-D passes over the same reflect-padded image: the same
    result as the 2-D kernel, k / 2 times fewer operations. Depthwise on channels-last tensors, where oneDNN is
    about 4x faster than one-channel convolutions over (b c) with the same sums."""
    size, channels = kernel_1d.shape[0], images.shape[1]
    padded = pad_reflect(images, size // 2, size // 2, size // 2, size // 2).contiguous(memory_format=torch.channels_last)
    kernel = kernel_1d.to(images)
    rows = F.conv2d(padded, kernel.view(1, 1, 1, size).expand(channels, 1, 1, size), groups=channels)
    return F.conv2d(rows, kernel.view(1, 1, size, 1).expand(channels, 1, size, 1), groups=channels).contiguous()


def resize(images: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """Plain torch resize (no antialiasing), as Real-ESRGAN's pipeline uses."""
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize mode must be one of {RESIZE_MODES}, got {mode!r}")
    size = (max(1, int(size[0])), max(1, int(size[1])))
    if tuple(images.shape[-2:]) == size:
        return images
    align = {} if mode == "area" else {"align_corners": False}
    return F.interpolate(images, size=size, mode=mode, **align)


def gaussian_noise(images: torch.Tensor, sigma: Sequence[float] | torch.Tensor, gray: Sequence[bool] | torch.Tensor,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Adds N(0, sigma/255) noise per image, the same in every channel where `gray`. Drawn on the CPU from
    `generator`, so a seed reproduces the noise on any device."""
    batch, channels, height, width = images.shape
    sigma = torch.as_tensor(sigma, dtype=torch.float32).view(batch, 1, 1, 1) / 255.0
    gray = torch.as_tensor(gray, dtype=torch.float32).view(batch, 1, 1, 1)
    colour_noise = torch.randn(batch, channels, height, width, generator=generator)
    gray_noise = torch.randn(batch, 1, height, width, generator=generator)
    noise = (colour_noise * (1 - gray) + gray_noise * gray) * sigma
    return (images + noise.to(images)).clamp(0, 1)


def poisson_noise(images: torch.Tensor, scale: Sequence[float] | torch.Tensor, gray: Sequence[bool] | torch.Tensor,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Shot noise as Real-ESRGAN models it: Poisson(q * v) / v - q on the 8-bit image q, with v the power of two
    above the number of distinct levels, times `scale`; on luminance where `gray`."""
    batch = images.shape[0]
    scale = torch.as_tensor(scale, dtype=torch.float32).view(batch, 1, 1, 1)
    gray = torch.as_tensor(gray, dtype=torch.bool).view(batch)
    cpu = images.detach().float().cpu()
    noise = torch.zeros_like(cpu)
    for i in range(batch):
        source = luminance(cpu[i : i + 1], POISSON_GRAY_WEIGHTS) if gray[i] and cpu.shape[1] == 3 else cpu[i : i + 1]
        quantized = quantize(source)
        levels = 2 ** math.ceil(math.log2(max(len(torch.unique(quantized)), 1)))
        sample = torch.poisson(quantized * levels, generator=generator) / levels - quantized
        noise[i : i + 1] = sample.expand_as(cpu[i : i + 1])
    return (images + (noise * scale).to(images)).clamp(0, 1)


def usm_sharpen(images: torch.Tensor, radius: int = 50, weight: float = 0.5, threshold: float = 10) -> torch.Tensor:
    """Real-ESRGAN's unsharp mask: sharpen where the detail exceeds `threshold` (8-bit levels), softly masked."""
    if radius % 2 == 0:
        radius += 1
    sigma = 0.3 * ((radius - 1) * 0.5 - 1) + 0.8  # OpenCV's default sigma for this size
    axis = torch.arange(radius, dtype=torch.float64) - (radius - 1) / 2
    gauss = torch.exp(-(axis**2) / (2 * sigma**2))
    gauss = (gauss / gauss.sum()).float()
    blurred = filter2d_separable(images, gauss)
    residual = images - blurred
    mask = (residual.abs() * 255 > threshold).to(images.dtype)
    soft = filter2d_separable(mask, gauss)
    sharp = (images + weight * residual).clamp(0, 1)
    return soft * sharp + (1 - soft) * images


def quantize(images: torch.Tensor) -> torch.Tensor:
    """Rounded to 8-bit levels, as an image saved to PNG and read back."""
    return torch.round(images.clamp(0, 1) * 255) / 255
