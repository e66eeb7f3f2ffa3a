"""`realesr convert` and `realesr models`: model files and the bundled models."""

from __future__ import annotations

import argparse

from ..models import load_model, save_model, zoo
from .common import model_help


def cmd_convert(args: argparse.Namespace) -> int:
    model = load_model(args.input)
    path = save_model(model, args.output)
    print(f"{args.input} -> {path}: {model!r}")
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
    conv.set_defaults(func=cmd_convert)
    models = sub.add_parser("models", help="list the bundled models")
    models.set_defaults(func=cmd_models)
