"""Upscaling nodes: load, upscale, blend (DNI), save."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from realesr_core import (
    PRETRAINED,
    ModelDescriptor,
    ModelLoadError,
    RealESRError,
    UpscaleCancelled,
    UpscaleOptions,
    interpolate_models,
    load_model,
    save_model,
    upscale,
)
from realesr_core.models import describe, zoo
from realesr_core.upscaling import PRECISION_CHOICES, memory_required

from . import comfy_env
from .options import check_option_values, option_input
from .upscale_model import engine_model, realesr_descriptor, to_upscale_model

SIZE_MODES = ["model scale", "factor", "width", "height", "longest side"]


def _bchw(image: torch.Tensor) -> torch.Tensor:
    return image.movedim(-1, 1)


def _bhwc(image: torch.Tensor) -> torch.Tensor:
    return image.movedim(1, -1)


# The tile, overlap and precision widgets of every upscaling node, checked at queue time by check_tiling.
TILING_INPUTS = {
    "tile": option_input(UpscaleOptions, "tile"),
    "overlap": option_input(UpscaleOptions, "overlap"),
    "precision": option_input(UpscaleOptions, "precision", tooltip_note=(
        "In ComfyUI, auto on a GPU is ComfyUI's own choice for the card (its --force-fp16 / --force-fp32 flags "
        "count).")),
}


class LoadModel:
    DESCRIPTION = ("Loads an upscale model: any file in models/upscale_models (ESRGAN, Real-ESRGAN, BSRGAN, RealSR and "
                   "Compact with our networks; SwinIR, HAT, DAT, SPAN, RealCUGAN and every other architecture that "
                   "ComfyUI's own loader reads, through spandrel) or an official Real-ESRGAN model by name, from the "
                   "weights package requirements.txt installs or from the official release file in "
                   "models/upscale_models (any name). The output works with ComfyUI's own 'Upscale Image (using "
                   "Model)' too.")
    CATEGORY = "model/loaders"
    FUNCTION = "load"
    RETURN_TYPES = ("UPSCALE_MODEL",)
    OUTPUT_TOOLTIPS = ("The model, as a spandrel ImageModelDescriptor.",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        ready, missing = zoo.bundled_models(comfy_env.model_file_paths())
        names = list(ready) + comfy_env.model_files()
        tooltip = ("An official model by name (converted once from the official weights) or a file from "
                   "models/upscale_models.")
        if missing:
            tooltip += " Not listed, and why: " + " ".join(missing.values())
        return {"required": {"model_name": (names, {"default": names[0] if names else "", "tooltip": tooltip})}}

    @classmethod
    def VALIDATE_INPUTS(cls, model_name: str) -> bool | str:
        ready, missing = zoo.bundled_models(comfy_env.model_file_paths())
        if model_name in ready or model_name in comfy_env.model_files():
            return True
        return missing.get(model_name, f"{model_name!r} is neither an official model nor a file in "
                                       "models/upscale_models")

    def load(self, model_name: str) -> tuple[Any]:
        if model_name not in PRETRAINED:
            return (to_upscale_model(load_model(comfy_env.model_file_path(model_name))),)
        ready, missing = zoo.bundled_models(comfy_env.model_file_paths())
        if model_name not in ready:
            raise ModelLoadError(missing[model_name])
        descriptor = load_model(ready[model_name])
        descriptor.name = model_name
        return (to_upscale_model(descriptor),)


class Upscale:
    DESCRIPTION = ("Upscales images with any upscale model (ours or ComfyUI's loader) in seamless tiles: context "
                   "around every tile and cross-faded seams, tile size from free memory, out-of-memory tiles split "
                   "and re-run, reduced precision with an automatic fp32 re-run of bad tiles. The optional mask is "
                   "used as transparency (1 = transparent) and comes back upscaled.")
    CATEGORY = "image/upscaling"
    FUNCTION = "upscale"
    RETURN_TYPES = ("IMAGE", "MASK")
    RETURN_NAMES = ("image", "mask")
    OUTPUT_TOOLTIPS = ("The upscaled images.", "The upscaled mask (1 = transparent); zeros when no mask was given.")

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "upscale_model": ("UPSCALE_MODEL", {"tooltip": "From our loader or ComfyUI's Load Upscale Model."}),
                "image": ("IMAGE", {"tooltip": "The images to upscale."}),
                "size_mode": (SIZE_MODES, {"default": "model scale", "tooltip": (
                    "model scale: the model's own factor. factor: any factor (above the model's scale uses repeated "
                    "passes). width / height / longest side: that many pixels, aspect ratio kept.")}),
                "factor": ("FLOAT", {"default": 2.0, "min": 0.05, "max": 16.0, "step": 0.05,
                                     "tooltip": "Output scale when size_mode is 'factor'."}),
                "size": ("INT", {"default": 1920, "min": 8, "max": 16384, "step": 8,
                                 "tooltip": "Output width, height or longest side in pixels, per size_mode."}),
                **TILING_INPUTS,
                "alpha_mode": option_input(UpscaleOptions, "alpha"),
            },
            "optional": {
                "mask": ("MASK", {"tooltip": "Transparency (1 = transparent), as LoadImage outputs it."}),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, tile: int, overlap: int) -> bool | str:
        return check_tiling(tile, overlap)

    def upscale(self, upscale_model: Any, image: torch.Tensor, size_mode: str, factor: float, size: int, tile: int,
                overlap: int, precision: str, alpha_mode: str, mask: torch.Tensor | None = None) -> tuple:
        colour = _bchw(image)
        alpha = _alpha_from_mask(mask, colour)
        if alpha is not None:
            colour = torch.cat([colour, alpha], 1)
        with model_on_device(upscale_model, colour, tile=tile, overlap=overlap, precision=precision,
                             alpha=alpha_mode, output_device=comfy_env.intermediate_device(),
                             output_dtype=comfy_env.intermediate_dtype(),
                             **_size_options(size_mode, factor, size, colour.shape[-2:])) as (model, options):
            with cancelled_as_comfyui():
                result = upscale(model, colour, options, progress=progress_for_comfyui(),
                                 cancel=comfy_env.processing_interrupted)
        out = result.image
        if alpha is not None:
            return _bhwc(out[:, :3]).contiguous(), 1.0 - out[:, 3]
        no_mask = torch.zeros(1, *out.shape[-2:], dtype=out.dtype, device=out.device).expand(out.shape[0], -1, -1)
        return _bhwc(out), no_mask


def progress_for_comfyui() -> Callable[[int, int], None] | None:
    """The engine's progress, shown on ComfyUI's progress bar (whose hook also raises on Cancel)."""
    bar = comfy_env.progress_bar(1)
    return (lambda done, total: bar.update_absolute(done, total)) if bar is not None else None


@contextlib.contextmanager
def cancelled_as_comfyui() -> Iterator[None]:
    """The engine stops at its next check once Cancel is pressed; ComfyUI then gets its own interruption, so the
    prompt ends as cancelled (no output, no error) rather than failed."""
    try:
        yield
    except UpscaleCancelled:
        comfy_env.raise_if_interrupted()
        raise


def check_tiling(tile: int, overlap: int) -> bool | str:
    """The queue-time check of the tile and overlap inputs every upscaling node has: the library's own rule."""
    return check_option_values(UpscaleOptions, tile=tile, overlap=overlap)


@contextlib.contextmanager
def model_on_device(upscale_model: Any, image: torch.Tensor, precision: str,
                    **option_values: Any) -> Iterator[tuple[ModelDescriptor, UpscaleOptions]]:
    """The model ready on ComfyUI's device, with the engine options for it: loaded through its patcher by ComfyUI's
    memory manager with room for what upscaling `image` (`[B, C, H, W]`, any device, even "meta") needs, as today's
    core upscale node does; a model without a patcher (an older loader's) is moved by hand and moved back."""
    model = describe(engine_model(upscale_model))
    patcher = getattr(upscale_model, "patcher", None)
    device = patcher.load_device if patcher is not None else comfy_env.torch_device()
    check_precision(model, precision)
    if precision == "auto":
        precision = comfy_env.gpu_precision(device, model.supports_fp16, model.supports_bf16) or "auto"
    options = UpscaleOptions(precision=precision, device=device, **option_values)
    module = model.module  # ours, or the other loader's network inside the descriptor that runs it
    working_memory = memory_required(model, image, options)
    if patcher is not None:
        comfy_env.load_models_gpu(patcher, working_memory)
    else:
        comfy_env.free_memory(working_memory + comfy_env.module_size(module), device)
    # As today's core does: the patcher's load leaves modules not built from ComfyUI's ops where they were.
    module.to(device)
    try:
        yield model, options
    finally:
        if patcher is None:  # nobody else will offload it
            module.to(comfy_env.offload_device())


def check_precision(model: ModelDescriptor, precision: str) -> None:
    """A precision the model's architecture does not support is refused with the ones it does (auto only ever
    picks those)."""
    supported = {"fp16": model.supports_fp16, "bf16": model.supports_bf16}
    if not supported.get(precision, True):
        *others, last = (name for name in PRECISION_CHOICES if supported.get(name, True))
        raise RealESRError(f"{model.architecture} models do not support {precision}: choose {', '.join(others)} or "
                           f"{last}")


def _alpha_from_mask(mask: torch.Tensor | None, image: torch.Tensor) -> torch.Tensor | None:
    """ComfyUI's masks are 1 = transparent; LoadImage gives a 64x64 zero mask for images without alpha."""
    if mask is None:
        return None
    mask = mask if mask.dim() == 3 else mask[None]
    if tuple(mask.shape[-2:]) != tuple(image.shape[-2:]):
        if not mask.any():
            return None
        mask = torch.nn.functional.interpolate(mask[:, None], size=image.shape[-2:], mode="bilinear")[:, 0]
    alpha = (1.0 - mask.to(image)).clamp(0, 1)[:, None]
    if alpha.shape[0] != image.shape[0]:
        alpha = alpha[:1].expand(image.shape[0], -1, -1, -1)
    return alpha


def _size_options(size_mode: str, factor: float, size: int, hw: torch.Size) -> dict:
    height, width = int(hw[0]), int(hw[1])
    if size_mode == "factor":
        return {"outscale": factor}
    if size_mode == "width" or (size_mode == "longest side" and width >= height):
        return {"width": size}
    if size_mode in ("height", "longest side"):
        return {"height": size}
    return {}


class ModelBlend:
    DESCRIPTION = ("Deep network interpolation: blends the weights of two models of the same architecture, "
                   "weight x A + (1 - weight) x B. With realesr-general-x4v3 and its -wdn sibling this is "
                   "Real-ESRGAN's denoise-strength control.")
    CATEGORY = "advanced/model_merging"
    FUNCTION = "blend"
    RETURN_TYPES = ("UPSCALE_MODEL",)
    OUTPUT_TOOLTIPS = ("The blended model.",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "model_a": ("UPSCALE_MODEL", {"tooltip": "Taken with `weight` (e.g. the strong-denoise model)."}),
            "model_b": ("UPSCALE_MODEL", {"tooltip": "Taken with 1 - `weight`; same architecture as model_a."}),
            "weight": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.01,
                                 "tooltip": "1 gives model_a, 0 gives model_b."}),
        }}

    def blend(self, model_a: Any, model_b: Any, weight: float) -> tuple[Any]:
        return (to_upscale_model(interpolate_models(realesr_descriptor(model_a), realesr_descriptor(model_b), weight)),)


class SaveModel:
    DESCRIPTION = ("Saves an upscale model as canonical safetensors (architecture in the metadata) into "
                   "models/upscale_models, where every loader finds it. Never overwrites: a number is added, unless "
                   "the file there already holds exactly these weights (a workflow run again saves nothing new).")
    CATEGORY = "advanced/model_merging"
    FUNCTION = "save"
    RETURN_TYPES = ()
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "upscale_model": ("UPSCALE_MODEL", {"tooltip": "Any upscale model, ours or ComfyUI's loader's."}),
            "filename": ("STRING", {"default": "realesr_model", "tooltip": (
                "File name inside models/upscale_models, without extension; subfolders with '/'.")}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, filename: str) -> bool | str:
        if not filename.strip() or ".." in filename or filename.startswith(("/", "\\")) or re.search(r'[<>:"|?*]', filename):
            return f"filename {filename!r} must be a relative name inside models/upscale_models"
        return True

    def save(self, upscale_model: Any, filename: str) -> dict:
        descriptor = realesr_descriptor(upscale_model)
        folder = comfy_env.model_save_folder()
        target = folder / f"{filename.strip()}.safetensors"
        counter = 1
        while target.exists():
            if _holds_weights(target, descriptor):
                return {"ui": {"text": [f"{target} (already there, unchanged)"]}}
            target = folder / f"{filename.strip()}_{counter:03d}.safetensors"
            counter += 1
        path = save_model(descriptor, target)
        return {"ui": {"text": [str(path)]}}


def _holds_weights(path: Path, descriptor: ModelDescriptor) -> bool:
    """Whether the safetensors file at `path` holds exactly the descriptor's weights (names, shapes and values)."""
    try:
        saved = load_file(str(path))
    except (OSError, SafetensorError):
        return False
    ours = descriptor.state_dict()
    return saved.keys() == ours.keys() and all(
        saved[k].shape == ours[k].shape and torch.equal(saved[k], ours[k].detach().to("cpu", saved[k].dtype))
        for k in ours)
