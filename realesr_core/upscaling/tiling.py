"""Tile geometry: an even grid of cores, windows with context around them, and blend weights that sum to one.

Each tile's *core* is its share of the image. The network sees a *window*: the core plus `overlap` pixels of
context on every side (clamped to the border-padded image, so every window of a level has one shape and can be
batched). From the output only the core plus a `blend` band on each inner side is kept; across a band the two
neighbours cross-fade with complementary ramps, so the weights of all tiles sum to exactly one everywhere and the
output is accumulated in place, without a normalisation buffer.

Grids are hierarchical: level L has 2**L times the tiles per axis of level 0 and shares its boundaries, so a tile
that runs out of memory is replaced by its four children and the seams around it stay where they were.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise

import torch

from ..image_tensors import pad_to_multiple


def boundaries(length: int, count: int) -> list[int]:
    """`count` cores spread evenly over `length` pixels (sizes differ by at most one: no thin last strip)."""
    return [(i * length) // count for i in range(count + 1)]


MIN_CORE = 8  # smallest core a tile is split down to when memory runs out


@dataclass(frozen=True)
class Axis:
    """Tile geometry along one axis, in input pixels; `pad_before` pixels of border padding precede the image."""

    length: int  # image size
    padded_length: int  # image plus border padding on both sides
    pad_before: int
    overlap: int
    blend: int
    multiple: int
    base_count: int
    fixed_window: int = 0  # every window this long at every level (one shape for a compiled network); 0: from cores

    def count(self, level: int) -> int:
        return self.base_count * 2**level

    def smallest_core(self, level: int) -> int:
        return self.length // self.count(level)

    def cores(self, level: int) -> list[int]:
        return boundaries(self.length, self.count(level))

    def window_length(self, level: int) -> int:
        if self.fixed_window:
            return min(self.fixed_window, self.padded_length)
        cores = self.cores(level)
        longest = max(b - a for a, b in pairwise(cores))
        wanted = longest + 2 * self.overlap
        return min(wanted + pad_to_multiple(wanted, self.multiple), self.padded_length)

    def window(self, level: int, index: int) -> tuple[int, int]:
        """Window [start, end) in padded coordinates: the core with at least `overlap` context on both sides
        where the border allows (at the border the window shifts inwards)."""
        cores = self.cores(level)
        length = self.window_length(level)
        start = self.pad_before + cores[index] - (length - (cores[index + 1] - cores[index])) // 2
        start = min(max(start, 0), self.padded_length - length)
        return start, start + length

    def kept(self, level: int, index: int) -> tuple[int, int]:
        """Output range [start, end) in image coordinates: the core plus blend bands on inner sides."""
        cores = self.cores(level)
        start = cores[index] - (self.band if index > 0 else 0)
        end = cores[index + 1] + (self.band if index < len(cores) - 2 else 0)
        return start, end

    @property
    def band(self) -> int:
        """Half-width of the cross-fade, the same at every level so that neighbours of different levels still
        complement each other; never wider than the context or than half the smallest level-0 core."""
        return max(0, min(self.blend, self.overlap, self.smallest_core(0) // 2))

    def ramp(self, level: int, index: int, scale: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """Weights over the kept output range (length scale * kept): up across the first band, down the last.
        Built where they are used (no host-to-device copy)."""
        start, end = self.kept(level, index)
        positions = torch.arange(start * scale, end * scale, dtype=torch.float64, device=device) + 0.5
        weight = torch.ones_like(positions)
        cores = self.cores(level)
        band = self.band * scale
        if band > 0:
            if index > 0:
                weight *= ((positions - (cores[index] * scale - band)) / (2 * band)).clamp(0, 1)
            if index < len(cores) - 2:
                weight *= (((cores[index + 1] * scale + band) - positions) / (2 * band)).clamp(0, 1)
        return weight.float()


@dataclass(frozen=True)
class Tile:
    level: int
    row: int
    col: int
    frame: int = 0  # which frame of a batch of frames that share the grid


@dataclass(frozen=True)
class Grid:
    rows: Axis
    cols: Axis

    def tiles(self, level: int = 0, frames: int = 1) -> list[Tile]:
        """Every tile of the level, frame by frame."""
        return [Tile(level, r, c, f) for f in range(frames) for r in range(self.rows.count(level))
                for c in range(self.cols.count(level))]

    def children(self, tile: Tile) -> list[Tile]:
        """The four tiles of the next level that exactly cover `tile`'s core (boundaries are shared)."""
        return [Tile(tile.level + 1, 2 * tile.row + r, 2 * tile.col + c, tile.frame) for r in (0, 1) for c in (0, 1)]

    def can_split(self, tile: Tile) -> bool:
        return all(axis.smallest_core(tile.level + 1) >= max(MIN_CORE, 2 * axis.band) for axis in (self.rows, self.cols))

    def max_core(self, level: int) -> int:
        return max(
            max(b - a for a, b in pairwise(axis.cores(level))) for axis in (self.rows, self.cols)
        )


def make_grid(
    height: int, width: int, tile: int, overlap: int, blend: int, border: int, multiple: int,
    fixed_window: bool = False,
) -> tuple[Grid, tuple[int, int, int, int]]:
    """The level-0 grid for cores of at most `tile` pixels, and the border padding (top, bottom, left, right).

    With `fixed_window` every window is `tile + 2 * overlap` (rounded to `multiple`) at every level and for every
    image size: the image is padded at its far sides to that size where it is smaller, and windows shift inwards
    as at any border (a compiled network then sees one shape)."""

    def axis(length: int) -> tuple[Axis, int, int]:
        after = border + pad_to_multiple(length + 2 * border, multiple)
        wanted = tile + 2 * overlap
        window = wanted + pad_to_multiple(wanted, multiple)
        if fixed_window:
            after = max(after, window - length - border)
        padded = length + border + after
        count = min(length, max(1, math.ceil(length / max(tile, 1))))
        return Axis(length, padded, border, overlap, blend, multiple, count, window if fixed_window else 0), border, after

    rows, top, bottom = axis(height)
    cols, left, right = axis(width)
    return Grid(rows, cols), (top, bottom, left, right)
