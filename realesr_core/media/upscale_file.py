"""One image file upscaled in memory into another, metadata carried: the command line does this per image and each
Ray worker per image row, so both write the same bytes."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from ..upscaling import UpscaleOptions, UpscaleResult, upscale
from .images import LoadedImage, write_image


def upscale_image_file(model: Any, loaded: LoadedImage, target: str | os.PathLike, options: UpscaleOptions, *,
                       bit_depth: int, quality: int, progress: Callable[[int, int], None] | None = None,
                       cancel: Callable[[], bool] | None = None) -> UpscaleResult:
    """Upscales `loaded` and writes it to `target` (atomically) with its metadata (resolution and GeoTIFF pixel size
    following the scale) and, for a float image, its range."""
    result = upscale(model, loaded.tensor, options.for_bit_depth(bit_depth), progress=progress, cancel=cancel)
    factor = result.image.shape[-1] / loaded.pixels.shape[1]
    write_image(target, result.image, bit_depth, quality=quality, metadata=loaded.metadata.scaled(factor),
                value_range=loaded.value_range)
    return result
