"""The export node: an upscale model as ncnn or ONNX files in ComfyUI's output folder."""

from __future__ import annotations

from pathlib import Path, PurePath
from typing import Any

import torch

from realesr_core import ModelDescriptor, ModelLoadError
from realesr_core.export import (
    DEFAULT_OPSET,
    PRECISIONS,
    ExportError,
    centre_crop,
    export_fidelity,
    export_model,
    ncnn_stem,
)

from . import comfy_env
from .upscale_model import realesr_descriptor

FORMATS = {"ncnn (.param + .bin)": ".param", "ONNX (.onnx)": ".onnx"}
RUNTIMES = {".param": "ncnn", ".onnx": "onnxruntime"}


class ExportModel:
    DESCRIPTION = ("Writes an upscale model for other programs into ComfyUI's output folder: ncnn (.param + .bin) "
                   "for Upscayl's custom models folder, realesrgan-ncnn-vulkan and chaiNNer, or ONNX for chaiNNer, "
                   "onnxruntime, TensorRT and vs-mlrt. ESRGAN / Real-ESRGAN (RRDBNet) and Compact models from any "
                   "loader, fine-tuned ones included. Never overwrites: a number is added. Connect an image to check "
                   "the written file with its own runtime (PSNR against PyTorch, shown on the node).")
    CATEGORY = "advanced/model_merging"
    FUNCTION = "export"
    RETURN_TYPES = ()
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "upscale_model": ("UPSCALE_MODEL", {"tooltip": "An ESRGAN / Real-ESRGAN / Compact model."}),
                "format": (list(FORMATS), {"default": next(iter(FORMATS)), "tooltip": (
                    "ncnn: Upscayl, realesrgan-ncnn-vulkan, chaiNNer (NCNN). ONNX: chaiNNer (ONNX), onnxruntime, "
                    "TensorRT, vs-mlrt.")}),
                "precision": (list(PRECISIONS), {"default": "fp32", "tooltip": (
                    "fp16 halves the files: ncnn stores fp16 weights (as the official models do); ONNX computes in "
                    "fp16 (for GPUs).")}),
                "filename_prefix": ("STRING", {"default": "realesr/upscale_model", "tooltip": (
                    "Name inside the output folder, subfolders with '/'. For ncnn the scale is added where Upscayl "
                    "could not read it from the name (e.g. -x2).")}),
                "onnx_opset": ("INT", {"default": DEFAULT_OPSET, "min": 11, "max": 30, "tooltip": (
                    "ONNX opset; 17 runs on onnxruntime, TensorRT 8.6+ and chaiNNer. Ignored for ncnn.")}),
                "onnx_width": ("INT", {"default": 0, "min": 0, "max": 16384, "step": 4, "tooltip": (
                    "0: any size. With a height, fixes the ONNX input to one size (TensorRT engines built for it). "
                    "Ignored for ncnn.")}),
                "onnx_height": ("INT", {"default": 0, "min": 0, "max": 16384, "step": 4, "tooltip": (
                    "0: any size. See onnx_width.")}),
            },
            "optional": {
                "check_image": ("IMAGE", {"tooltip": (
                    "Runs a 128-pixel crop of the first image through the written file with its own runtime on the "
                    "CPU and shows the PSNR against PyTorch (50 dB and more: the same picture).")}),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, filename_prefix: str, onnx_width: int, onnx_height: int) -> bool | str:
        name = PurePath(filename_prefix.strip())
        if not filename_prefix.strip() or name.is_absolute() or ".." in name.parts or "\\" in filename_prefix:
            return f"filename_prefix {filename_prefix!r} must be a relative name inside the output folder"
        if (onnx_width == 0) != (onnx_height == 0):
            return "give both onnx_width and onnx_height for a fixed size, or leave both 0 for any size"
        return True

    def export(self, upscale_model: Any, format: str, precision: str, filename_prefix: str, onnx_opset: int,
               onnx_width: int, onnx_height: int, check_image: torch.Tensor | None = None) -> dict:
        model = _ours(upscale_model)
        suffix = FORMATS[format]
        target = free_target(comfy_env.output_folder(), filename_prefix.strip(), suffix, model.scale)
        onnx = suffix == ".onnx"
        size = (onnx_height, onnx_width) if onnx and onnx_width and onnx_height else None
        result = export_model(model, target, precision=precision, opset=onnx_opset if onnx else None, size=size)
        lines = [str(path) for path in result.files]
        if check_image is not None:
            crop = centre_crop(check_image[:1].movedim(-1, 1).float().cpu())
            value = export_fidelity(model, result.files[0], crop)
            lines.append(f"checked with {RUNTIMES[suffix]} (CPU): {value:.1f} dB PSNR against PyTorch")
        return {"ui": {"text": lines}}


def _ours(upscale_model: Any) -> ModelDescriptor:
    """Our descriptor for the model (ComfyUI's own loader's ESRGAN / Compact models are rebuilt from their weights),
    or an ExportError naming what the model is."""
    try:
        return realesr_descriptor(upscale_model)
    except (ModelLoadError, ValueError) as exc:
        architecture = getattr(getattr(upscale_model, "architecture", None), "name", type(upscale_model).__name__)
        raise ExportError(f"export writes ESRGAN / Real-ESRGAN (RRDBNet) and Compact (SRVGGNetCompact) models; this "
                          f"one is {architecture}: {exc}") from exc


def free_target(folder: Path, prefix: str, suffix: str, scale: int) -> Path:
    """`folder/prefix<suffix>`, or with _001, _002, ... where that (or, for ncnn, its .bin) exists; for ncnn the
    name is one Upscayl reads the scale from."""
    stem = PurePath(prefix)
    base = ncnn_stem(stem.name, scale) if suffix == ".param" else stem.name
    counter = 0
    while True:
        name = base if counter == 0 else f"{base}_{counter:03d}"
        target = folder / stem.parent / f"{name}{suffix}"
        taken = [target, target.with_suffix(".bin")] if suffix == ".param" else [target]
        if not any(path.exists() for path in taken):  # "_001" adds no scale token: the name still reads right
            return target
        counter += 1
