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
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import RealESRError
from ..image_tensors import check_images, pad_reflect
from ..models.descriptor import ModelDescriptor, ModelTiling, describe
from . import channels as ch
from .device import inference_dtype, memory_budget
from .frames import FramePipeline
from .options import PRECISIONS, UpscaleOptions
from .tile_runner import FP32_ONLY, FrameJob, Runner, TileStats, run_tiles
from .tiling import Grid, make_grid

MAX_TILE = 2048
MIN_AUTO_TILE = 64
MAX_TILES_PER_FORWARD = 16
MAX_PASSES = 3
CHUNK_PIXELS = 1 << 20  # input pixels of the small frames batched into one forward
MAX_RESIZE_UP = 1.5  # what a resize may stretch a pass's result by before another pass pays
# A compiled network runs one window shape: tiles of a multiple of this (and at most COMPILE_TILE) input pixels.
COMPILE_TILE = 512
COMPILE_TILE_STEP = 128

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
    output_dtype: torch.dtype
    dtype: torch.dtype
    target: tuple[int, int]  # the output size
    passes: int  # model passes to reach it (the rest is a resize)
    model_size: tuple[int, int]  # the size after the passes
    tile: int
    overlap: int
    blend: int
    border: int
    tiles_per_forward: int  # halved when a batch of tiles runs out of memory
    frames_per_chunk: int  # frames that go through together (several small frames share one forward)
    assemble_on_device: bool  # frames are assembled on the compute device (else on the output device, in tiles)
    fixed_window: bool  # every window and batch has one shape (a compiled network)
    reserved: int  # device bytes set aside from the tiles' budget: output, frames, fp32 re-run, weights, input
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
    every batch of tiles; `cancel()` is asked before every batch and during forwards (before the network's layers,
    every 50 ms at most) and stops the upscale with UpscaleCancelled.
    """
    started = time.perf_counter()
    options = with_values(options or UpscaleOptions(), option_values)
    check_images(image)
    model = describe(model)
    plan = make_plan(model, image, options, progress, cancel)
    alpha_through_model = options.alpha == "model" and ch.split_alpha(image[:1], model.in_channels)[1] is not None
    stats = TileStats(planned=_planned_tiles(image.shape, model, plan) * (1 + alpha_through_model))
    # One output batch, allocated once (channels-last: ComfyUI's [B, H, W, C] view of it needs no copy); chunks of
    # frames go through one at a time, so device memory beyond it is one chunk's, however long the batch.
    output = torch.empty(image.shape[0], image.shape[1], *plan.target, dtype=options.output_dtype,
                         device=plan.output_device, memory_format=torch.channels_last)
    frames = FramePipeline(image, output, plan.device)
    try:
        for start in range(0, image.shape[0], plan.frames_per_chunk):
            chunk = frames.input(start, plan.frames_per_chunk)
            result = _upscale_frames(model, chunk, options.alpha, plan, stats, frames.destination(start, len(chunk)),
                                     frames.between)
            frames.deliver(start, result)
        frames.finish()
    finally:
        plan.runner.close()
    return UpscaleResult(
        image=output,
        tile_size=stats.max_core or plan.tile,
        tile_count=stats.tiles,
        tiles_per_forward=plan.tiles_per_forward,
        precision=next(k for k, v in PRECISIONS.items() if v == plan.dtype),
        switched_to_fp32=plan.runner.dtype != plan.dtype,
        fp32_reruns=stats.fp32_reruns,
        oom_splits=stats.oom_splits,
        passes=plan.passes,
        seconds=time.perf_counter() - started,
    )


def memory_required(model: Any, image: torch.Tensor, options: UpscaleOptions | None = None,
                    **option_values: Any) -> int:
    """Working memory an upscale of `image` needs on its device beyond the weights: one forward's tile windows at
    their peak, the frames assembled on the device (and the output, where it is kept there), an fp32 window and
    weights for re-runs and a reduced-precision copy of the weights where it runs one, and the input chunk. What a
    host's memory manager (ComfyUI's `load_models_gpu`) should make room for besides the model."""
    options = with_values(options or UpscaleOptions(), option_values)
    model = describe(model)
    plan = make_plan(model, image, options, None, None)
    return int(plan.tiles_per_forward * _window_bytes(model, plan, image.shape[-2:], plan.dtype) + plan.reserved)


def _upscale_frames(model: ModelDescriptor, frames: torch.Tensor, alpha: str, plan: Plan, stats: TileStats,
                    destination: torch.Tensor | None, between: Callable[[], None] | None) -> torch.Tensor:
    """A chunk of frames `[K, C, H, W]` at the target size, clipped to 0..1 in the output's dtype, on the device that
    assembled them: premultiplied colour and alpha through the model (or alpha resized), then resized to the target.
    Where nothing follows the model (one pass, no alpha, the model's own size and channels) the tiles go straight
    into `destination`, the output's own frames, when it is given."""
    colour, alpha_channel = ch.split_alpha(frames, model.in_channels)
    final = (destination is not None and alpha_channel is None and plan.passes == 1 and destination.is_floating_point()
             and destination.dtype == torch.float32 and tuple(destination.shape[-2:]) == plan.model_size
             and model.out_channels == frames.shape[1] == model.in_channels)
    if alpha_channel is not None:
        colour = ch.premultiply(colour, alpha_channel)
    result, clipped = _through_model(model, colour, plan, stats, destination if final else None, between)
    if final:
        return result if clipped else result.clamp_(0, 1)
    if alpha_channel is not None:
        if alpha == "model":
            alpha_out, _ = _through_model(model, alpha_channel, plan, stats, None, between)
        else:
            alpha_out = F.interpolate(alpha_channel.to(result.device), size=result.shape[-2:], mode="bicubic",
                                      align_corners=False)
        alpha_out = ch.keep_flat_alpha(alpha_channel.to(result.device), alpha_out.clamp(0, 1))
        result = torch.cat([ch.unpremultiply(result, alpha_out), alpha_out], 1)
    return _resize(result, plan.target).clamp_(0, 1).to(plan.output_dtype)


def with_values(options: UpscaleOptions, values: dict[str, Any]) -> UpscaleOptions:
    """`options` with some fields replaced by keyword values (unknown names are a clear error)."""
    unknown = sorted(set(values) - set(UpscaleOptions.names()))
    if unknown:
        raise RealESRError(f"unknown upscale option(s) {', '.join(unknown)}; known: {', '.join(UpscaleOptions.names())}")
    return replace(options, **values) if values else options


def make_plan(model: ModelDescriptor, image: torch.Tensor, options: UpscaleOptions,
              progress: ProgressCallback | None, cancel: Callable[[], bool] | None) -> Plan:
    """Device, precision, output size, tile size, tiles per forward and frames per chunk for `image` (its shape and
    device are all that is read, so a meta tensor stands for an image that is never in memory)."""
    parameter = next(model.module.parameters(), None)
    if options.device is not None:
        device = torch.device(options.device)
    else:
        device = parameter.device if parameter is not None else image.device
    if device.type == "cuda" and device.index is None:  # "cuda" is the current card: name it, as weights do
        device = torch.device("cuda", torch.cuda.current_device())
    output_device = torch.device(options.output_device)
    if output_device.type == "cuda" and output_device.index is None:
        output_device = torch.device("cuda", torch.cuda.current_device())
    dtype = _precision(model, device, options.precision)
    batch, channels, height, width = image.shape
    target = _target_size((height, width), model.scale, options)
    passes = passes_needed((height, width), target, model.scale)
    model_size = (height * model.scale**passes, width * model.scale**passes)
    budget = memory_budget(device)
    # Set aside what is not tile windows: the frames assembled on the device (current, resized and in flight back),
    # the output where it is kept on the device, an fp32 window and fp32 weights for re-runs, the cast weights.
    frame_bytes = 4 * max(channels, model.out_channels) * (model_size[0] * model_size[1] + target[0] * target[1])
    assemble_on_device = device.type == "cpu" or 3 * frame_bytes <= budget // 2
    output_here = (batch * channels * target[0] * target[1] * torch.finfo(options.output_dtype).bits // 8
                   if output_device == device and device.type != "cpu" else 0)
    weights = sum(p.numel() for p in model.module.parameters())
    reserved = (output_here + (3 * frame_bytes if assemble_on_device and device.type != "cpu" else 0)
                + image[:1].numel() * 4 * (2 if device.type != "cpu" else 1)
                + (weights * (2 + 4) if dtype != torch.float32 else 0))
    tile_budget = max(budget - reserved, budget // 8)
    window_bytes_per_pixel = _window_bytes_per_pixel(model, dtype)
    tile, overlap, border = options.tile, options.overlap, options.border
    one_window_fits = (height + 2 * border) * (width + 2 * border) * window_bytes_per_pixel <= tile_budget
    if model.tiling is ModelTiling.INTERNAL or (model.tiling is ModelTiling.DISCOURAGED and one_window_fits):
        tile = max(height, width)  # the model tiles itself, or tiling would harm it and it fits whole
    elif model.tiling is ModelTiling.DISCOURAGED:
        warnings.warn(f"{model.architecture} works best on whole images, but a {width}x{height} image does not fit "
                      f"in the memory budget ({budget >> 20} MiB): tiling it anyway", stacklevel=3)
    if tile == 0:
        if one_window_fits and not options.compile:
            tile = max(height, width)  # one window: no context overhead at all
        else:
            window_pixels = tile_budget / window_bytes_per_pixel
            tile = max(MIN_AUTO_TILE, min(MAX_TILE, int(math.sqrt(window_pixels)) - 2 * overlap))
            if options.compile:  # one window shape for every image size: a multiple of COMPILE_TILE_STEP
                tile = max(COMPILE_TILE_STEP, min(COMPILE_TILE, tile) // COMPILE_TILE_STEP * COMPILE_TILE_STEP)
    if reduced := dtype != torch.float32:
        tile_budget -= (tile + 2 * overlap) ** 2 * _window_bytes_per_pixel(model, torch.float32)  # one fp32 re-run
    window = (tile + 2 * overlap) ** 2 * window_bytes_per_pixel
    tiles_per_forward = options.tiles_per_forward
    if tiles_per_forward == 0:
        fits = int(max(tile_budget, window) // window) if device.type == "cuda" else 1
        tiles_per_forward = max(1, min(MAX_TILES_PER_FORWARD, fits))
    frames_per_chunk = 1
    if tile >= max(height, width) and passes == 1 and tiles_per_forward > 1:
        # Small frames that are one window each go through several to a forward, up to CHUNK_PIXELS of input and
        # as far as their assembly fits; larger ones one by one, so that one chunk's copy back to the host runs
        # under the next one's forward (16 1080p frames as one chunk left nothing to overlap: 0.32x on an H200).
        fitting = (budget // 2) // max(1, 3 * frame_bytes)
        frames_per_chunk = max(1, min(tiles_per_forward, batch, fitting, CHUNK_PIXELS // (height * width)))
    fp32_output_layer = reduced and (dtype == torch.bfloat16 or options.output_bits > 8)
    runner = Runner(model.module, device, dtype, options.channels_last and model.channels_last,
                    _compile if options.compile else None, allow_tf32=options.precision != "fp32-strict",
                    fp32_output_layer=fp32_output_layer, cancel=cancel)
    return Plan(device, output_device, options.output_dtype, dtype, target, passes, model_size, tile, overlap,
                options.blend, border, tiles_per_forward, frames_per_chunk, assemble_on_device, options.compile,
                int(reserved + (frames_per_chunk - 1) * 3 * frame_bytes), progress, cancel, runner)


def _precision(model: ModelDescriptor, device: torch.device, precision: str) -> torch.dtype:
    if precision == "auto":
        if model.module in FP32_ONLY:  # it failed in reduced precision before
            return torch.float32
        return inference_dtype(device, model.supports_fp16, model.supports_bf16)
    dtype = PRECISIONS[precision]
    supported = {torch.float16: model.supports_fp16, torch.bfloat16: model.supports_bf16}
    if not supported.get(dtype, True):
        raise RealESRError(f"this model does not support {precision}")
    return dtype


def _window_bytes(model: ModelDescriptor, plan: Plan, size: tuple[int, int], dtype: torch.dtype) -> float:
    """Bytes of one forward's window at its peak (a window is clamped to the border-padded image)."""
    rows, cols = (min(plan.tile + 2 * plan.overlap, length + 2 * plan.border) for length in size)
    return rows * cols * _window_bytes_per_pixel(model, dtype)


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


def passes_needed(size: tuple[int, int], target: tuple[int, int], scale: int) -> int:
    """Model passes for a target size: one, resized to the target (as Real-ESRGAN's --outscale does), unless
    what is left after a pass is more than MAX_RESIZE_UP: another pass pays only where a resize would stretch
    the result visibly (a x4 model: one pass up to x6, two up to x24)."""
    needed = max(target[0] / size[0], target[1] / size[1])
    passes = 1
    while scale > 1 and needed / scale**passes > MAX_RESIZE_UP + 1e-9:
        passes += 1
    if passes > MAX_PASSES:
        raise RealESRError(f"x{needed:.3g} would take {passes} passes of a x{scale} model; at most {MAX_PASSES}")
    return passes


def _resize(image: torch.Tensor, target: tuple[int, int]) -> torch.Tensor:
    if tuple(image.shape[-2:]) == target:
        return image
    antialias = target[0] < image.shape[-2] or target[1] < image.shape[-1]
    return F.interpolate(image, size=target, mode="bicubic", align_corners=False, antialias=antialias)


def _planned_tiles(shape: torch.Size, model: ModelDescriptor, plan: Plan) -> int:
    batch, _, height, width = shape
    total = 0
    for _ in range(plan.passes):
        total += batch * _tile_count(height, width, plan.tile, model, plan)
        height, width = height * model.scale, width * model.scale
    return total


def _tile_count(height: int, width: int, tile: int, model: ModelDescriptor, plan: Plan) -> int:
    grid, _pads = _grid(height, width, tile, model, plan)
    return len(grid.tiles(0))


def _through_model(model: ModelDescriptor, image: torch.Tensor, plan: Plan, stats: TileStats,
                   destination: torch.Tensor | None, between: Callable[[], None] | None) -> tuple[torch.Tensor, bool]:
    """The frames through the network `plan.passes` times; (result, whether it is already clipped)."""
    out_channels = image.shape[1]
    clipped = False
    for index in range(plan.passes):
        last = index == plan.passes - 1
        output, clipped = _tiled(model, ch.to_model_channels(image, model.in_channels), plan, stats,
                                 destination if last else None, between)
        image = ch.from_model_channels(output, out_channels)
    return image, clipped


def _tiled(model: ModelDescriptor, frames: torch.Tensor, plan: Plan, stats: TileStats,
           destination: torch.Tensor | None, between: Callable[[], None] | None) -> tuple[torch.Tensor, bool]:
    """Frames of one size through the network in tiles, into `destination` (final: clipped as written where a
    frame is one tile) or a new buffer on the device that assembles them; (output, whether it is clipped). A tile
    size that ran out of memory on an earlier chunk or pass is not tried again (the progress total follows)."""
    count, _, height, width = frames.shape
    scale = model.scale
    grid, pads = _grid(height, width, plan.tile, model, plan)
    tiles = len(grid.tiles(0))
    if plan.tile != plan.first_tile:
        stats.planned += count * (tiles - _tile_count(height, width, plan.first_tile, model, plan))
    output = destination
    if output is None:
        on = plan.device if plan.assemble_on_device else plan.output_device
        output = torch.empty(count, model.out_channels, height * scale, width * scale, device=on,
                             memory_format=torch.channels_last)
    if tiles > 1:
        output.zero_()  # the tiles' cross-fades add up
    job = FrameJob(grid, pad_reflect(frames.to(plan.device), *pads), output, scale, plan.tiles_per_forward,
                   plan.progress, plan.cancel, after_forward=between, clamp=destination is not None,
                   pad_batches=plan.fixed_window)
    stats.finest_level = 0
    plan.tiles_per_forward = run_tiles(job, plan.runner, stats)
    if stats.finest_level > 0:
        plan.tile = min(plan.tile, grid.max_core(stats.finest_level))
    return output, destination is not None and tiles == 1 and stats.finest_level == 0


def _grid(height: int, width: int, tile: int, model: ModelDescriptor, plan: Plan) -> tuple[Grid, tuple[int, ...]]:
    return make_grid(height, width, tile, plan.overlap, plan.blend, plan.border, model.size_multiple,
                     fixed_window=plan.fixed_window)


def _compile(module: nn.Module) -> nn.Module:
    """torch.compile'd for this call only (the compiled copy and the weights it holds go with the call; dynamo's
    code cache keeps the compiled graph for the next call of the same window shape)."""
    return torch.compile(module, dynamic=False)
