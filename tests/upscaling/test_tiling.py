"""Tile geometry."""

from __future__ import annotations

from itertools import pairwise

from realesr_core.upscaling.tiling import boundaries


def test_even_tiles_have_no_thin_strip() -> None:
    cores = boundaries(1000, 4)
    assert [b - a for a, b in pairwise(cores)] == [250, 250, 250, 250]
    sizes = [b - a for a, b in pairwise(boundaries(1001, 3))]
    assert max(sizes) - min(sizes) <= 1
