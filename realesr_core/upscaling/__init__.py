"""The upscaler: the tiled engine, its options, tile geometry, device facts and channel handling."""

from .device import usable_cpus
from .engine import UpscaleResult, memory_required, upscale
from .options import UpscaleOptions

__all__ = ["UpscaleOptions", "UpscaleResult", "memory_required", "upscale", "usable_cpus"]
