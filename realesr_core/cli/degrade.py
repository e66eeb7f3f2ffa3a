"""`realesr degrade`: low-quality images (and training pairs) with Real-ESRGAN's pipeline, for a folder of images with
the folder semantics of `upscale` (sub-folders mirrored, one name per input, what was skipped listed)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ..degradation import DEGRADATION_PRESETS, DegradationConfig, apply_parameters, get_preset, sample_parameters
from ..errors import RealESRError
from ..files import unwritable_reason, write_atomically
from ..jobs import IMAGE, Identified, Inputs, Named, PlanError
from ..media import read_image, write_image
from .common import Interrupted, add_recursion_argument, describe_error, interrupted_by_signals, say

NOT_AN_IMAGE = "videos (degrade takes images)"


def _images_only(what: Identified) -> str:
    return "" if what.kind == IMAGE else NOT_AN_IMAGE


def output_names(named: Named, pairs: bool) -> dict[str, Path]:
    """The files one input gives: its degraded image, its clean target (with pairs), its parameters."""
    names = {"lq": named.out_dir / f"{named.stem}_lq.png", "json": named.out_dir / f"{named.stem}.json"}
    if pairs:
        names["gt"] = named.out_dir / f"{named.stem}_gt.png"
    return names


def plan_degrade(inputs: Inputs, pairs: bool) -> list[Named]:
    """Every input, before any work; refuses (PlanError) where an output would replace an input."""
    planned = []
    for named in inputs:
        if not named.problem:
            for target in output_names(named, pairs).values():
                if target.exists() and inputs.is_input(target):
                    raise PlanError(f"{target} is an input of this run, and the output of {named.path} would "
                                    f"replace it: choose an output folder outside the inputs")
        planned.append(named)
    return planned


def cmd_degrade(args: argparse.Namespace) -> int:
    config = get_preset(args.degradation, **({"scale": args.scale} if args.scale else {}))
    out_dir = Path(args.output_dir)
    if reason := unwritable_reason(out_dir):
        say(f"realesr: error: {out_dir}: {reason}; choose another output folder")
        return 2
    inputs = Inputs([args.input_dir], out_dir, recursive=args.recursive, accepts=_images_only)
    planned = plan_degrade(inputs, args.pairs)
    if not planned:
        raise RealESRError(f"no images found in {args.input_dir}" + _skipped_note(inputs))
    generator = torch.Generator().manual_seed(args.seed)
    failures = 0
    with interrupted_by_signals():
        for named in planned:
            written: list[Path] = []
            try:
                if named.problem:
                    raise PlanError(named.problem)
                _degrade_one(named, config, generator, args, written)
            except KeyboardInterrupt as stop:
                _remove(written)
                raise Interrupted(getattr(stop, "signal_number", None), "no partial output is left") from None
            except Exception as exc:  # noqa: BLE001 - any failure is this input's; the run goes on
                _remove(written)  # an input's outputs come as a whole set or not at all
                failures += 1
                say(f"realesr: error: {named.path}: {describe_error(exc)}")
    if summary := inputs.skipped.summary():
        say(f"realesr: {summary}")
    return 1 if failures else 0


def _skipped_note(inputs: Inputs) -> str:
    summary = inputs.skipped.summary()
    return f" ({summary})" if summary else ""


def _remove(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _degrade_one(named: Named, config: DegradationConfig, generator: torch.Generator, args: argparse.Namespace,
                 written: list[Path]) -> None:
    """Degrades one input into its files, noting each in `written` once it is there (the parameters last)."""
    names = output_names(named, args.pairs)
    loaded = read_image(named.path)
    params = sample_parameters(config, 1, *loaded.tensor.shape[-2:], generator=generator)
    result = apply_parameters(loaded.tensor, params, sharpen_target=args.sharpen_target)
    written.append(write_image(names["lq"], result.degraded, loaded.bit_depth))
    if args.pairs:
        written.append(write_image(names["gt"], result.target, loaded.bit_depth))
    record = {"source": str(named.path), "preset": args.degradation, "seed": args.seed, "config": config.to_dict(),
              "params": params[0]}
    text = json.dumps(record, indent=1)
    written.append(write_atomically(names["json"], lambda temporary: temporary.write_text(text)))
    print(f"{named.path} -> {names['lq']} ({result.degraded.shape[-1]}x{result.degraded.shape[-2]})"
          + (f" (renamed: it {named.renamed})" if named.renamed else ""))


def add_parser(sub: argparse._SubParsersAction) -> None:
    deg = sub.add_parser("degrade", help="make low-quality images (and training pairs) with Real-ESRGAN's pipeline")
    deg.add_argument("input_dir", help="folder of clean images (sub-folders too)")
    deg.add_argument("output_dir", help="where NAME_lq.png, NAME_gt.png (--pairs) and NAME.json go, the input "
                                        "folder's tree mirrored")
    add_recursion_argument(deg)
    deg.add_argument("--degradation", default="realesrgan_x4", choices=list(DEGRADATION_PRESETS),
                     help="degradation preset (as finetune's --degradation)")
    deg.add_argument("--seed", type=int, default=0, help="seed of the random draws (same seed, same output)")
    deg.add_argument("--scale", type=int, choices=[2, 4], help="override the preset's scale")
    deg.add_argument("--pairs", action="store_true", help="also write the clean target of each image")
    deg.add_argument("--sharpen-target", action="store_true", help="USM-sharpen the target, as Real-ESRGAN trains")
    deg.set_defaults(func=cmd_degrade)
