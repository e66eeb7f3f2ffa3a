"""One image file upscaled in memory into another, metadata carried: the command line does this per image and each
Ray worker per image row, so both write the same bytes."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from ..upscaling import UpscaleOptions, UpscaleResult, upscale
from .images import LoadedImage, scaled_geotiff, write_image


def upscale_image_file(model: Any, loaded: LoadedImage, target: str | os.PathLike, options: UpscaleOptions, *,
                       bit_depth: int, quality: int, progress: Callable[[int, int], None] | None = None,
                       cancel: Callable[[], bool] | None = None) -> UpscaleResult:
    """Upscales `loaded` and writes it to `target` (atomically) with its ICC profile, EXIF and GeoTIFF tags (pixel
    size divided by the scale)."""
    result = upscale(model, loaded.tensor, options, progress=progress, cancel=cancel)
    factor = result.image.shape[-1] / loaded.pixels.shape[1]
    geotiff = scaled_geotiff(loaded.geotiff, factor) if loaded.geotiff else None
    write_image(target, result.image, bit_depth, quality=quality, icc_profile=loaded.icc_profile, exif=loaded.exif,
                geotiff=geotiff)
    return result
