"""Upscale options are checked when they are made."""

from __future__ import annotations

import pytest

from realesr_core import RealESRError, UpscaleOptions
from realesr_core.upscaling.engine import upscale

from helpers import photo, to_tensor


def test_bad_options(compact) -> None:
    image = to_tensor(photo(8))
    with pytest.raises(RealESRError, match="precision"):
        upscale(compact, image, precision="int8")
    with pytest.raises(RealESRError, match="alpha must be one of model, resize"):
        upscale(compact, image, alpha="drop")
    with pytest.raises(RealESRError, match="cannot upscale with a str"):
        upscale("model", image)
    with pytest.raises(RealESRError, match="border must be 0..256; got -1"):
        upscale(compact, image, border=-1)


def test_options_are_validated_when_made() -> None:
    with pytest.raises(RealESRError, match="either outscale or width"):
        UpscaleOptions(outscale=2.0, width=10)
    with pytest.raises(RealESRError, match="overlap must be 0..256"):
        UpscaleOptions(overlap=-1)
    assert UpscaleOptions(width=100, height=50).height == 50


def test_keywords_override_an_options_object(compact) -> None:
    image = to_tensor(photo(16))
    options = UpscaleOptions(precision="fp32", outscale=2.0)
    assert upscale(compact, image, options).image.shape[-2:] == (32, 32)
    assert upscale(compact, image, options, outscale=3.0).image.shape[-2:] == (48, 48)
    with pytest.raises(RealESRError, match="unknown upscale option.*tile_size"):
        upscale(compact, image, tile_size=64)
