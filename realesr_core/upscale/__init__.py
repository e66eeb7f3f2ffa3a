"""The upscaler: the tiled engine, its options, tile geometry, device facts and channel handling."""

from .engine import UpscaleResult, upscale
from .options import UpscaleOptions

__all__ = ["UpscaleOptions", "UpscaleResult", "upscale"]
