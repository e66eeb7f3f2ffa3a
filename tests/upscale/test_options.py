"""Upscale options are checked when they are made."""

from __future__ import annotations

import pytest

from realesr_core import RealESRError
from realesr_core.upscale.engine import upscale

from helpers import photo, to_tensor


def test_bad_options(compact) -> None:
    image = to_tensor(photo(8))
    with pytest.raises(RealESRError, match="precision"):
        upscale(compact, image, precision="int8")
    with pytest.raises(RealESRError, match="alpha mode"):
        upscale(compact, image, alpha="drop")
    with pytest.raises(RealESRError, match="cannot upscale with a str"):
        upscale("model", image)
    with pytest.raises(RealESRError, match="must not be negative"):
        upscale(compact, image, border=-1)
