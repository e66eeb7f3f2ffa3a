"""The `realesr` command line."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from . import zoo
from .errors import RealESRError
from .image_io import read_image, write_image
from .inference import upscale_whole
from .model_io import load_model, save_model


def _model_help() -> str:
    names = ", ".join(zoo.PRETRAINED)
    return f"model file (.safetensors/.pth/.param) or bundled name ({names}); default {zoo.DEFAULT_MODEL}"


def _default_output(input_path: Path, scale: int) -> Path:
    return input_path.with_name(f"{input_path.stem}_x{scale}.png")


def match_channels(image: torch.Tensor, channels: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Splits off alpha and adapts gray/colour to what the model takes; returns (colour, alpha or None)."""
    alpha = None
    if image.shape[1] in (2, 4) and channels != image.shape[1]:
        image, alpha = image[:, :-1], image[:, -1:]
    if image.shape[1] == 1 and channels == 3:
        image = image.expand(-1, 3, -1, -1)
    elif image.shape[1] == 3 and channels == 1:
        image = image.mean(1, keepdim=True)
    return image, alpha


def cmd_upscale(args: argparse.Namespace) -> int:
    model = load_model(args.model)
    source = read_image(args.input)
    image, alpha = match_channels(source.tensor, model.in_channels)
    started = time.perf_counter()
    out = upscale_whole(model, image).clamp(0, 1)
    if source.tensor.shape[1] == 1 and out.shape[1] == 3:
        out = out.mean(1, keepdim=True)
    if alpha is not None:
        alpha = torch.nn.functional.interpolate(alpha, size=out.shape[-2:], mode="bilinear", align_corners=False)
        out = torch.cat([out, alpha.clamp(0, 1)], 1)
    output = Path(args.output) if args.output else _default_output(Path(args.input), model.scale)
    write_image(output, out, source.bit_depth)
    seconds = time.perf_counter() - started
    h, w = source.tensor.shape[-2:]
    print(f"{args.input} ({w}x{h}) -> {output} ({out.shape[-1]}x{out.shape[-2]}) with {model.name or model.source} "
          f"in {seconds:.1f} s")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    model = load_model(args.input)
    path = save_model(model, args.output)
    print(f"{args.input} -> {path}: {model!r}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    for name, entry in zoo.PRETRAINED.items():
        print(f"{name:28s} {entry.description}")
    print(f"(converted from {zoo.NCNN_WHEEL}; cache: {zoo.cache_dir()})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="realesr", description="Real-ESRGAN upscaling and model tools.")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("upscale", help="upscale an image file")
    up.add_argument("input", help="PNG, JPEG or WebP image")
    up.add_argument("-o", "--output", help="output PNG (default: INPUT_x<scale>.png beside the input)")
    up.add_argument("-m", "--model", default=zoo.DEFAULT_MODEL, help=_model_help())
    up.set_defaults(func=cmd_upscale)
    conv = sub.add_parser("convert", help="convert any supported model to canonical safetensors")
    conv.add_argument("input", help=_model_help())
    conv.add_argument("output", help="output .safetensors path")
    conv.set_defaults(func=cmd_convert)
    models = sub.add_parser("models", help="list the bundled models")
    models.set_defaults(func=cmd_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except RealESRError as exc:
        print(f"realesr: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
