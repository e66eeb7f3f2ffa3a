"""realesr_core: Real-ESRGAN networks, model loading, the tiled upscaling engine, the degradation pipeline and
image files. Pure torch; never imports ComfyUI."""

from .degradation import DegradationConfig, apply_parameters, degrade, get_preset, sample_parameters
from .errors import ImageError, ModelLoadError, RealESRError, UpscaleCancelled, UpscaleOutOfMemory
from .media import read_image, write_image
from .models import DEFAULT_MODEL, PRETRAINED, ModelDescriptor, interpolate_models, load_model, save_model
from .upscaling import UpscaleOptions, UpscaleResult, upscale

__all__ = [
    "DEFAULT_MODEL",
    "PRETRAINED",
    "DegradationConfig",
    "ImageError",
    "ModelDescriptor",
    "ModelLoadError",
    "RealESRError",
    "UpscaleCancelled",
    "UpscaleOptions",
    "UpscaleOutOfMemory",
    "UpscaleResult",
    "apply_parameters",
    "degrade",
    "get_preset",
    "interpolate_models",
    "load_model",
    "read_image",
    "save_model",
    "sample_parameters",
    "upscale",
    "write_image",
]
