"""The upscaler: the tiled engine, its options, tile geometry, device facts and channel handling."""

from .device import usable_cpus
from .engine import UpscaleResult, memory_required, upscale
from .options import PRECISION_CHOICES, UpscaleOptions

__all__ = ["PRECISION_CHOICES", "UpscaleOptions", "UpscaleResult", "memory_required", "upscale", "usable_cpus"]
