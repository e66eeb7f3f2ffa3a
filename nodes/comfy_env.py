"""The parts of ComfyUI the nodes use, imported lazily so the nodes also import and run without ComfyUI.

Without ComfyUI (tests, plain Python) computation happens on the CPU, there is no model folder and no progress bar,
and a VIDEO is a file path.
"""

from __future__ import annotations

import importlib
import tempfile
from pathlib import Path
from typing import Any

import torch

UPSCALE_FOLDER = "upscale_models"


def _comfy(module: str, attribute: str) -> Any | None:
    """ComfyUI's module if it is there (and really ComfyUI's: a folder that merely shares the name is ignored)."""
    try:
        found = importlib.import_module(module)
    except ImportError:
        return None
    return found if hasattr(found, attribute) else None


def torch_device() -> torch.device:
    mm = _comfy("comfy.model_management", "get_torch_device")
    return mm.get_torch_device() if mm else torch.device("cpu")


def intermediate_device() -> torch.device:
    mm = _comfy("comfy.model_management", "intermediate_device")
    return mm.intermediate_device() if mm else torch.device("cpu")


def offload_device() -> torch.device:
    mm = _comfy("comfy.model_management", "unet_offload_device")
    return mm.unet_offload_device() if mm else torch.device("cpu")


def gpu_precision(device: torch.device, supports_fp16: bool, supports_bf16: bool) -> str | None:
    """ComfyUI's own choice of reduced precision for a GPU (it knows the cards whose fp16 is broken or slow), or
    None where ComfyUI is absent or the device is no GPU (the engine decides)."""
    mm = _comfy("comfy.model_management", "should_use_fp16")
    if mm is None or device.type != "cuda":
        return None
    if supports_fp16 and mm.should_use_fp16(device, prioritize_performance=True):
        return "fp16"
    if supports_bf16 and mm.should_use_bf16(device, prioritize_performance=True):
        return "bf16"
    return "fp32"


def intermediate_dtype() -> torch.dtype:
    """The float type of IMAGE tensors between nodes: today's ComfyUI can make it half precision; 0.8.0 has fp32."""
    mm = _comfy("comfy.model_management", "intermediate_dtype")
    return mm.intermediate_dtype() if mm else torch.float32


def model_patcher(module: torch.nn.Module) -> Any | None:
    """A ComfyUI model patcher for `module` with ComfyUI's load and offload devices: today's `CoreModelPatcher`,
    else 0.8.0's `ModelPatcher`; None without ComfyUI."""
    patchers = _comfy("comfy.model_patcher", "ModelPatcher")
    if patchers is None:
        return None
    patcher = getattr(patchers, "CoreModelPatcher", patchers.ModelPatcher)
    return patcher(module, load_device=torch_device(), offload_device=offload_device())


def load_models_gpu(patcher: Any, memory_required: int) -> None:
    """Lets ComfyUI's memory manager load the model (unloading others as needed) with room for `memory_required`
    bytes of working memory."""
    mm = _comfy("comfy.model_management", "load_models_gpu")
    if mm is not None:
        mm.load_models_gpu([patcher], memory_required=memory_required, force_full_load=True)


def module_size(module: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def free_memory(bytes_needed: int, device: torch.device) -> None:
    """Asks ComfyUI to unload other models until `bytes_needed` are free on `device` (for models without a
    patcher, which ComfyUI's memory manager does not know)."""
    mm = _comfy("comfy.model_management", "free_memory")
    if mm is not None:
        mm.free_memory(bytes_needed, device)


def progress_bar(total: int) -> Any | None:
    """ComfyUI's progress bar; its hook raises when the user presses Cancel, which stops the node between tiles."""
    utils = _comfy("comfy.utils", "ProgressBar")
    return utils.ProgressBar(total) if utils else None


def processing_interrupted() -> bool:
    """Whether the user pressed Cancel (ComfyUI's flag, left set); never without ComfyUI."""
    mm = _comfy("comfy.model_management", "processing_interrupted")
    return bool(mm.processing_interrupted()) if mm else False


def raise_if_interrupted() -> None:
    """Raises ComfyUI's own interruption if Cancel was pressed, so the prompt ends as cancelled rather than failed."""
    mm = _comfy("comfy.model_management", "throw_exception_if_processing_interrupted")
    if mm is not None:
        mm.throw_exception_if_processing_interrupted()


def temp_folder() -> Path:
    """ComfyUI's temp directory (emptied when ComfyUI starts), where core puts results that a save node keeps;
    the system's temporary folder without ComfyUI."""
    folder_paths = _comfy("folder_paths", "get_temp_directory")
    folder = Path(folder_paths.get_temp_directory()) if folder_paths else Path(tempfile.gettempdir())
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def video_from_file(path: Path) -> Any:
    """A file-backed VIDEO (core's VideoFromFile, which Save Video copies stream by stream); the path itself
    without ComfyUI."""
    video_types = _comfy("comfy_api.input_impl", "VideoFromFile")
    return video_types.VideoFromFile(str(path)) if video_types else path


def input_subfolders() -> list[str]:
    """Every folder inside ComfyUI's input directory (recursively, '/'-separated), as core's dataset nodes list
    them; none without ComfyUI."""
    folder_paths = _comfy("folder_paths", "get_input_subfolders")
    return list(folder_paths.get_input_subfolders()) if folder_paths else []


def output_folder() -> Path:
    """ComfyUI's output directory (where its save nodes write); ./output without ComfyUI."""
    folder_paths = _comfy("folder_paths", "get_output_directory")
    return Path(folder_paths.get_output_directory()) if folder_paths else Path.cwd() / "output"


def input_folder() -> Path:
    """ComfyUI's input directory; ./input without ComfyUI."""
    folder_paths = _comfy("folder_paths", "get_input_directory")
    return Path(folder_paths.get_input_directory()) if folder_paths else Path.cwd() / "input"


def model_files() -> list[str]:
    folder_paths = _comfy("folder_paths", "get_filename_list")
    return list(folder_paths.get_filename_list(UPSCALE_FOLDER)) if folder_paths else []


def model_file_paths() -> list[Path]:
    """Full paths of every file in the upscale model folders."""
    folder_paths = _comfy("folder_paths", "get_full_path")
    if folder_paths is None:
        return []
    paths = (folder_paths.get_full_path(UPSCALE_FOLDER, name) for name in model_files())
    return [Path(p) for p in paths if p]


def model_file_path(name: str) -> Path:
    folder_paths = _comfy("folder_paths", "get_full_path_or_raise")
    if folder_paths is None:
        raise FileNotFoundError(f"no ComfyUI model folder to find {name!r} in")
    return Path(folder_paths.get_full_path_or_raise(UPSCALE_FOLDER, name))


def model_save_folder() -> Path:
    folder_paths = _comfy("folder_paths", "get_folder_paths")
    if folder_paths is None:
        return Path.cwd() / "models" / UPSCALE_FOLDER
    return Path(folder_paths.get_folder_paths(UPSCALE_FOLDER)[0])
