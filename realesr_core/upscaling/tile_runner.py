"""Running one frame's tiles through the network and assembling the output, cheaply for the host.

Per batch of tiles there is one host-device synchronisation at most (the NaN / black check of reduced precision,
one reduction and one `.tolist()`); the cross-fade weights are applied on the compute device; when the output lives
on the host, results go into reused pinned buffers with non-blocking copies and are added on the host while the
next batch runs on the device (double buffering). A region that only one tile covers is copied, not added.
"""

from __future__ import annotations

import contextlib
import copy
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import UpscaleCancelled, UpscaleOutOfMemory
from .device import is_out_of_memory, release_cached
from .tiling import Grid, Tile

# Consecutive tiles that came out NaN, infinite or black in reduced precision before the rest of the call runs in
# fp32 (a card whose fp16 overflows on this model would otherwise run every tile twice).
RERUNS_BEFORE_FP32 = 2


@dataclass
class TileStats:
    planned: int = 0
    tiles: int = 0
    fp32_reruns: int = 0
    oom_splits: int = 0
    max_core: int = 0
    finest_level: int = 0  # the finest grid level the last frame needed (above 0 after running out of memory)
    reruns_in_a_row: int = 0


class Runner:
    """The network on the compute device in the precision asked for, plus its fp32 form for re-runs.

    The caller's module is never changed: reduced precision runs a cast copy of the weights (as the official
    `.half()` does, without re-casting every weight on every forward as autocast would), and a module whose
    weights sit elsewhere runs as a copy on the device.
    """

    def __init__(self, module: nn.Module, device: torch.device, dtype: torch.dtype, channels_last: bool,
                 compile_module: Callable[[nn.Module], nn.Module] | None = None, allow_tf32: bool = True) -> None:
        self.source, self.device, self.dtype, self.channels_last = module, device, dtype, channels_last
        self.allow_tf32 = allow_tf32
        self._compile = compile_module
        self._modules: dict[torch.dtype, nn.Module] = {}

    def module(self, dtype: torch.dtype) -> nn.Module:
        if dtype not in self._modules:
            parameter = next(self.source.parameters(), None)
            placed = parameter is None or (parameter.device == self.device and parameter.dtype == dtype)
            module = self.source if placed else copy.deepcopy(self.source).to(self.device, dtype)
            self._modules[dtype] = self._compile(module) if self._compile is not None else module
        return self._modules[dtype]

    def forward(self, inputs: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        inputs = inputs.to(dtype)
        if self.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), _cuda_settings(inputs.device, self.allow_tf32):
            return self.module(dtype)(inputs)


@contextlib.contextmanager
def _cuda_settings(device: torch.device, allow_tf32: bool) -> Iterator[None]:
    """cuDNN picks its fastest algorithms for the tile shape (all tiles of a level share one), and TF32 is switched
    off for "fp32-strict" (PyTorch lets cuDNN convolutions use it by default); the global flags are restored."""
    if device.type != "cuda":
        yield
        return
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    before = (cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32)
    cudnn.benchmark = True
    if not allow_tf32:
        cudnn.allow_tf32 = matmul.allow_tf32 = False
    try:
        yield
    finally:
        cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32 = before


@dataclass
class FrameJob:
    """Tiles of one frame: the grid, the border-padded input on the device, the output to fill, and the options.

    A band of a frame too large for memory (one row of tiles at a time) names its `tiles`, the padded-input row its
    `padded` starts at (`input_row`) and the output row its `output` starts at (`output_row`).
    """

    grid: Grid
    padded: torch.Tensor
    output: torch.Tensor
    scale: int
    tiles_per_forward: int
    progress: Callable[[int, int], None] | None = None
    cancel: Callable[[], bool] | None = None
    tiles: list[Tile] | None = None  # None: every tile of the grid
    input_row: int = 0
    output_row: int = 0
    ramps: dict[tuple[str, int, int], torch.Tensor] = field(default_factory=dict)


def run_tiles(job: FrameJob, runner: Runner, stats: TileStats) -> int:
    """Runs every tile of the frame into `job.output`; returns the tiles per forward that fitted in memory.

    Out of memory: fewer tiles per forward first (same tiles, same output), then the tiles still to run are split
    into the next level's tiles, whose boundaries include the current ones, so finished tiles stay valid.
    """
    queue: deque[Tile] = deque(job.grid.tiles(0) if job.tiles is None else job.tiles)
    staging = _Staging(job)
    tiles_per_forward = job.tiles_per_forward
    while queue:
        if job.cancel is not None and job.cancel():
            raise UpscaleCancelled("upscale cancelled")
        level = queue[0].level
        batch = [queue.popleft()]
        while queue and len(batch) < tiles_per_forward and queue[0].level == level:
            batch.append(queue.popleft())
        out_of_memory = False
        try:
            inputs = torch.cat([_window_of(job, tile) for tile in batch])
            outputs = runner.forward(inputs, runner.dtype)  # queued on the device
            staging.finish()  # the previous batch's host work overlaps this forward
            results = _checked(outputs, inputs, runner, stats)
        except Exception as error:  # noqa: BLE001 - only out-of-memory is handled; everything else re-raised
            if not is_out_of_memory(error):
                raise
            out_of_memory = True
        if out_of_memory:  # outside the except block, so the failed forward's tensors are freed first
            release_cached(runner.device)
            tiles_per_forward = _recover_from_oom(job.grid, batch, queue, tiles_per_forward, runner, stats)
            continue
        staging.start(batch, results)
        for tile in batch:
            stats.max_core = max(stats.max_core, job.grid.max_core(tile.level))
            stats.finest_level = max(stats.finest_level, tile.level)
            stats.tiles += 1
            if job.progress is not None:
                job.progress(stats.tiles, stats.planned)
    staging.finish()
    return tiles_per_forward


def _window_of(job: FrameJob, tile: Tile) -> torch.Tensor:
    (y0, y1), (x0, x1) = job.grid.rows.window(tile.level, tile.row), job.grid.cols.window(tile.level, tile.col)
    return job.padded[..., y0 - job.input_row : y1 - job.input_row, x0:x1]


def _checked(outputs: torch.Tensor, inputs: torch.Tensor, runner: Runner, stats: TileStats) -> torch.Tensor:
    """fp32 outputs; tiles that came out NaN, infinite or black (where the input is not) in reduced precision are
    re-run in fp32, found with one reduction and one read for the whole batch (amax propagates NaN and Inf)."""
    if runner.dtype == torch.float32:
        return outputs.float()
    peaks = torch.stack([outputs.abs().amax(dim=(1, 2, 3)).float(), inputs.amax(dim=(1, 2, 3)).float()])
    results = outputs.float()
    for index, (out_peak, in_peak) in enumerate(zip(*peaks.tolist(), strict=True)):
        failed = not out_peak < float("inf") or (out_peak < 1.0 / 255 and in_peak > 4.0 / 255)
        stats.reruns_in_a_row = stats.reruns_in_a_row + 1 if failed else 0
        if failed:
            results[index] = runner.forward(inputs[index : index + 1], torch.float32)[0].float()
            stats.fp32_reruns += 1
    if stats.reruns_in_a_row >= RERUNS_BEFORE_FP32:
        runner.dtype = torch.float32
    return results


def _recover_from_oom(grid: Grid, batch: list[Tile], queue: deque[Tile], tiles_per_forward: int, runner: Runner,
                      stats: TileStats) -> int:
    queue.extendleft(reversed(batch))
    if len(batch) > 1:
        return max(1, len(batch) // 2)
    tile = batch[0]
    if not grid.can_split(tile):
        raise UpscaleOutOfMemory(f"out of memory on {runner.device} even with tiles of {grid.max_core(tile.level)} px")
    remaining = list(queue)
    queue.clear()
    for pending in remaining:
        if pending.level == tile.level:
            children = grid.children(pending)
            queue.extend(children)
            stats.oom_splits += 1
            stats.planned += len(children) - 1
        else:
            queue.append(pending)
    return tiles_per_forward


class _Staging:
    """Weighted tile results into the output: on the device directly when the output is there; else through a
    reused pinned host buffer, copied without blocking and added on the host while the next batch runs."""

    def __init__(self, job: FrameJob) -> None:
        self.job = job
        self.device = job.padded.device
        self.to_host = job.output.device != self.device
        self.pin = self.to_host and self.device.type == "cuda"
        self.buffer: torch.Tensor | None = None
        self.pending: list[tuple[torch.Tensor, torch.Tensor, bool]] = []
        self.done: torch.cuda.Event | None = None

    def start(self, batch: list[Tile], results: torch.Tensor) -> None:
        weighted = [self._weighted(tile, results[i]) for i, tile in enumerate(batch)]
        if not self.to_host:
            for target, kept, alone in weighted:
                _write(target, kept, alone)
            return
        total = sum(kept.numel() for _, kept, _ in weighted)
        if self.buffer is None or self.buffer.numel() < total:
            self.buffer = torch.empty(total, dtype=torch.float32, pin_memory=self.pin)
        buffer, offset = self.buffer, 0
        for target, kept, alone in weighted:
            staged = buffer[offset : offset + kept.numel()].view(kept.shape)
            staged.copy_(kept, non_blocking=self.pin)
            self.pending.append((target, staged, alone))
            offset += kept.numel()
        if self.pin:
            self.done = torch.cuda.Event()
            self.done.record()

    def finish(self) -> None:
        if self.done is not None:
            self.done.synchronize()
            self.done = None
        for target, staged, alone in self.pending:
            _write(target, staged, alone)
        self.pending.clear()

    def _weighted(self, tile: Tile, result: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """(output region, the tile's kept result weighted on the device, whether no other tile writes there)."""
        grid, scale = self.job.grid, self.job.scale
        rows, cols = grid.rows, grid.cols
        (ky0, ky1), (kx0, kx1) = rows.kept(tile.level, tile.row), cols.kept(tile.level, tile.col)
        wy0, wx0 = rows.window(tile.level, tile.row)[0], cols.window(tile.level, tile.col)[0]
        oy, ox = (ky0 + rows.pad_before - wy0) * scale, (kx0 + cols.pad_before - wx0) * scale
        kept = result[:, oy : oy + (ky1 - ky0) * scale, ox : ox + (kx1 - kx0) * scale]
        top = self.job.output_row
        target = self.job.output[0, :, ky0 * scale - top : ky1 * scale - top, kx0 * scale : kx1 * scale]
        alone = rows.count(tile.level) == 1 and cols.count(tile.level) == 1
        if not alone:
            kept = kept * self._ramp("rows", tile.level, tile.row)[:, None] * self._ramp("cols", tile.level, tile.col)
        return target, kept, alone

    def _ramp(self, axis: str, level: int, index: int) -> torch.Tensor:
        key = (axis, level, index)
        if key not in self.job.ramps:
            grid_axis = self.job.grid.rows if axis == "rows" else self.job.grid.cols
            self.job.ramps[key] = grid_axis.ramp(level, index, self.job.scale, self.device)
        return self.job.ramps[key]


def _write(target: torch.Tensor, kept: torch.Tensor, alone: bool) -> None:
    if alone:
        target.copy_(kept)
    else:
        target.add_(kept)
