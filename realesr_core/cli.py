"""The `realesr` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .degradation import PRESETS, apply_parameters, get_preset, sample_parameters
from .errors import RealESRError
from .media import DEFAULT_MAX_PIXELS, READABLE_SUFFIXES, read_image, write_image
from .media.huge import open_for_streaming, output_fits_in_memory, upscale_to_tiff
from .media.images import image_shape
from .media.upscale_file import upscale_image_file
from .media.video import VIDEO_SUFFIXES, VideoOptions, upscale_video
from .models import ModelDescriptor, load_model, save_model, zoo
from .upscaling import UpscaleOptions
from .upscaling.channels import ALPHA_MODES
from .upscaling.device import available_memory
from .upscaling.options import DEFAULT_BLEND, DEFAULT_BORDER, DEFAULT_OVERLAP, PRECISION_CHOICES

if TYPE_CHECKING:
    from .training.config import TrainingConfig


def _model_help(default: bool = True) -> str:
    names = ", ".join(zoo.PRETRAINED)
    described = f"model file (.safetensors/.pth/.param) or bundled name ({names})"
    return f"{described}; default {zoo.DEFAULT_MODEL}" if default else described


def collect_inputs(inputs: list[str], suffixes: tuple[str, ...] = READABLE_SUFFIXES) -> list[Path]:
    """Files as given, and the files with one of `suffixes` directly inside any directory given, sorted."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix.lower() in suffixes and p.is_file())
        else:
            found.append(path)
    if not found:
        raise RealESRError(f"no images found in {', '.join(inputs)}")
    return found


def output_path(source: Path, output: str | None, several: bool, scale_label: str, suffix: str | None = None) -> Path:
    """The output file: as given, or NAME_x4.png beside the input (NAME_x4.tif for a TIFF, which keeps its format,
    and for an image streamed because its result is too large for memory)."""
    suffix = suffix or (".tif" if source.suffix.lower() in (".tif", ".tiff") else ".png")
    default_name = f"{source.stem}_{scale_label}{suffix}"
    if output is None:
        return source.with_name(default_name)
    target = Path(output)
    if several or target.is_dir() or output.endswith(("/", "\\")):
        return target / default_name
    return target


def video_output_path(source: Path, output: str | None, several: bool, scale_label: str) -> Path:
    """The output video: as `output_path`, in the source's container where it holds every stream, else MKV."""
    suffix = source.suffix.lower() if source.suffix.lower() in (".mkv", ".mp4", ".mov") else ".mkv"
    return output_path(source, output, several, scale_label, suffix)


def must_stream(height: int, width: int, channels: int, scale: int, asked: bool) -> bool:
    """Whether an image goes tile row by tile row into a tiled TIFF: asked for, or its result would not fit."""
    return asked or not output_fits_in_memory(height, width, channels, scale, available_memory(torch.device("cpu")))


class ProgressBar:
    """A one-line counter on stderr with the rate and the time left, shown for work that takes more than a moment."""

    def __init__(self, label: str, unit: str = "tiles") -> None:
        self.label, self.unit = label, unit
        self.started = time.perf_counter()
        self.shown = False

    def __call__(self, done: int, total: int, note: str = "") -> None:
        elapsed = time.perf_counter() - self.started
        if elapsed < 1.0 and not self.shown:
            return
        self.shown = True
        width = 30
        filled = width * done // max(total, 1)
        rate = done / max(elapsed, 1e-9)
        left = (total - done) / rate if rate > 0 else 0.0
        print(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {self.unit}, "
              f"{rate:.1f}/s, {_duration(left)} left {note}", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.shown:
            print(file=sys.stderr)


def _duration(seconds: float) -> str:
    if seconds < 100:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 6000 else f"{seconds / 3600:.1f} h"


def cmd_upscale(args: argparse.Namespace) -> int:
    model = load_model(args.model)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.ray is None:
        model.module.to(device)  # our own copy of the model: moved once, not per image
    options = UpscaleOptions(tile=args.tile, overlap=args.overlap, blend=args.blend, border=args.border,
                             precision=args.precision, alpha=args.alpha, outscale=args.outscale, width=args.width,
                             height=args.height, device=device, compile=args.compile)
    sources = collect_inputs(args.input, READABLE_SUFFIXES + VIDEO_SUFFIXES)
    label = f"x{args.outscale:g}" if args.outscale else ("resized" if args.width or args.height else f"x{model.scale}")
    failed: list[Path] = []
    video = VideoOptions(codec=args.codec, crf=args.crf, preset=args.preset,
                         bit_depth=None if args.video_bits == "auto" else int(args.video_bits),
                         skip_duplicates=args.skip_duplicates, resume=args.resume)
    if args.ray is not None:
        from .scale.run import upscale_on_ray

        return upscale_on_ray(model, sources, args, options, video, label)
    for source in sources:
        if source.suffix.lower() in VIDEO_SUFFIXES:
            if not _upscale_one_video(model, source, args, options, video, label, len(sources) > 1):
                failed.append(source)
            continue
        try:
            height, width, channels = image_shape(source, args.max_pixels)
            stream = must_stream(height, width, channels, model.scale, args.stream)
            loaded = (open_for_streaming if stream else read_image)(source, args.max_pixels)
            target = output_path(source, args.output, len(sources) > 1, label, ".tif" if stream else None)
            bits = loaded.bit_depth if args.bits == "auto" else int(args.bits)
            bar = ProgressBar(source.name)
            started = time.perf_counter()
            try:
                if stream:
                    upscale_to_tiff(model, loaded, target, options, bit_depth=bits, progress=bar)
                    summary = "streamed to a tiled TIFF"
                else:
                    result = upscale_image_file(model, loaded, target, options, bit_depth=bits, quality=args.quality,
                                                progress=bar)
                    summary = (f"{result.tile_count} tile(s) of {result.tile_size} px, {result.precision}"
                               + (f", {result.fp32_reruns} re-run in fp32" if result.fp32_reruns else ""))
            finally:
                bar.close()
        except RealESRError as exc:
            failed.append(source)
            print(f"realesr: error: {source}: {exc}", file=sys.stderr)
            continue
        print(f"{source} ({width}x{height}) -> {target} ({bits}-bit) with {model.name or model.source}: "
              f"{time.perf_counter() - started:.1f} s, {summary}")
    if failed and len(sources) > 1:
        print(f"realesr: {len(failed)} of {len(sources)} failed: {', '.join(str(p) for p in failed)}", file=sys.stderr)
    return 1 if failed else 0


def _upscale_one_video(model: ModelDescriptor, source: Path, args: argparse.Namespace, options: UpscaleOptions,
                       video: VideoOptions, label: str, several: bool) -> bool:
    """One video; False (and the reason on stderr) when it failed, so the other inputs still run."""
    target = video_output_path(source, args.output, several, label)
    bar = ProgressBar(source.name, "frames")
    started = time.perf_counter()
    try:
        result = upscale_video(model, source, target, options, video, progress=bar)
    except RealESRError as exc:
        print(f"realesr: error: {source}: {exc}", file=sys.stderr)
        return False
    finally:
        bar.close()
    print(f"{source} -> {target} ({result.size[0]}x{result.size[1]}, {result.frames} frames "
          f"({result.duplicates} repeated), {result.bit_depth}-bit, "
          f"{result.copied_streams} audio/subtitle stream(s) copied): {time.perf_counter() - started:.1f} s")
    return True


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


def cmd_finetune(args: argparse.Namespace) -> int:
    from .training.config import apply_setting, build_config, preset
    from .training.trainer import load_generator

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
    from .training.config import load_config_file

    return _train(load_config_file(args.config, args.set), args.resume, None)


def _train(config: TrainingConfig, resume: bool, model: ModelDescriptor | None) -> int:
    from .training.trainer import start_distributed, train

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="realesr", description="Real-ESRGAN upscaling and model tools.")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("upscale", help="upscale image files")
    up.add_argument("input", nargs="+",
                    help="image files (PNG, JPEG, WebP, TIFF, BMP, GIF), videos (MP4, MKV, MOV, WebM, AVI) or folders")
    up.add_argument("-o", "--output", help="output file (one input) or directory (default: beside each input)")
    up.add_argument("-m", "--model", default=zoo.DEFAULT_MODEL, help=_model_help())
    up.add_argument("--tile", type=int, default=0, help="tile size in input pixels (0 = from free memory)")
    up.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP, help="context pixels around each tile")
    up.add_argument("--blend", type=int, default=DEFAULT_BLEND, help="half-width of the cross-fade between tiles")
    up.add_argument("--border", type=int, default=DEFAULT_BORDER,
                    help="pixels reflected around the image (0: the network's own edges; ncnn and Real-ESRGAN use 10)")
    up.add_argument("--precision", default="auto", choices=PRECISION_CHOICES,
                    help="auto: fp16 on CUDA, bf16 on CPUs with native bf16, else fp32")
    size = up.add_mutually_exclusive_group()
    size.add_argument("-s", "--outscale", type=float, help="output scale factor (e.g. 2 with a x4 model)")
    size.add_argument("--width", type=int, help="output width (height follows unless --height is given)")
    up.add_argument("--height", type=int, help="output height (width follows unless --width is given)")
    up.add_argument("--alpha", default="model", choices=ALPHA_MODES,
                    help="upscale transparency with the model (as a gray image) or by a smooth resize")
    up.add_argument("--bits", default="auto", choices=["auto", "8", "16"],
                    help="output bit depth for PNG and TIFF (auto: as the input)")
    up.add_argument("--quality", type=int, default=95, choices=range(1, 101), metavar="1..100",
                    help="JPEG / WebP quality of the output (the format follows the output's extension)")
    up.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                    help=f"refuse larger inputs (default {DEFAULT_MAX_PIXELS:,}, as Pillow's decompression-bomb limit)")
    up.add_argument("--codec", default="libx264",
                    help="video encoder: libx264, libx265, libsvtav1, ffv1, or an NVENC one where the GPU has it")
    up.add_argument("--crf", type=int, default=18, help="video quality (constant rate factor; lower is better)")
    up.add_argument("--preset", default="medium", help="video encoder speed preset")
    up.add_argument("--video-bits", default="auto", choices=["auto", "8", "10"],
                    help="video output bit depth (auto: 10 for a 10-bit source, else 8)")
    up.add_argument("--skip-duplicates", type=float, metavar="LEVELS",
                    help="video: a frame within LEVELS (mean 8-bit difference) of the previous one reuses its result")
    up.add_argument("--resume", action="store_true",
                    help="video: keep the segments an interrupted run of the same job finished (.NAME.parts beside "
                         "the output) and upscale only the rest")
    up.add_argument("--stream", action="store_true",
                    help="write the result tile row by tile row into a tiled TIFF, never holding it in memory "
                         "(chosen by itself when the result would not fit)")
    up.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    up.add_argument("--compile", action="store_true", help="torch.compile the model (slow first call)")
    up.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                    help="spread the work over a Ray cluster (pip install 'realesr[ray]'): alone, a local Ray with this "
                         "machine's CPUs and GPUs; 'auto' or ray://host:port joins a running one. Re-running skips "
                         "what is done")
    up.add_argument("--ray-workers", type=int, metavar="N",
                    help="upscalers on the cluster (default: one per GPU, or one per 4 CPUs without GPUs; more than "
                         "the GPUs share them, so that one's writing overlaps another's upscaling)")
    up.set_defaults(func=cmd_upscale)
    conv = sub.add_parser("convert", help="convert any supported model to canonical safetensors")
    conv.add_argument("input", help=_model_help())
    conv.add_argument("output", help="output .safetensors path")
    conv.set_defaults(func=cmd_convert)
    deg = sub.add_parser("degrade", help="make low-quality images (and training pairs) with Real-ESRGAN's pipeline")
    deg.add_argument("input_dir", help="directory of clean images")
    deg.add_argument("output_dir", help="where NAME_lq.png, NAME_gt.png (--pairs) and NAME.json go")
    deg.add_argument("--preset", default="realesrgan_x4", choices=list(PRESETS), help="degradation preset")
    deg.add_argument("--seed", type=int, default=0, help="seed of the random draws (same seed, same output)")
    deg.add_argument("--scale", type=int, choices=[2, 4], help="override the preset's scale")
    deg.add_argument("--pairs", action="store_true", help="also write the clean target of each image")
    deg.add_argument("--sharpen-target", action="store_true", help="USM-sharpen the target, as Real-ESRGAN trains")
    deg.set_defaults(func=cmd_degrade)
    fine = sub.add_parser("finetune", help="fine-tune a model (or train a fresh one) on your own images",
                          description="Trains with Real-ESRGAN's recipe: degrades HR_DIR's images on the fly (or uses "
                                      "LR/HR pairs) and writes OUT_DIR/model.safetensors (the EMA generator).")
    fine.add_argument("model", help=_model_help(default=False) + ", or new:ARCH:key=value,... for a fresh network "
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
    models = sub.add_parser("models", help="list the bundled models")
    models.set_defaults(func=cmd_models)
    return parser


def use_cache_from_environment() -> None:
    """$REALESR_CACHE, else $XDG_CACHE_HOME/realesr, as the cache of converted weights (default ~/.cache/realesr)."""
    if explicit := os.environ.get("REALESR_CACHE"):
        zoo.set_cache_dir(explicit)
    elif xdg := os.environ.get("XDG_CACHE_HOME"):
        zoo.set_cache_dir(Path(xdg) / "realesr")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    use_cache_from_environment()
    try:
        return args.func(args)
    except RealESRError as exc:
        print(f"realesr: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nrealesr: interrupted; nothing half-written was left (a video continues with --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
