"""Networks and how they load: one module per architecture in `archs/`, the registry that recognises them,
loading / saving / blending, the ncnn reader and the bundled official weights."""

from .archs.discriminator import UNetDiscriminatorSN
from .descriptor import ModelDescriptor, ModelTiling, describe
from .loading import ModelSource, interpolate_models, load_discriminator, load_model, new_model, save_model
from .registry import register
from .spec import ArchitectureSpec
from .zoo import DEFAULT_MODEL, PRETRAINED

__all__ = [
    "DEFAULT_MODEL",
    "PRETRAINED",
    "ArchitectureSpec",
    "ModelDescriptor",
    "ModelTiling",
    "ModelSource",
    "UNetDiscriminatorSN",
    "describe",
    "interpolate_models",
    "load_discriminator",
    "load_model",
    "new_model",
    "register",
    "save_model",
]
