"""The tiled upscaling engine: every upscale in the command line and the ComfyUI nodes goes through `upscale`.

Seamless (context around every tile, complementary cross-fades), memory-safe (tile size from free memory; an
out-of-memory tile is split and only it is re-run; the full-size result is assembled once, on the output device),
and fast (several tiles per forward on GPUs, channels_last inputs, reduced precision with an fp32 re-run for any
tile that comes out NaN, infinite or black). The caller's module is never changed: a module whose weights are on
another device than the one asked for runs as a copy there.
"""

from __future__ import annotations

import math
import time
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import RealESRError
from ..imaging import check_images, pad_reflect
from ..models.descriptor import ModelDescriptor, describe
from . import channels as ch
from .device import auto_dtype, memory_budget
from .options import PRECISIONS, UpscaleOptions
from .tile_runner import FrameJob, Runner, TileStats, run_tiles
from .tiling import make_grid

MAX_TILE = 2048
MIN_AUTO_TILE = 64
MAX_TILES_PER_FORWARD = 16
MAX_PASSES = 3

ProgressCallback = Callable[[int, int], None]


@dataclass
class UpscaleResult:
    image: torch.Tensor  # [B, C, H', W'] in 0..1 (channels-last, options.output_dtype) on the output device
    tile_size: int  # largest tile core actually used (input pixels), after any out-of-memory splits
    tile_count: int  # tiles run
    tiles_per_forward: int
    precision: str  # "fp32" | "fp16" | "bf16"
    fp32_reruns: int  # tiles re-run in fp32 because reduced precision gave NaN, Inf or black
    switched_to_fp32: bool  # after RERUNS_BEFORE_FP32 re-runs in a row the rest of the call ran in fp32
    oom_splits: int  # tiles split after running out of memory
    passes: int  # model passes (more than one when the wanted size exceeds the model's scale)
    seconds: float


def peak_elements_per_pixel(model: ModelDescriptor) -> float:
    """Activation elements per input pixel at a forward pass's peak: the network's own estimate where it has one."""
    estimate = getattr(model.module, "peak_elements_per_pixel", None)
    return float(estimate()) if callable(estimate) else 3 * 64 * model.scale**2 + 1024.0


@dataclass
class Plan:
    """What `upscale` decided from the options, the model, the image and the device."""

    device: torch.device
    output_device: torch.device
    dtype: torch.dtype
    tile: int
    overlap: int
    blend: int
    border: int
    tiles_per_forward: int  # halved when a batch of tiles runs out of memory
    progress: ProgressCallback | None
    cancel: Callable[[], bool] | None
    runner: Runner  # the network on the device, in the plan's precision
    first_tile: int = 0  # the tile size planned (tile shrinks when memory runs out)

    def __post_init__(self) -> None:
        self.first_tile = self.tile


def upscale(
    model: Any,
    image: torch.Tensor,
    options: UpscaleOptions | None = None,
    *,
    progress: ProgressCallback | None = None,
    cancel: Callable[[], bool] | None = None,
    **option_values: Any,
) -> UpscaleResult:
    """Upscales a batch `[B, C, H, W]` (0..1, C = 1, 2, 3 or 4, any device) and says what was decided.

    `options` (or its fields as keywords, which override it) say how; `progress(done, total)` is called after
    every tile; `cancel()` is asked before every tile and stops the upscale with UpscaleCancelled.
    """
    started = time.perf_counter()
    options = with_values(options or UpscaleOptions(), option_values)
    check_images(image)
    model = describe(model)
    plan = make_plan(model, image, options, progress, cancel)
    target = _target_size(image.shape[-2:], model.scale, options)
    passes = _passes_needed(image.shape[-2:], target, model.scale)
    alpha_through_model = options.alpha == "model" and ch.split_alpha(image[:1], model.in_channels)[1] is not None
    stats = TileStats(planned=_planned_tiles(image.shape, model, plan, passes) * (1 + alpha_through_model))
    # One output batch, allocated once (channels-last: ComfyUI's [B, H, W, C] view of it needs no copy); frames go
    # through one at a time, so memory beyond it is one frame's, however long the batch.
    output = torch.empty(image.shape[0], image.shape[1], *target, dtype=options.output_dtype,
                         device=plan.output_device, memory_format=torch.channels_last)
    for index in range(image.shape[0]):
        frame = _upscale_frame(model, image[index : index + 1].float(), passes, target, options.alpha, plan, stats)
        output[index : index + 1].copy_(frame)
    return UpscaleResult(
        image=output,
        tile_size=stats.max_core or plan.tile,
        tile_count=stats.tiles,
        tiles_per_forward=plan.tiles_per_forward,
        precision=next(k for k, v in PRECISIONS.items() if v == plan.dtype),
        switched_to_fp32=plan.runner.dtype != plan.dtype,
        fp32_reruns=stats.fp32_reruns,
        oom_splits=stats.oom_splits,
        passes=passes,
        seconds=time.perf_counter() - started,
    )


def memory_required(model: Any, image: torch.Tensor, options: UpscaleOptions | None = None,
                    **option_values: Any) -> int:
    """Working memory an upscale of `image` needs on its device beyond the weights: one forward's tile windows at
    their peak, a reduced-precision copy of the weights where it runs one, and one input frame. What a host's memory
    manager (ComfyUI's `load_models_gpu`) should make room for besides the model."""
    options = with_values(options or UpscaleOptions(), option_values)
    model = describe(model)
    plan = make_plan(model, image, options, None, None)
    rows, cols = (min(plan.tile + 2 * plan.overlap, size + 2 * plan.border) for size in image.shape[-2:])
    window = rows * cols * _window_bytes_per_pixel(model, plan.dtype)
    cast_weights = 0 if plan.dtype == torch.float32 else sum(p.numel() for p in model.module.parameters()) * 2
    return int(plan.tiles_per_forward * window + cast_weights + image[:1].numel() * 4)


def _upscale_frame(model: ModelDescriptor, frame: torch.Tensor, passes: int, target: tuple[int, int], alpha: str,
                   plan: Plan, stats: TileStats) -> torch.Tensor:
    """One image `[1, C, H, W]` at the target size: premultiplied colour and alpha through the model (or alpha
    resized), then resized to the target."""
    colour, alpha_channel = ch.split_alpha(frame, model.in_channels)
    if alpha_channel is not None:
        colour = ch.premultiply(colour, alpha_channel)
    result = _through_model(model, colour, passes, plan, stats)
    if alpha_channel is not None:
        if alpha == "model":
            alpha_out = _through_model(model, alpha_channel, passes, plan, stats)
        else:
            alpha_out = F.interpolate(alpha_channel.to(plan.output_device), size=result.shape[-2:],
                                      mode="bicubic", align_corners=False)
        alpha_out = ch.keep_flat_alpha(alpha_channel, alpha_out.clamp(0, 1))
        result = torch.cat([ch.unpremultiply(result, alpha_out), alpha_out], 1)
    return _resize(result, target).clamp_(0, 1)


def with_values(options: UpscaleOptions, values: dict[str, Any]) -> UpscaleOptions:
    """`options` with some fields replaced by keyword values (unknown names are a clear error)."""
    unknown = sorted(set(values) - set(UpscaleOptions.names()))
    if unknown:
        raise RealESRError(f"unknown upscale option(s) {', '.join(unknown)}; known: {', '.join(UpscaleOptions.names())}")
    return replace(options, **values) if values else options


def make_plan(model: ModelDescriptor, image: torch.Tensor, options: UpscaleOptions,
              progress: ProgressCallback | None, cancel: Callable[[], bool] | None) -> Plan:
    """Device, precision, tile size and tiles per forward for `image` (its shape and device are all that is read,
    so a meta tensor stands for an image that is never in memory)."""
    parameter = next(model.module.parameters(), None)
    if options.device is not None:
        device = torch.device(options.device)
    else:
        device = parameter.device if parameter is not None else image.device
    if device.type == "cuda" and device.index is None:  # "cuda" is the current card: name it, as weights do
        device = torch.device("cuda", torch.cuda.current_device())
    if options.precision == "auto":
        dtype = auto_dtype(device, model.supports_fp16, model.supports_bf16)
    else:
        dtype = PRECISIONS[options.precision]
        supported = {torch.float16: model.supports_fp16, torch.bfloat16: model.supports_bf16}
        if not supported.get(dtype, True):
            raise RealESRError(f"this model does not support {options.precision}")
    window_bytes_per_pixel = _window_bytes_per_pixel(model, dtype)
    budget = memory_budget(device)
    tile, overlap, border = options.tile, options.overlap, options.border
    height, width = image.shape[-2:]
    one_window_fits = (height + 2 * border) * (width + 2 * border) * window_bytes_per_pixel <= budget
    if model.tiling == "internal" or (model.tiling == "discouraged" and one_window_fits):
        tile = max(height, width)  # the model tiles itself, or tiling would harm it and it fits whole
    elif model.tiling == "discouraged":
        warnings.warn(f"{model.architecture} works best on whole images, but a {width}x{height} image does not fit "
                      f"in the memory budget ({budget >> 20} MiB): tiling it anyway", stacklevel=3)
    if tile == 0:
        if one_window_fits:
            tile = max(height, width)  # one window: no context overhead at all
        else:
            window_pixels = budget / window_bytes_per_pixel
            tile = max(MIN_AUTO_TILE, min(MAX_TILE, int(math.sqrt(window_pixels)) - 2 * overlap))
    tiles_per_forward = options.tiles_per_forward
    if tiles_per_forward == 0:
        window = (tile + 2 * overlap) ** 2 * window_bytes_per_pixel
        fits = int(budget // window) if device.type == "cuda" else 1
        tiles_per_forward = max(1, min(MAX_TILES_PER_FORWARD, fits))
    runner = Runner(model.module, device, dtype, options.channels_last and model.channels_last,
                    _compiled if options.compile else None)
    return Plan(device, torch.device(options.output_device), dtype, tile, overlap, options.blend, border,
                 tiles_per_forward, progress, cancel, runner)


def _window_bytes_per_pixel(model: ModelDescriptor, dtype: torch.dtype) -> float:
    return peak_elements_per_pixel(model) * (torch.finfo(dtype).bits // 8) + 64  # measured peaks: 0.7x of this


def _target_size(size: torch.Size, scale: int, options: UpscaleOptions) -> tuple[int, int]:
    h, w = int(size[0]), int(size[1])
    outscale, width, height = options.outscale, options.width, options.height
    if outscale is not None:
        return max(1, round(h * outscale)), max(1, round(w * outscale))
    if width and height:
        return int(height), int(width)
    if width:
        return max(1, round(h * width / w)), int(width)
    if height:
        return int(height), max(1, round(w * height / h))
    return h * scale, w * scale


def _passes_needed(size: torch.Size, target: tuple[int, int], scale: int) -> int:
    needed = max(target[0] / size[0], target[1] / size[1])
    passes = 1
    while scale > 1 and scale**passes < needed - 1e-9:
        passes += 1
    if passes > MAX_PASSES:
        raise RealESRError(f"x{needed:.3g} would take {passes} passes of a x{scale} model; at most {MAX_PASSES}")
    return passes


def _resize(image: torch.Tensor, target: tuple[int, int]) -> torch.Tensor:
    if tuple(image.shape[-2:]) == target:
        return image
    antialias = target[0] < image.shape[-2] or target[1] < image.shape[-1]
    return F.interpolate(image, size=target, mode="bicubic", align_corners=False, antialias=antialias)


def _planned_tiles(shape: torch.Size, model: ModelDescriptor, plan: Plan, passes: int) -> int:
    batch, _, height, width = shape
    total = 0
    for _ in range(passes):
        total += batch * _tile_count(height, width, plan.tile, model, plan)
        height, width = height * model.scale, width * model.scale
    return total


def _tile_count(height: int, width: int, tile: int, model: ModelDescriptor, plan: Plan) -> int:
    grid, _pads = make_grid(height, width, tile, plan.overlap, plan.blend, plan.border, model.size_multiple)
    return len(grid.tiles(0))


def _through_model(model: ModelDescriptor, image: torch.Tensor, passes: int, plan: Plan,
                   stats: TileStats) -> torch.Tensor:
    out_channels = image.shape[1]
    for _ in range(passes):
        output = _tiled(model, ch.to_model_channels(image, model.in_channels), plan, stats)
        image = ch.from_model_channels(output, out_channels)
    return image


def _tiled(model: ModelDescriptor, frame: torch.Tensor, plan: Plan, stats: TileStats) -> torch.Tensor:
    """One frame through the network in tiles. A tile size that ran out of memory on an earlier frame or pass is
    not tried again (the progress total follows)."""
    height, width = frame.shape[-2:]
    scale = model.scale
    grid, pads = make_grid(height, width, plan.tile, plan.overlap, plan.blend, plan.border, model.size_multiple)
    if plan.tile != plan.first_tile:
        stats.planned += len(grid.tiles(0)) - _tile_count(height, width, plan.first_tile, model, plan)
    output = torch.empty(1, model.out_channels, height * scale, width * scale, device=plan.output_device,
                         memory_format=torch.channels_last).zero_()
    job = FrameJob(grid, pad_reflect(frame.to(plan.device), *pads), output, scale, plan.tiles_per_forward,
                   plan.progress, plan.cancel)
    stats.finest_level = 0
    plan.tiles_per_forward = run_tiles(job, plan.runner, stats)
    if stats.finest_level > 0:
        plan.tile = min(plan.tile, grid.max_core(stats.finest_level))
    return output


_COMPILED: dict[int, tuple[weakref.ref, nn.Module]] = {}
COMPILED_KEPT = 2  # compiled models kept between calls (each holds its module's weights)


def _compiled(module: nn.Module) -> nn.Module:
    """torch.compile'd once per module; the cache holds the last COMPILED_KEPT modules, so it never grows."""
    key = id(module)
    entry = _COMPILED.get(key)
    if entry is None or entry[0]() is not module:
        while len(_COMPILED) >= COMPILED_KEPT:
            del _COMPILED[next(iter(_COMPILED))]
        entry = (weakref.ref(module), torch.compile(module, dynamic=False))
    _COMPILED.pop(key, None)
    _COMPILED[key] = entry  # most recent last
    return entry[1]
