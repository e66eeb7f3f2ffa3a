"""`realesr upscale`: images, videos and folders of them. The job is checked and planned before any work (the
library's `jobs`), then run input by input: a failure is that input's, named on its own line, and the run goes on;
only what dooms every later file (a full disk, the output folder gone) stops it."""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from pathlib import Path

import torch

from ..errors import RealESRError
from ..files import HeldFolder, Leftovers, clear_unfinished, unwritable_reason, work_folder
from ..jobs import (
    DEFAULT_QUALITY,
    SIXTEEN_BIT_FORMATS,
    TILED,
    VIDEO,
    PlannedFile,
    SkipList,
    UpscaleJob,
    check_device,
    check_job,
    check_videos,
    plan_upscale,
)
from ..media import (
    DEFAULT_MAX_PIXELS,
    VideoOptions,
    open_for_streaming,
    output_format,
    read_image,
    upscale_image_file,
    upscale_to_tiff,
    upscale_video,
)
from ..models import ModelDescriptor, load_model, zoo
from ..upscaling import UpscaleOptions, usable_cpus
from .common import (
    Interrupted,
    ProgressBar,
    add_recursion_argument,
    describe_error,
    dooming_error,
    interrupted_by_signals,
    model_help,
    say,
)
from .options import add_option_arguments, option_values

TILING_OPTIONS = ["tile", "overlap", "blend", "border", "precision"]
COMMAND_LINE_OPTIONS = [*TILING_OPTIONS, "outscale", "width", "height", "alpha", "compile"]

STOPPED = 3  # exit status of a run stopped by what dooms every later file


def job_from_arguments(args: argparse.Namespace) -> UpscaleJob:
    """The job the command line describes (the model as an absolute path where it is a file, so that every process
    finds it)."""
    options = UpscaleOptions(**option_values(args, UpscaleOptions, COMMAND_LINE_OPTIONS))
    video = VideoOptions(codec=args.codec, crf=args.crf, preset=args.encoder_preset,
                         bit_depth=None if args.video_bits == "auto" else int(args.video_bits),
                         skip_duplicates=args.skip_duplicates, resume=args.resume)
    model = str(Path(args.model).resolve()) if Path(args.model).is_file() else args.model
    return UpscaleJob(model, options, video, bits=None if args.bits == "auto" else int(args.bits),
                      quality=args.quality or DEFAULT_QUALITY, max_pixels=args.max_pixels, device=args.device,
                      cache_dir=str(zoo.cache_dir().resolve()), inputs=tuple(args.input), output=args.output,
                      recursive=args.recursive, stream=args.stream)


def cmd_upscale(args: argparse.Namespace) -> int:
    job = job_from_arguments(args)
    problems = check_job(job, quality_asked=args.quality is not None)
    device = None
    if args.ray is None:  # a cluster's workers pick their own devices
        try:
            device = check_device(args.device)
        except RealESRError as exc:
            problems.append(str(exc))
    for problem in problems:
        say(f"realesr: error: {problem}")
    if problems:
        return 2
    model = load_model(job.model)
    plan = plan_upscale(job, model.scale)
    if args.ray is not None:
        from ..cluster import upscale_on_ray

        with interrupted_by_signals():
            return upscale_on_ray(model, plan, job, args.ray, args.ray_workers, args.ray_keep_warm)
    planned = list(plan)  # everything planned before any work: an output that would replace an input refuses here
    if not planned:
        summary = plan.skipped.summary()
        raise RealESRError(f"no images or videos found in {', '.join(job.inputs)}" + (f" ({summary})" if summary
                                                                                     else ""))
    if any(entry.how == VIDEO for entry in planned) and (problems := check_videos(job)):
        for problem in problems:
            say(f"realesr: error: {problem}")
        return 2
    model.module.to(device)  # our own copy of the model: moved once, not per image
    if device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(usable_cpus())  # threads beyond the free cores stall each other
    with interrupted_by_signals():
        return SerialRun(model, job, replace(job.options, device=device), planned, plan.skipped).run()


class SerialRun:
    """The planned inputs upscaled one after the other in this process, with what the log says about each."""

    def __init__(self, model: ModelDescriptor, job: UpscaleJob, options: UpscaleOptions, planned: list[PlannedFile],
                 skipped: SkipList) -> None:
        self.model, self.job, self.options, self.planned, self.skipped = model, job, options, planned, skipped
        self.failed: list[Path] = []
        self.output_folder = Path(job.output) if job.output is not None and job.exact_output() is None else None
        self.leftovers = Leftovers()

    def run(self) -> int:
        for entry in self.planned:
            if entry.renamed:
                print(f"{entry.source} is written as {entry.target.name}: it {entry.renamed}")
        folder = HeldFolder(self.output_folder) if self.output_folder is not None else None
        try:
            return self._run_all(folder)
        finally:
            if folder is not None:
                folder.close()

    def _run_all(self, folder: HeldFolder | None) -> int:
        several = len(self.planned) > 1
        for number, entry in enumerate(self.planned, 1):
            if folder is not None and folder.gone():
                say(f"realesr: error: the output folder {folder.path} is gone (deleted, moved or unmounted during the "
                    f"run); stopped before {entry.source}")
                return self._end(STOPPED, number - 1)
            if entry.problem:
                self._fail(entry.source, entry.problem)
                continue
            try:
                self.leftovers.remove(entry.target)  # what a killed run (kill -9) left of this output
                line = self._upscale(entry)
            except KeyboardInterrupt as stop:
                raise Interrupted(getattr(stop, "signal_number", None), self._left_by(entry, keep_parts=True)) from None
            except Exception as exc:  # noqa: BLE001 - any failure is this input's; the run goes on
                doomed = self._dooming(exc)
                left = self._left_by(entry, keep_parts=doomed is not None)
                if doomed is not None:
                    say(f"realesr: error: {entry.source}: {doomed}; stopped, since every later file would fail too "
                        f"({left})")
                    return self._end(STOPPED, number - 1)
                self._fail(entry.source, describe_error(exc))
                continue
            print(f"[{number}/{len(self.planned)}] {line}" if several else line, flush=True)
        return self._end(1 if self.failed else 0, len(self.planned))

    def _dooming(self, exc: BaseException) -> str | None:
        """What dooms every later file, if `exc` says so: a full disk, a file system gone read-only, an output
        folder that can no longer be written."""
        if (doomed := dooming_error(exc)) is not None:
            return describe_error(doomed)
        if self.output_folder is not None and (reason := unwritable_reason(self.output_folder)):
            return reason
        return None

    def _upscale(self, entry: PlannedFile) -> str:
        """Makes the entry's output; returns its line for the log."""
        started = time.perf_counter()
        bar = ProgressBar(entry.source.name, "frames" if entry.how == VIDEO else "tiles")
        try:
            if entry.how == VIDEO:
                result = upscale_video(self.model, entry.source, entry.target, self.options, self.job.video,
                                       progress=bar)
                return (f"{entry.source} -> {entry.target} ({result.size[0]}x{result.size[1]}, {result.frames} frames "
                        f"({result.duplicates} repeated), {result.bit_depth}-bit, {result.copied_streams} "
                        f"audio/subtitle stream(s) copied): {time.perf_counter() - started:.1f} s")
            height, width, _channels = entry.shape
            loaded = (open_for_streaming if entry.how == TILED else read_image)(entry.source, self.job.max_pixels)
            bits = self.job.bits or loaded.bit_depth
            if entry.how == TILED:
                upscale_to_tiff(self.model, loaded, entry.target, self.options, bit_depth=bits, progress=bar)
                summary = "streamed to a tiled TIFF"
            else:
                result = upscale_image_file(self.model, loaded, entry.target, self.options, bit_depth=bits,
                                            quality=self.job.quality, progress=bar)
                summary = (f"{result.tile_count} tile(s) of {result.tile_size} px, {result.precision}"
                           + (f", {result.fp32_reruns} re-run in fp32" if result.fp32_reruns else ""))
                if self.options.outscale or self.options.width or self.options.height:
                    summary += (f", {result.passes} pass{'es' if result.passes > 1 else ''} of the x{self.model.scale} "
                                f"model, then resized to {result.image.shape[-1]}x{result.image.shape[-2]}")
                bits = bits if output_format(entry.target) in SIXTEEN_BIT_FORMATS else 8
        finally:
            bar.close()
        return (f"{entry.source} ({width}x{height}) -> {entry.target} ({bits}-bit) with "
                f"{self.model.name or self.model.source}: {time.perf_counter() - started:.1f} s, {summary}")

    def _left_by(self, entry: PlannedFile, keep_parts: bool) -> str:
        """Clears what the entry's unfinished output left (temporaries, a video's parts folder), except a video's
        finished segments where `keep_parts` (a re-run with --resume continues from them); says what is left."""
        kept = clear_unfinished(entry.target, keep_parts and entry.how == VIDEO) if entry.target is not None else 0
        if kept:
            return (f"no partial output is left; the {kept} finished segment(s) of {entry.source.name} are kept in "
                    f"{work_folder(entry.target)}: run the same command with --resume to continue from them, or delete "
                    f"that folder")
        return "no partial output is left"

    def _fail(self, source: Path, reason: str) -> None:
        self.failed.append(source)
        say(f"realesr: error: {source}: {reason}")

    def _end(self, status: int, tried: int) -> int:
        """The run's last lines: what was skipped, what failed, where a stopped run stopped."""
        if summary := self.skipped.summary():
            say(f"realesr: {summary}")
        if self.failed and len(self.planned) > 1:
            say(f"realesr: {len(self.failed)} of {len(self.planned)} failed: {', '.join(map(str, self.failed))}")
        if status == STOPPED:
            say(f"realesr: stopped after {tried} of {len(self.planned)} inputs; the outputs made are complete, and "
                f"running the same command again makes them all")
        return status


def add_parser(sub: argparse._SubParsersAction) -> None:
    up = sub.add_parser("upscale", help="upscale images, videos and folders of them")
    up.add_argument("input", nargs="+",
                    help="image files (PNG, JPEG, WebP, TIFF, BMP, GIF), videos (MP4, MKV, MOV, WebM, AVI, TS, MPG, "
                         "...) or folders of them (sub-folders too; what a file is comes from its content)")
    up.add_argument("-o", "--output",
                    help="output file (one input file) or folder, the input folders' tree mirrored in it (default: "
                         "beside each input)")
    add_recursion_argument(up)
    up.add_argument("-m", "--model", default=zoo.DEFAULT_MODEL, help=model_help())
    add_option_arguments(up, UpscaleOptions, TILING_OPTIONS)
    size = up.add_mutually_exclusive_group()
    add_option_arguments(size, UpscaleOptions, ["outscale", "width"], outscale="-s")
    add_option_arguments(up, UpscaleOptions, ["height", "alpha"])
    up.add_argument("--bits", default="auto", choices=["auto", "8", "16"],
                    help="output bit depth for PNG and TIFF (auto: as the input; JPEG, WebP and BMP hold 8)")
    up.add_argument("--quality", type=int, choices=range(1, 101), metavar="1..100",
                    help=f"quality of a JPEG or WebP output (default {DEFAULT_QUALITY}; the format follows the output's "
                         f"extension)")
    up.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                    help=f"refuse larger inputs (default {DEFAULT_MAX_PIXELS:,}, as Pillow's decompression-bomb limit)")
    up.add_argument("--codec", default=None,
                    help="video encoder: libx264, libx265, libsvtav1, ffv1, or an NVENC one where the GPU has it "
                         "(default: the source's family: libx265 for HEVC, libsvtav1 for AV1 and VP9, else libx264)")
    up.add_argument("--crf", type=int, default=18, help="video quality (constant rate factor; lower is better)")
    up.add_argument("--encoder-preset", default=None,
                    help="video encoder speed preset, e.g. veryfast or slow for x264 (default: the encoder's own)")
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
    up.add_argument("--ray-keep-warm", type=float, default=0.0, metavar="SECONDS",
                    help="keep the Ray workers (their processes and loaded model) after the run until they have been "
                         "idle this long, so that the next --ray run of the same model starts at once; they hold "
                         "their CPUs and GPUs on the cluster meanwhile (default 0: they end with the run)")
    up.set_defaults(func=cmd_upscale)

