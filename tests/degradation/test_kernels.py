"""Each kernel against its closed form, and the sampler against its probability tables."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch
from scipy import special

from realesr_core.degradation import build_kernel, sample_kernel
from realesr_core.degradation.kernels import KERNEL_TYPES
from realesr_core.degradation.pipeline import KERNEL_SIZES, _Draw

from helpers import chi_square_p

GAUSSIAN_LIKE = [
    {"type": "iso", "size": 21, "sigma_x": 2.0, "sigma_y": 2.0, "theta": 0.0},
    {"type": "aniso", "size": 15, "sigma_x": 2.5, "sigma_y": 0.7, "theta": 0.6},
    {"type": "generalized_aniso", "size": 13, "sigma_x": 1.5, "sigma_y": 2.5, "theta": -1.0, "beta": 0.7},
    {"type": "plateau_aniso", "size": 11, "sigma_x": 1.0, "sigma_y": 2.0, "theta": 2.0, "beta": 1.6},
    {"type": "sinc", "size": 9, "cutoff": 1.5},
]


@pytest.mark.parametrize("params", GAUSSIAN_LIKE, ids=[p["type"] for p in GAUSSIAN_LIKE])
def test_normalised_centred_and_centro_symmetric(params: dict) -> None:
    kernel = build_kernel(params).double()
    assert kernel.shape == (21, 21)
    assert abs(kernel.sum().item() - 1) < 1e-6
    assert torch.allclose(kernel, kernel.flip(0, 1), atol=1e-7)
    assert kernel.argmax().item() == 10 * 21 + 10 or params["type"] == "sinc"


@pytest.mark.parametrize("sigma_x,sigma_y,theta", [(2.0, 2.0, 0.0), (3.0, 1.0, 0.5), (1.5, 2.5, -2.2)])
def test_gaussian_second_moments(sigma_x: float, sigma_y: float, theta: float) -> None:
    """The kernel's covariance is R diag(sx^2, sy^2) R^T (wide support, so truncation is negligible)."""
    kernel = build_kernel({"type": "aniso", "size": 41, "sigma_x": sigma_x, "sigma_y": sigma_y, "theta": theta},
                          pad_to=41).double()
    axis = torch.arange(41, dtype=torch.float64) - 20
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    moments = [[(kernel * a * b).sum().item() for b in (xx, yy)] for a in (xx, yy)]
    rotation = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    expected = rotation @ np.diag([sigma_x**2, sigma_y**2]) @ rotation.T
    np.testing.assert_allclose(moments, expected, atol=2e-3)


def _quadratic(size: int, sx: float, sy: float, theta: float) -> np.ndarray:
    c = (size - 1) / 2
    sigma = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    sigma = sigma @ np.diag([sx**2, sy**2]) @ sigma.T
    inverse = np.linalg.inv(sigma)
    q = np.zeros((size, size))
    for row in range(size):
        for col in range(size):
            d = np.array([col - c, row - c])
            q[row, col] = d @ inverse @ d
    return q


def test_generalized_and_plateau_closed_forms() -> None:
    q = _quadratic(13, 1.5, 2.5, -1.0)
    generalized = np.exp(-0.5 * q**0.7)
    plateau = 1 / (1 + q**1.6)
    ours_g = build_kernel({"type": "generalized_aniso", "size": 13, "sigma_x": 1.5, "sigma_y": 2.5, "theta": -1.0,
                           "beta": 0.7}, pad_to=13).double().numpy()
    ours_p = build_kernel({"type": "plateau_aniso", "size": 13, "sigma_x": 1.5, "sigma_y": 2.5, "theta": -1.0,
                           "beta": 1.6}, pad_to=13).double().numpy()
    np.testing.assert_allclose(ours_g, generalized / generalized.sum(), atol=1e-7)
    np.testing.assert_allclose(ours_p, plateau / plateau.sum(), atol=1e-7)


@pytest.mark.parametrize("size,cutoff", [(7, 1.2), (13, math.pi / 4), (21, math.pi)])
def test_sinc_against_bessel_j1(size: int, cutoff: float) -> None:
    c = (size - 1) / 2
    rows, cols = np.mgrid[0:size, 0:size]
    r = np.hypot(rows - c, cols - c)
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = cutoff * special.j1(cutoff * r) / (2 * np.pi * r)
    expected[r == 0] = cutoff**2 / (4 * np.pi)
    ours = build_kernel({"type": "sinc", "size": size, "cutoff": cutoff}, pad_to=size).double().numpy()
    np.testing.assert_allclose(ours, expected / expected.sum(), atol=1e-7)


def test_unknown_kernel_type() -> None:
    with pytest.raises(ValueError, match="unknown kernel type"):
        build_kernel({"type": "box", "size": 7, "sigma_x": 1, "sigma_y": 1, "theta": 0})


PROBS = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)


def _kernels(n: int = 6000, sinc_prob: float = 0.1) -> list[dict]:
    draw = _Draw(torch.Generator().manual_seed(7))
    return [sample_kernel(draw, PROBS, sinc_prob, (0.2, 3.0), (0.5, 4.0), (1.0, 2.0)) for _ in range(n)]


def test_kernel_type_frequencies_match_the_table() -> None:
    kernels = [k for k in _kernels(sinc_prob=0.0)]
    counts = Counter(k["type"] for k in kernels)
    observed = [counts[t] for t in KERNEL_TYPES[:6]]
    assert chi_square_p(observed, list(PROBS)) > 1e-3
    assert chi_square_p(observed, [1 / 6] * 6) < 1e-9  # the test would catch a wrong table
    assert chi_square_p(observed, [0.25, 0.45, 0.12, 0.03, 0.12, 0.03]) < 1e-9


def test_sinc_share_sizes_and_ranges() -> None:
    kernels = _kernels()
    sinc = [k for k in kernels if k["type"] == "sinc"]
    assert chi_square_p([len(sinc), len(kernels) - len(sinc)], [0.1, 0.9]) > 1e-3
    sizes = Counter(k["size"] for k in kernels)
    assert chi_square_p([sizes[s] for s in KERNEL_SIZES], [1 / 8] * 8) > 1e-3
    for k in sinc:
        low = math.pi / 3 if k["size"] < 13 else math.pi / 5
        assert low <= k["cutoff"] <= math.pi
    for k in kernels:
        if k["type"] != "sinc":
            assert 0.2 <= k["sigma_x"] <= 3.0 and 0.2 <= k["sigma_y"] <= 3.0 and -math.pi <= k["theta"] <= math.pi
        if k["type"] in ("iso", "generalized_iso", "plateau_iso"):
            assert k["sigma_x"] == k["sigma_y"] and k["theta"] == 0.0
        if k["type"].startswith("generalized"):
            assert 0.5 <= k["beta"] <= 4.0
        if k["type"].startswith("plateau"):
            assert 1.0 <= k["beta"] <= 2.0
    betas = [k["beta"] for k in kernels if k["type"].startswith("generalized")]
    below = sum(b < 1 for b in betas)
    assert chi_square_p([below, len(betas) - below], [0.5, 0.5]) > 1e-3
