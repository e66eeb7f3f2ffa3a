"""realesr_core: Real-ESRGAN networks, model loading, and the upscaling engine. Pure torch; never imports ComfyUI."""

from .descriptor import ModelDescriptor
from .engine import UpscaleResult, upscale
from .errors import ImageError, ModelLoadError, RealESRError
from .model_io import interpolate_models, load_model, save_model
from .zoo import DEFAULT_MODEL, PRETRAINED

__all__ = [
    "DEFAULT_MODEL",
    "PRETRAINED",
    "ImageError",
    "ModelDescriptor",
    "ModelLoadError",
    "RealESRError",
    "UpscaleResult",
    "interpolate_models",
    "load_model",
    "save_model",
    "upscale",
]
