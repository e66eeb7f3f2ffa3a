"""`realesr upscale`: images, videos and folders of them."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from ..errors import RealESRError
from ..media import DEFAULT_MAX_PIXELS, READABLE_SUFFIXES, read_image
from ..media.huge import open_for_streaming, output_fits_in_memory, upscale_to_tiff
from ..media.images import image_shape
from ..media.upscale_file import upscale_image_file
from ..media.video import VIDEO_SUFFIXES, VideoOptions, upscale_video
from ..models import ModelDescriptor, load_model, zoo
from ..upscaling import UpscaleOptions
from ..upscaling.device import available_memory
from .common import ProgressBar, collect_inputs, model_help
from .options import add_option_arguments, option_values

TILING_OPTIONS = ["tile", "overlap", "blend", "border", "precision"]
COMMAND_LINE_OPTIONS = [*TILING_OPTIONS, "outscale", "width", "height", "alpha", "compile"]


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


def cmd_upscale(args: argparse.Namespace) -> int:
    model = load_model(args.model)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.ray is None:
        model.module.to(device)  # our own copy of the model: moved once, not per image
    options = UpscaleOptions(device=device, **option_values(args, UpscaleOptions, COMMAND_LINE_OPTIONS))
    sources = collect_inputs(args.input, READABLE_SUFFIXES + VIDEO_SUFFIXES)
    label = f"x{args.outscale:g}" if args.outscale else ("resized" if args.width or args.height else f"x{model.scale}")
    failed: list[Path] = []
    video = VideoOptions(codec=args.codec, crf=args.crf, preset=args.preset,
                         bit_depth=None if args.video_bits == "auto" else int(args.video_bits),
                         skip_duplicates=args.skip_duplicates, resume=args.resume)
    if args.ray is not None:
        from ..scale.run import upscale_on_ray

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


def add_parser(sub: argparse._SubParsersAction) -> None:
    up = sub.add_parser("upscale", help="upscale image files")
    up.add_argument("input", nargs="+",
                    help="image files (PNG, JPEG, WebP, TIFF, BMP, GIF), videos (MP4, MKV, MOV, WebM, AVI) or folders")
    up.add_argument("-o", "--output", help="output file (one input) or directory (default: beside each input)")
    up.add_argument("-m", "--model", default=zoo.DEFAULT_MODEL, help=model_help())
    add_option_arguments(up, UpscaleOptions, TILING_OPTIONS)
    size = up.add_mutually_exclusive_group()
    add_option_arguments(size, UpscaleOptions, ["outscale", "width"], outscale="-s")
    add_option_arguments(up, UpscaleOptions, ["height", "alpha"])
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
    add_option_arguments(up, UpscaleOptions, ["compile"])
    up.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                    help="spread the work over a Ray cluster (pip install 'realesr[ray]'): alone, a local Ray with this "
                         "machine's CPUs and GPUs; 'auto' or ray://host:port joins a running one. Re-running skips "
                         "what is done")
    up.add_argument("--ray-workers", type=int, metavar="N",
                    help="upscalers on the cluster (default: one per GPU, or one per 4 CPUs without GPUs; more than "
                         "the GPUs share them, so that one's writing overlaps another's upscaling)")
    up.set_defaults(func=cmd_upscale)
