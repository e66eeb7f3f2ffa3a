"""Blur kernels of Real-ESRGAN's degradation model, built in torch from their parameters.

Every kernel is described by plain numbers (type, size, sigmas, angle, shape exponent, cut-off), so sampled
kernels serialise to JSON and are rebuilt exactly when the parameters are replayed.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso", "sinc")
PAD_TO = 21


def _grid(size: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Coordinates centred on the kernel: x runs along columns, y along rows."""
    axis = torch.arange(size, dtype=dtype) - (size - 1) / 2
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    return xx, yy


def mahalanobis(size: int, sigma_x: float, sigma_y: float, theta: float) -> torch.Tensor:
    """q(d) = d^T Sigma^-1 d with Sigma = R(theta) diag(sigma_x^2, sigma_y^2) R(theta)^T."""
    xx, yy = _grid(size, torch.float64)
    cos, sin = math.cos(theta), math.sin(theta)
    u = cos * xx + sin * yy  # coordinates in the kernel's rotated frame: d' = R^T d
    v = -sin * xx + cos * yy
    return (u / sigma_x) ** 2 + (v / sigma_y) ** 2


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float, theta: float) -> torch.Tensor:
    return _normalised(torch.exp(-0.5 * mahalanobis(size, sigma_x, sigma_y, theta)))


def generalized_gaussian_kernel(size: int, sigma_x: float, sigma_y: float, theta: float, beta: float) -> torch.Tensor:
    return _normalised(torch.exp(-0.5 * mahalanobis(size, sigma_x, sigma_y, theta) ** beta))


def plateau_kernel(size: int, sigma_x: float, sigma_y: float, theta: float, beta: float) -> torch.Tensor:
    return _normalised(1.0 / (mahalanobis(size, sigma_x, sigma_y, theta) ** beta + 1.0))


def sinc_kernel(size: int, cutoff: float) -> torch.Tensor:
    """Circular low-pass (Airy) kernel: cutoff * J1(cutoff * r) / (2 pi r), with its limit cutoff^2 / (4 pi) at r = 0."""
    xx, yy = _grid(size, torch.float64)
    r = torch.sqrt(xx**2 + yy**2)
    safe = torch.where(r == 0, torch.ones_like(r), r)
    kernel = cutoff * torch.special.bessel_j1(cutoff * safe) / (2 * math.pi * safe)
    kernel = torch.where(r == 0, torch.full_like(r, cutoff**2 / (4 * math.pi)), kernel)
    return _normalised(kernel)


def pulse_kernel(size: int = PAD_TO) -> torch.Tensor:
    """The identity filter."""
    kernel = torch.zeros(size, size, dtype=torch.float64)
    kernel[size // 2, size // 2] = 1.0
    return kernel


def _normalised(kernel: torch.Tensor) -> torch.Tensor:
    return kernel / kernel.sum()


def build_kernel(params: dict[str, Any] | None, pad_to: int = PAD_TO) -> torch.Tensor:
    """The kernel a parameter dict describes (None = identity), zero-padded to `pad_to` (float32)."""
    if params is None:
        return pulse_kernel(pad_to).float()
    kind, size = params["type"], int(params["size"])
    if size % 2 == 0 or size < 1:
        raise ValueError(f"kernel size must be odd and positive, got {size}")
    if kind == "sinc":
        kernel = sinc_kernel(size, float(params["cutoff"]))
    else:
        sx, sy, theta = float(params["sigma_x"]), float(params["sigma_y"]), float(params["theta"])
        if kind in ("iso", "aniso"):
            kernel = gaussian_kernel(size, sx, sy, theta)
        elif kind.startswith("generalized"):
            kernel = generalized_gaussian_kernel(size, sx, sy, theta, float(params["beta"]))
        elif kind.startswith("plateau"):
            kernel = plateau_kernel(size, sx, sy, theta, float(params["beta"]))
        else:
            raise ValueError(f"unknown kernel type {kind!r}; known: {', '.join(KERNEL_TYPES)}")
    pad = max(0, (pad_to - size) // 2)
    return F.pad(kernel, [pad] * 4).float()
