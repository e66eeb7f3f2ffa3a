"""Real-ESRGAN's degradation model: kernels, batched operations, JPEG, and the second-order pipeline."""

from .jpeg import diff_jpeg, pillow_jpeg
from .kernels import KERNEL_TYPES, build_kernel
from .ops import RESIZE_MODES, filter2d, gaussian_noise, on_colour, poisson_noise, quantize, resize, usm_sharpen
from .pipeline import (
    DEGRADATION_PRESETS,
    DegradationConfig,
    Degraded,
    apply_parameters,
    degrade,
    get_preset,
    sample_blur_kernels,
    sample_kernel,
    sample_parameters,
)

__all__ = [
    "KERNEL_TYPES",
    "DEGRADATION_PRESETS",
    "RESIZE_MODES",
    "Degraded",
    "DegradationConfig",
    "apply_parameters",
    "build_kernel",
    "degrade",
    "diff_jpeg",
    "filter2d",
    "gaussian_noise",
    "get_preset",
    "on_colour",
    "pillow_jpeg",
    "poisson_noise",
    "quantize",
    "resize",
    "sample_blur_kernels",
    "sample_kernel",
    "sample_parameters",
    "usm_sharpen",
]
