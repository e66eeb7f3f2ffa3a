"""`realesr degrade`: low-quality images and training pairs with Real-ESRGAN's pipeline."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from ..degradation import PRESETS, apply_parameters, get_preset, sample_parameters
from ..errors import RealESRError
from ..media import read_image, write_image
from .common import collect_inputs


def cmd_degrade(args: argparse.Namespace) -> int:
    config = get_preset(args.preset, **({"scale": args.scale} if args.scale else {}))
    sources = collect_inputs([args.input_dir])
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(args.seed)
    failures = 0
    for source in sources:
        try:
            loaded = read_image(source)
            params = sample_parameters(config, 1, *loaded.tensor.shape[-2:], generator=generator)
            result = apply_parameters(loaded.tensor, params, sharpen_target=args.sharpen_target)
            write_image(out_dir / f"{source.stem}_lq.png", result.degraded, loaded.bit_depth)
            if args.pairs:
                write_image(out_dir / f"{source.stem}_gt.png", result.target, loaded.bit_depth)
        except RealESRError as exc:
            failures += 1
            print(f"realesr: error: {source}: {exc}", file=sys.stderr)
            continue
        record = {"source": str(source), "preset": args.preset, "seed": args.seed, "config": config.to_dict(),
                  "params": params[0]}
        (out_dir / f"{source.stem}.json").write_text(json.dumps(record, indent=1))
        print(f"{source} -> {out_dir / (source.stem + '_lq.png')} ({result.degraded.shape[-1]}x{result.degraded.shape[-2]})")
    return 1 if failures else 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    deg = sub.add_parser("degrade", help="make low-quality images (and training pairs) with Real-ESRGAN's pipeline")
    deg.add_argument("input_dir", help="directory of clean images")
    deg.add_argument("output_dir", help="where NAME_lq.png, NAME_gt.png (--pairs) and NAME.json go")
    deg.add_argument("--preset", default="realesrgan_x4", choices=list(PRESETS), help="degradation preset")
    deg.add_argument("--seed", type=int, default=0, help="seed of the random draws (same seed, same output)")
    deg.add_argument("--scale", type=int, choices=[2, 4], help="override the preset's scale")
    deg.add_argument("--pairs", action="store_true", help="also write the clean target of each image")
    deg.add_argument("--sharpen-target", action="store_true", help="USM-sharpen the target, as Real-ESRGAN trains")
    deg.set_defaults(func=cmd_degrade)
