"""`realesr convert` and `realesr models`: model files and the bundled models."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import RealESRError
from ..files import unwritable_reason
from ..models import load_model, save_model, zoo
from .common import model_help


def cmd_convert(args: argparse.Namespace) -> int:
    output = Path(args.output)
    if output.suffix.lower() != ".safetensors":
        raise RealESRError(f"{output.name}: convert writes safetensors (with the architecture in its metadata), which "
                           f"PyTorch's .pth loaders cannot read; name the output .safetensors")
    if output.is_dir():
        raise RealESRError(f"{output} is a folder; name the output file")
    if output.exists() and not args.force:
        raise RealESRError(f"{output} exists; add --force to replace it")
    if reason := unwritable_reason(output.parent):
        raise RealESRError(f"{output}: {reason}; choose another output")
    replaced = output.exists()
    model = load_model(args.input)
    path = save_model(model, output)
    print(f"{args.input} -> {path}{' (replaced)' if replaced else ''}: {model!r}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    ready, missing = zoo.bundled_models()
    for name, entry in zoo.PRETRAINED.items():
        print(f"{name:28s} {'ready  ' if name in ready else 'missing'} {entry.description}")
    for reason in missing.values():
        print(f"  {reason}")
    print(f"(converted once from the official weights; cache: {zoo.cache_dir()})")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    conv = sub.add_parser("convert", help="convert any supported model to canonical safetensors")
    conv.add_argument("input", help=model_help())
    conv.add_argument("output", help="output .safetensors path")
    conv.add_argument("--force", action="store_true", help="replace the output if it exists")
    conv.set_defaults(func=cmd_convert)
    models = sub.add_parser("models", help="list the bundled models")
    models.set_defaults(func=cmd_models)
