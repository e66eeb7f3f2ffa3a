"""Exported files run by their own runtimes (onnxruntime and ncnn, on the CPU), and how closely they follow our
PyTorch network: the check that an export is right, for tests, `bench/export.py` and `realesr export --check`."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from ..errors import RealESRError
from ..extras import import_extra
from ..image_tensors import pad_reflect, pad_to_multiple
from ..models import ModelDescriptor
from .exporter import export_format
from .graph import INPUT, OUTPUT
from .onnx_writer import ONNX_INPUT


def run_onnx(path: str | os.PathLike, images: torch.Tensor) -> torch.Tensor:
    """`images` ([N, C, H, W] in 0..1) through onnxruntime's CPU provider, in the model's own input precision."""
    ort = import_extra("onnxruntime", "export", "running an ONNX model")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    dtype = np.float16 if session.get_inputs()[0].type == "tensor(float16)" else np.float32
    (output,) = session.run([OUTPUT], {ONNX_INPUT: images.numpy().astype(dtype)})
    return torch.from_numpy(output.astype(np.float32))


def run_ncnn(param_path: str | os.PathLike, images: torch.Tensor, *, fp32_compute: bool = True) -> torch.Tensor:
    """`images` through ncnn's CPU path, one at a time (as realesrgan-ncnn-vulkan feeds its tiles). With
    `fp32_compute` ncnn keeps activations in fp32 (its default may store them as fp16 or bf16 where the CPU can)."""
    ncnn = import_extra("ncnn", "export", "running an ncnn model")
    param_path = Path(param_path)
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    if fp32_compute:
        for option in ("use_fp16_packed", "use_fp16_storage", "use_fp16_arithmetic", "use_bf16_storage"):
            setattr(net.opt, option, False)
    if net.load_param(str(param_path)) != 0 or net.load_model(str(param_path.with_suffix(".bin"))) != 0:
        raise RealESRError(f"ncnn could not load {param_path} and its .bin")
    try:
        return torch.from_numpy(np.stack([_run_ncnn_once(ncnn, net, image, param_path) for image in images.numpy()]))
    finally:
        net.clear()


def _run_ncnn_once(ncnn: object, net: object, image: np.ndarray, param_path: Path) -> np.ndarray:
    """One image; a function of its own so that ncnn's extractor and blobs are gone before the net is cleared
    (ncnn aborts the process when a blob outlives its allocator)."""
    pixels = np.ascontiguousarray(image, dtype=np.float32)  # held: ncnn's Mat borrows this memory
    extractor = net.create_extractor()
    extractor.input(INPUT, ncnn.Mat(pixels))
    status, result = extractor.extract(OUTPUT)
    if status != 0:
        raise RealESRError(f"ncnn failed to run {param_path} (status {status})")
    return np.array(result, copy=True)


def run_exported(path: str | os.PathLike, images: torch.Tensor) -> torch.Tensor:
    """An exported ONNX or ncnn file on `images` (sizes the model accepts), by the file's suffix."""
    runner = run_onnx if export_format(Path(path)) == "onnx" else run_ncnn
    return runner(path, images)


def psnr(output: torch.Tensor, reference: torch.Tensor) -> float:
    """PSNR in dB of two float images clamped to 0..1, not rounded to 8 bits (rounding would hide the small
    differences being measured, or double them)."""
    mse = torch.mean((output.double().clamp(0, 1) - reference.double().clamp(0, 1)) ** 2).item()
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def centre_crop(images: torch.Tensor, size: int = 128) -> torch.Tensor:
    """The middle `size` x `size` pixels (or less) of `[N, C, H, W]` images: enough to check an export in seconds
    (the networks see only a few hundred pixels around each output pixel anyway)."""
    height, width = images.shape[-2:]
    top, left = max(0, (height - size) // 2), max(0, (width - size) // 2)
    return images[..., top : top + size, left : left + size].contiguous()


def export_fidelity(model: ModelDescriptor, path: str | os.PathLike, images: torch.Tensor) -> float:
    """PSNR of the exported file's output (by its runtime) against our fp32 PyTorch output for `images`
    ([N, C, H, W] in 0..1, any size: both see the same reflect-padded input when the model needs a multiple)."""
    height, width = images.shape[-2:]
    padded = pad_reflect(images.float(), 0, pad_to_multiple(height, model.size_multiple), 0,
                         pad_to_multiple(width, model.size_multiple))
    weight = next(model.module.parameters())
    with torch.inference_mode():  # where the model is (a ComfyUI model stays on its device)
        reference = model.module(padded.to(weight.device, weight.dtype)).float().cpu()
    output = run_exported(path, padded)
    if output.shape != reference.shape:
        raise RealESRError(f"{path} gave {list(output.shape)} for {list(padded.shape)}; PyTorch gives "
                           f"{list(reference.shape)}")
    crop = (..., slice(0, height * model.scale), slice(0, width * model.scale))
    return psnr(output[crop], reference[crop])
