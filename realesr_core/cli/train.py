"""`realesr finetune` and `realesr train`: training runs from options or a TOML file."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from ..degradation import PRESETS
from ..models import ModelDescriptor
from .common import ProgressBar, model_help

if TYPE_CHECKING:
    from ..training import TrainingConfig


def cmd_finetune(args: argparse.Namespace) -> int:
    from ..training import apply_setting, build_config, load_generator, preset

    model = load_generator(args.model, args.seed or 0)  # its scale picks the degradation preset
    options = preset("finetune_pairs" if args.lr_dir else "finetune_x4plus")
    scale = model.network.scale  # what the network trains at (a rescaled model's own output is resized after it)
    if not args.lr_dir and scale in (2, 4):
        options["degradation"] = f"realesrgan_x{scale}"
    options.update(model=args.model, hr_dir=args.hr_dir, output_dir=args.output, batch=4, steps=5000)
    chosen = {"stage": args.stage, "steps": args.steps, "batch": args.batch, "patch": args.patch, "lr": args.lr,
              "ema_decay": args.ema_decay, "degradation": args.degradation, "lr_dir": args.lr_dir,
              "val_dir": args.val_dir, "precision": args.precision, "seed": args.seed}
    options.update({key: value for key, value in chosen.items() if value is not None})
    if args.stage == "net" and args.lr is None:
        options["lr"] = 2e-4  # the official net stage's rate
    for setting in [f"losses.{item}" for item in args.loss] + args.set:
        apply_setting(options, setting)
    return _train(build_config(options), args.resume, model)


def cmd_train(args: argparse.Namespace) -> int:
    from ..training import load_config_file

    return _train(load_config_file(args.config, args.set), args.resume, None)


def _train(config: TrainingConfig, resume: bool, model: ModelDescriptor | None) -> int:
    from ..training import start_distributed, train

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # under torchrun
        start_distributed(int(os.environ.get("LOCAL_RANK", "0")), config.device)

    bar = ProgressBar(f"{config.stage} stage", "steps")

    def progress(done: int, total: int, values: dict[str, float]) -> None:
        shown = ("pixel", "perceptual", "gan", "d_real", "d_fake")
        bar(done, total, " ".join(f"{name} {values[name]:.4f}" for name in shown if name in values))

    try:
        result = train(config, resume=resume, model=model, progress=progress)
    finally:
        bar.close()
    scores = result.validation
    summary = f", validation PSNR {scores['psnr']:.2f} dB, SSIM {scores['ssim']:.4f}" if scores else ""
    if result.stopped == "interrupted":
        print(f"stopped at step {result.steps} of {config.steps} and saved; continue with --resume{summary}")
        return 130
    print(f"trained {result.steps} steps -> {result.model_path}{summary}")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    fine = sub.add_parser("finetune", help="fine-tune a model (or train a fresh one) on your own images",
                          description="Trains with Real-ESRGAN's recipe: degrades HR_DIR's images on the fly (or uses "
                                      "LR/HR pairs) and writes OUT_DIR/model.safetensors (the EMA generator).")
    fine.add_argument("model", help=model_help(default=False) + ", or new:ARCH:key=value,... for a fresh network "
                                    "(e.g. new:srvgg:num_feat=16,num_conv=4,scale=2)")
    fine.add_argument("hr_dir", help="folder of high-resolution images (searched recursively)")
    fine.add_argument("-o", "--output", required=True, help="output folder (model, state, metrics, samples)")
    fine.add_argument("--stage", choices=["net", "gan"],
                      help="net: L1 only (ESRNet); gan: L1 + perceptual + GAN (default, the official fine-tune)")
    fine.add_argument("--steps", type=int, help="optimizer steps (default 5000)")
    fine.add_argument("--batch", type=int, help="images per step (default 4; the official 12 needs a big GPU)")
    fine.add_argument("--patch", type=int, help="side of the high-resolution patch (default 256)")
    fine.add_argument("--lr", type=float, help="learning rate (default 1e-4; net stage 2e-4)")
    fine.add_argument("--ema-decay", type=float, help="EMA decay of the saved model (default 0.999)")
    fine.add_argument("--degradation", help=f"degradation preset ({', '.join(PRESETS)}; default: realesrgan_x"
                                            f"<model scale>)")
    fine.add_argument("--lr-dir", help="low-resolution partners of HR_DIR's images (same relative paths): paired "
                                       "fine-tuning, no synthetic degradation")
    fine.add_argument("--val-dir", help="held-out HR images: PSNR/SSIM and samples every val_every steps")
    fine.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"],
                      help="auto: bf16 on CUDA and on CPUs with native bf16, else fp32; fp16 (CUDA) adds loss scaling")
    fine.add_argument("--loss", action="append", default=[], metavar="NAME=WEIGHT",
                      help="override a loss weight: pixel, charbonnier, perceptual, gan, ldl, ms_ssim (repeatable)")
    fine.add_argument("--seed", type=int, help="seed of every random draw (default 0)")
    fine.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="any other training option (see `realesr train`), e.g. --set workers=4")
    fine.add_argument("--resume", action="store_true", help="continue the run in OUT_DIR exactly where it stopped")
    fine.set_defaults(func=cmd_finetune)
    run = sub.add_parser("train", help="train from a TOML file that says everything about the run")
    run.add_argument("config", help="TOML file: preset, model, hr_dir, output_dir and any other option")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override an option of the file (losses.NAME=WEIGHT for a loss)")
    run.add_argument("--resume", action="store_true", help="continue the run in output_dir exactly where it stopped")
    run.set_defaults(func=cmd_train)
