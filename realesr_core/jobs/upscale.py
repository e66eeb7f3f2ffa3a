"""An upscale of files: one description of the job (`UpscaleJob`) and its plan (`plan_upscale`), made before any work,
which says for every input what it is, how it is made (in memory, streamed into a tiled TIFF, or as a video) and into
which file. The command line runs the plan input by input; Ray hands it out as units; both write the same files.

Outputs: with `output` naming a file and one input file, that file. Otherwise NAME_x4.png (the label follows the
scale: `x2` with outscale 2, `resized` for a width or height) in the output folder, with the input folders' tree
mirrored under it, or beside each input without one: `.tif` for a TIFF (it keeps its format) and for an image whose
result is too large for memory (streamed into a tiled TIFF); a video keeps its container where that holds every
stream (MP4, MOV, MKV), else becomes MKV. Inputs sharing a name are renamed by the rule in `jobs.inputs`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import ImageError, RealESRError
from ..files import unwritable_reason
from ..media import DEFAULT_MAX_PIXELS
from ..media.huge import output_fits_in_memory
from ..media.images import WRITABLE_SUFFIXES, image_shape, output_format
from ..media.kinds import VIDEO, VIDEO_SUFFIXES
from ..media.video import VideoOptions, check_encoding
from ..upscaling import UpscaleOptions
from ..upscaling.device import available_memory
from .inputs import Inputs, Named, PlanError, SkipList

IN_MEMORY = "in memory"  # read whole, upscaled and written in one go
TILED = "tiled"  # streamed tile row by tile row into a tiled TIFF, never held whole
VIDEO_CONTAINERS = (".mkv", ".mp4", ".mov")  # kept for the output; others become MKV
SIXTEEN_BIT_FORMATS = ("png", "tiff")
QUALITY_FORMATS = ("jpeg", "webp")
DEFAULT_QUALITY = 95


@dataclass(frozen=True)
class UpscaleJob:
    """What an upscale of files needs, the same for every input: the model (a bundled name or an absolute path,
    loaded once per process), how to upscale, encode and write, which inputs and where the outputs go. Plain data:
    Ray ships it to every worker.

    bits: output bit depth of images (None: as the input). device: as asked (None: the GPU if there is one, else the
    CPU; `options.device` stays None so the job is the same wherever it runs). cache_dir: converted weights of
    bundled models (None: this process's). output: a file (one input file) or a folder (None: beside each input).
    recursive: search sub-folders of input folders. stream: write every image as a tiled TIFF streamed tile row by
    tile row (without it, only those whose result would not fit in memory).
    """

    model: str
    options: UpscaleOptions = field(default_factory=UpscaleOptions)
    video: VideoOptions = field(default_factory=VideoOptions)
    bits: int | None = None
    quality: int = DEFAULT_QUALITY
    max_pixels: int = DEFAULT_MAX_PIXELS
    device: str | None = None
    cache_dir: str | None = None
    inputs: tuple[str, ...] = ()
    output: str | None = None
    recursive: bool = True
    stream: bool = False

    def key(self) -> dict[str, Any]:
        """The settings that change an output (not where it is computed, nor which other inputs the run has)."""
        options = {name: str(value) for name, value in asdict(self.options).items()}
        return {"model": self.model, "options": options, "video": asdict(self.video), "bits": self.bits,
                "quality": self.quality}

    def label(self, scale: int) -> str:
        """What output names carry after the stem: x4 for the model's scale, x2 for outscale 2, resized for a size."""
        if self.options.outscale:
            return f"x{self.options.outscale:g}"
        return "resized" if self.options.width or self.options.height else f"x{scale}"

    def exact_output(self) -> Path | None:
        """The output file when `output` names one: a single input that is a file, and `output` a name with a suffix
        (`-o out` and `-o out/` name folders) that is not a folder already."""
        if self.output is None or len(self.inputs) != 1 or Path(self.inputs[0]).is_dir():
            return None
        output = Path(self.output)
        if not output.suffix or output.is_dir() or self.output.endswith(("/", os.sep)):
            return None
        return output


@dataclass(frozen=True)
class PlannedFile:
    """One input of the plan. how: IN_MEMORY, TILED or VIDEO ("" when it cannot be used). shape: an image's
    (height, width, channels) from its header. problem: why the input cannot be upscaled (damaged, missing, not
    what its name says): a failure to report, the run goes on. renamed: why the output is not named after the
    input's own stem."""

    source: Path
    target: Path | None
    how: str
    shape: tuple[int, int, int] | None = None
    problem: str = ""
    renamed: str = ""


def must_stream(height: int, width: int, channels: int, scale: int, asked: bool) -> bool:
    """Whether an image goes tile row by tile row into a tiled TIFF: asked for, or its result would not fit."""
    return asked or not output_fits_in_memory(height, width, channels, scale, available_memory(torch.device("cpu")))


class UpscalePlan:
    """Every input of `job` with its output and how it is made, in a fixed order (see `jobs.inputs`). Lazy: inputs
    are found, identified and their headers read as the plan is iterated, one folder at a time. `skipped` lists what
    was left out once iterated. An output that would replace an input of the run raises PlanError where it is met:
    to refuse before any work, take the whole plan first (`list(plan)`: the serial command does)."""

    def __init__(self, job: UpscaleJob, scale: int) -> None:
        self.job, self.scale, self.label = job, scale, job.label(scale)
        self.exact = job.exact_output()
        output_dir = None if job.output is None else (self.exact.parent if self.exact else Path(job.output))
        self.inputs = Inputs(job.inputs, output_dir, recursive=job.recursive)

    @property
    def skipped(self) -> SkipList:
        return self.inputs.skipped

    def __iter__(self) -> Iterator[PlannedFile]:
        for named in self.inputs:
            planned = self._plan(named)
            if planned.target is not None and planned.target.exists() and self._replaces_input(planned):
                raise PlanError(f"{planned.target} is an input of this run, and the output of {planned.source} "
                                f"would replace it: give -o an output folder outside the inputs"
                                if planned.target != self.exact else
                                f"-o {planned.target} is the input itself: name another output file")
            yield planned

    def _replaces_input(self, planned: PlannedFile) -> bool:
        return self.inputs.is_input(planned.target) if planned.target is not None else False

    def _plan(self, named: Named) -> PlannedFile:
        if named.problem:
            return PlannedFile(named.path, None, "", problem=named.problem)
        if named.what.kind == VIDEO:
            return self._video(named)
        return self._image(named)

    def _target(self, named: Named, suffix: str) -> Path:
        return self.exact or named.out_dir / f"{named.stem}_{self.label}{suffix}"

    def _video(self, named: Named) -> PlannedFile:
        suffix = named.path.suffix.lower()
        target = self._target(named, suffix if suffix in VIDEO_CONTAINERS else ".mkv")
        if target.suffix.lower() not in VIDEO_SUFFIXES:
            return PlannedFile(named.path, None, "", problem=f"{target.name} is not a video's name; name the output "
                                                             f".mkv (it holds every stream), .mp4 or .mov")
        return PlannedFile(named.path, target, VIDEO, renamed=named.renamed)

    def _image(self, named: Named) -> PlannedFile:
        try:
            shape = image_shape(named.path, self.job.max_pixels)
        except RealESRError as exc:
            return PlannedFile(named.path, None, "", problem=str(exc))
        except Exception as exc:  # noqa: BLE001 - a damaged header is that file's failure (tifffile: IndexError)
            return PlannedFile(named.path, None, "", problem=f"cannot read image {named.path.name} (damaged?): "
                                                             f"{type(exc).__name__}: {exc}")
        tiled = must_stream(*shape, self.scale, self.job.stream)
        target = self._target(named, ".tif" if tiled or named.what.format == "tiff" else ".png")
        if tiled and target.suffix.lower() not in (".tif", ".tiff"):
            height, width = shape[0] * self.scale, shape[1] * self.scale
            return PlannedFile(named.path, None, "", shape, problem=f"its result ({width}x{height}) is too large for "
                               f"memory here and is written tile by tile as a TIFF: name the output .tif")
        try:
            output_format(target)
        except ImageError as exc:
            return PlannedFile(named.path, None, "", shape, problem=str(exc))
        return PlannedFile(named.path, target, TILED if tiled else IN_MEMORY, shape, renamed=named.renamed)


def plan_upscale(job: UpscaleJob, scale: int) -> UpscalePlan:
    """The plan of `job` for a model of `scale` (see UpscalePlan): what the command line and Ray both run."""
    return UpscalePlan(job, scale)


def check_job(job: UpscaleJob, quality_asked: bool = False) -> list[str]:
    """What would make the job fail for every input, found before any work: one line each, naming what to change.
    quality_asked: whether `quality` was chosen (not the default), so that it must apply to the output."""
    problems = []
    exact = job.exact_output()
    if job.output is not None:
        output = Path(job.output)
        if exact is None and output.exists() and not output.is_dir():
            problems.append(f"-o {output} is a file without a suffix; name the output with its format's suffix (.png, "
                            f".tif, .mkv, ...)" if len(job.inputs) == 1 and not Path(job.inputs[0]).is_dir() else
                            f"-o {output} is a file; with a folder or several inputs, -o names the output folder")
        elif reason := unwritable_reason(exact.parent if exact is not None else output):
            problems.append(f"-o {output}: {reason}; choose another output")
    else:
        for folder in sorted({path if path.is_dir() else path.parent for path in map(Path, job.inputs)
                              if path.exists()}):
            if reason := unwritable_reason(folder):
                problems.append(f"{folder}: {reason}, and without -o the outputs go beside the inputs; give -o "
                                f"an output folder")
    kind = WRITABLE_SUFFIXES.get(exact.suffix.lower()) if exact is not None else None
    video = exact is not None and exact.suffix.lower() in VIDEO_SUFFIXES
    if job.bits == 16 and (video or kind not in (None, *SIXTEEN_BIT_FORMATS)):
        held = "is a video: its depth is --video-bits" if video else f"is {kind.upper()}, which holds 8 bits per channel"
        problems.append(f"--bits 16: {exact.name} {held}; name a .png or .tif output for 16-bit images")
    if quality_asked and kind not in QUALITY_FORMATS:
        written = (f"{exact.name} is a video, whose quality is --crf" if video else
                   f"{exact.name} is {kind.upper()}, stored without loss" if kind else
                   "the outputs of folders and several inputs are PNG or TIFF")
        problems.append(f"--quality is for JPEG and WebP outputs, and {written}: leave --quality out, or name a "
                        f".jpg or .webp output")
    if job.stream and exact is not None and kind is not None and kind != "tiff":
        problems.append(f"--stream writes a tiled TIFF: name the output .tif, not {exact.name}")
    return problems


def check_videos(job: UpscaleJob) -> list[str]:
    """What would fail every video of the job, found before any work (the plan has videos): encoder settings this
    FFmpeg refuses, an output size other than the model's scale."""
    problems = []
    if job.options.outscale or job.options.width or job.options.height:
        problems.append("--outscale, --width and --height are for images; videos are upscaled at the model's scale "
                        "(resize them afterwards, or give the videos a run of their own)")
    try:
        check_encoding(job.video)
    except RealESRError as exc:
        problems.append(str(exc))
    return problems


def check_device(asked: str | None) -> torch.device:
    """The device to compute on: `asked`, checked now (one line naming what to change, instead of torch's driver
    traceback at the first image), or the GPU if there is one, else the CPU."""
    if asked is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(asked)
    except RuntimeError as exc:
        raise RealESRError(f"--device {asked} is not a device: use cpu, cuda or cuda:N") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = ("this PyTorch is built without CUDA" if torch.version.cuda is None
                   else "PyTorch finds no NVIDIA GPU and driver")
            raise RealESRError(f"--device {asked}: {why}; leave --device out (or use --device cpu) to upscale on the "
                               f"CPU")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RealESRError(f"--device {asked}: there are {torch.cuda.device_count()} CUDA GPU(s), "
                               f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    elif device.type != "cpu":
        backend = getattr(torch, device.type, None) or getattr(torch.backends, device.type, None)
        if backend is None or not getattr(backend, "is_available", lambda: False)():
            raise RealESRError(f"--device {asked}: this PyTorch cannot use {device.type} here; use cpu or cuda")
    return device
