"""`realesr export`: a model as an ONNX file or an ncnn .param/.bin pair, optionally checked by its runtime."""

from __future__ import annotations

import argparse
import re

import torch

from ..errors import RealESRError
from ..export import DEFAULT_OPSET, PRECISIONS, ExportResult, centre_crop, export_fidelity, export_model
from ..media import read_image
from .common import model_help

CHECK_CROP = 128  # the check runs PyTorch and the runtime on a centre crop this size: seconds, not minutes


def parse_size(text: str) -> tuple[int, int]:
    """WIDTHxHEIGHT (or one number for a square) as (height, width)."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?", text)
    if match is None:
        raise argparse.ArgumentTypeError(f"size should be WIDTHxHEIGHT (e.g. 512x512) or one number, not {text!r}")
    width = int(match[1])
    return (int(match[2]) if match[2] else width), width


def check_image(path: str, in_channels: int) -> torch.Tensor:
    """A centre crop of the image as `[1, in_channels, h, w]`: alpha dropped, gray repeated, as the model needs."""
    image = read_image(path).tensor
    channels = image.shape[1]
    if channels in (2, 4) and in_channels == channels - 1:
        image = image[:, :-1]
    elif channels in (1, 2) and in_channels == 3:
        image = image[:, :1].expand(-1, 3, -1, -1)
    elif channels != in_channels:
        raise RealESRError(f"{path} has {channels} channels; the model takes {in_channels}")
    return centre_crop(image, CHECK_CROP)


def cmd_export(args: argparse.Namespace) -> int:
    result: ExportResult = export_model(args.model, args.output, precision=args.precision, opset=args.opset,
                                        size=args.size)
    print(f"{args.model} -> {result}")
    if args.check:
        image = check_image(args.check, result.model.in_channels)
        runtime = "onnxruntime" if result.format == "onnx" else "ncnn"
        value = export_fidelity(result.model, result.files[0], image)
        print(f"checked with {runtime} (CPU) on a {image.shape[-1]}x{image.shape[-2]} crop of {args.check}: "
              f"{value:.1f} dB PSNR against realesr's fp32 PyTorch output")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    exp = sub.add_parser("export", help="write a model as ONNX (.onnx) or ncnn (.param + .bin) for other tools",
                         description="Writes a model for onnxruntime / TensorRT / chaiNNer / vs-mlrt (.onnx) or for "
                                     "realesrgan-ncnn-vulkan / Upscayl / chaiNNer (.param, with the .bin beside it). "
                                     "See docs/export.md.")
    exp.add_argument("model", help=model_help(default=False))
    exp.add_argument("output", help="OUT.onnx or OUT.param (OUT.bin is written beside it); replaced if it exists. "
                                    "For Upscayl the name must carry the scale (e.g. mymodel-x2.param)")
    exp.add_argument("--precision", choices=PRECISIONS, default="fp32",
                     help="fp16 halves the file (ncnn: fp16 weights like the official files; ONNX: fp16 throughout, "
                          "for GPUs); default fp32")
    exp.add_argument("--opset", type=int, default=None, help=f"ONNX opset (default {DEFAULT_OPSET})")
    exp.add_argument("--size", type=parse_size, default=None, metavar="WIDTHxHEIGHT",
                     help="ONNX only: fix the input to one image of this size (TensorRT engines built for one size); "
                          "default: dynamic batch, height and width")
    exp.add_argument("--check", metavar="IMAGE", default=None,
                     help=f"run the exported file with its runtime (onnxruntime or ncnn, CPU) on a {CHECK_CROP}px crop "
                          "of IMAGE and print its PSNR against our PyTorch output")
    exp.set_defaults(func=cmd_export)
