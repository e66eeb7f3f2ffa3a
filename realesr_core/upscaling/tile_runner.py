"""Running the tiles of one or more frames through the network and assembling their output, cheaply for the host.

Per batch of tiles there is one host-device synchronisation at most (the NaN / black check of reduced precision,
one reduction and one `.tolist()`), and host work queued by the caller (`FrameJob.after_forward`) runs while each
forward is on the device. The cross-fade weights are applied on the compute device. The output normally lives on the
compute device too (the engine moves finished frames off it); only a frame too large for the device's memory is
assembled on the host, through reused pinned buffers with non-blocking copies added on the host while the next batch
runs. A region that only one tile covers is copied, not added.
"""

from __future__ import annotations

import contextlib
import copy
import threading
import time
import warnings
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

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
                 compile_module: Callable[[nn.Module], nn.Module] | None = None, allow_tf32: bool = True,
                 fp32_output_layer: bool = False, cancel: Callable[[], bool] | None = None) -> None:
        self.source, self.device, self.dtype, self.channels_last = module, device, dtype, channels_last
        self.allow_tf32 = allow_tf32
        self.fp32_output_layer = fp32_output_layer
        self.cancel = cancel
        self._compile = compile_module
        self._modules: dict[torch.dtype, nn.Module] = {}
        self._hooks: list[torch.utils.hooks.RemovableHandle] = []
        self._taken: list[tuple[Any, Any, nn.Module]] = []  # cast copies this runner holds, given back at `close`

    def module(self, dtype: torch.dtype) -> nn.Module:
        if dtype not in self._modules:
            parameter = next(self.source.parameters(), None)
            placed = parameter is None or (parameter.device == self.device and parameter.dtype == dtype)
            module = self.source
            if not placed:
                fp32_output_layer = dtype != torch.float32 and self.fp32_output_layer
                kind = (self.device, dtype, fp32_output_layer)
                module, state = CAST_COPIES.take(self.source, kind) if self.device.type == "cpu" else (None, ())
                if module is None:
                    module = _cast_copy(self.source, self.device, dtype, self.cancel)
                    if fp32_output_layer:
                        _output_layer_in_fp32(module)
                self._taken.append((kind, state, module))
            if self.cancel is not None and self._compile is None:  # hooks would break a compiled graph
                self._hooks += _cancel_checks(module, self.cancel)
            self._modules[dtype] = self._compile(module) if self._compile is not None else module
        return self._modules[dtype]

    def close(self) -> None:
        """Removes the cancel checks from the modules (the caller's own module among them) and keeps the cast copies
        for the next call with the same module."""
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()
        for kind, state, module in self._taken:
            if self.device.type == "cpu":
                CAST_COPIES.give_back(self.source, kind, state, module)
        self._taken.clear()
        self._modules.clear()

    def fall_back_to_fp32(self, error: Exception) -> None:
        """A forward in reduced precision raised (an architecture that mixes dtypes inside): the rest of the call,
        and later calls with this module, run in fp32."""
        warnings.warn(f"{type(self.source).__name__} failed in {str(self.dtype).removeprefix('torch.')} "
                      f"({type(error).__name__}: {str(error)[:120]}); running it in fp32 from now on", stacklevel=4)
        FP32_ONLY.add(self.source)
        self.dtype = torch.float32

    def forward(self, inputs: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        inputs = inputs.to(dtype)
        if self.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), _cuda_settings(inputs.device, self.allow_tf32):
            return self.module(dtype)(inputs)


CANCEL_CHECK_SECONDS = 0.05  # how often a forward asks whether to stop


class _CancelCheck:
    """Asks `cancel()` when called, at most every CANCEL_CHECK_SECONDS, and stops the upscale when it says so."""

    def __init__(self, cancel: Callable[[], bool] | None) -> None:
        self.cancel = cancel
        self.last = time.monotonic()

    def __call__(self, *_hook_arguments: Any) -> None:
        now = time.monotonic()
        if self.cancel is not None and now - self.last >= CANCEL_CHECK_SECONDS:
            self.last = now
            if self.cancel():
                raise UpscaleCancelled("upscale cancelled")


def _cancel_checks(module: nn.Module, cancel: Callable[[], bool]) -> list[torch.utils.hooks.RemovableHandle]:
    """Asks `cancel()` before the layers of a forward (at most every CANCEL_CHECK_SECONDS), so that a Cancel stops
    even a whole-image forward of a minute on a CPU within a layer, not at its end."""
    check = _CancelCheck(cancel)
    layers = [m for m in module.modules() if next(m.children(), None) is None and next(m.parameters(), None) is not None]
    return [layer.register_forward_pre_hook(check) for layer in layers]


def _cast_copy(module: nn.Module, device: torch.device, dtype: torch.dtype,
               cancel: Callable[[], bool] | None) -> nn.Module:
    """A copy of `module` on `device` with its floating-point weights and buffers in `dtype`, cast one tensor at a
    time with `cancel()` asked in between: copying the fp32 weights whole and then casting them took 2.5 s for x4plus
    on a busy 2-core CPU with no point at which Cancel could stop it. Each tensor is read once (the copy is the cast)."""
    check = _CancelCheck(cancel)
    copies: dict[int, Any] = {}
    for tensor in [*module.parameters(), *module.buffers()]:
        check()
        cast = tensor.detach().to(device, dtype if tensor.is_floating_point() else tensor.dtype, copy=True)
        copies[id(tensor)] = nn.Parameter(cast, tensor.requires_grad) if isinstance(tensor, nn.Parameter) else cast
    return copy.deepcopy(module, copies)  # the module's structure, with the cast tensors in place of the originals


class CastCopies:
    """The last cast copy made of each module, kept (weakly: it goes with its module) for the next call: an archive of
    small images upscaled one call each spent 2 of every 7 ms copying the weights again (realesr-animevideov3, one CPU
    thread). A copy is taken out while a call runs it (a concurrent call makes its own, and the cancel checks of one
    call never sit on another's), and is used again only while the module's tensors are the same ones, unchanged:
    an in-place update (an optimizer step, `load_state_dict`) or a move to another device makes a new copy. One copy
    per module at most, and only of copies on the CPU: on a GPU the copy is working memory of the call, which
    `memory_required` tells a host such as ComfyUI to make room for, and which the host expects back afterwards."""

    def __init__(self) -> None:
        self._copies: weakref.WeakKeyDictionary[nn.Module, tuple[Any, tuple[Any, ...], nn.Module]] = (
            weakref.WeakKeyDictionary())
        self._lock = threading.Lock()

    def take(self, source: nn.Module, kind: Any) -> tuple[nn.Module | None, tuple[Any, ...]]:
        """The copy of `source` made for `kind` (device, dtype, output layer in fp32) while `source` was as it is
        now (None if there is none), taken out until `give_back`; and the state `source` is in now."""
        state = _state(source)
        with self._lock:
            kept = self._copies.pop(source, None)
        if kept is None or kept[0] != kind or kept[1] != state:
            return None, state
        return kept[2], state

    def give_back(self, source: nn.Module, kind: Any, state: tuple[Any, ...], module: nn.Module) -> None:
        """Keeps `module`, a copy of `source` as it was in `state` (when it was taken: a change during the call makes
        the next call copy again)."""
        with self._lock:
            self._copies[source] = (kind, state, module)


def _state(module: nn.Module) -> tuple[Any, ...]:
    """What says that a module's weights are the ones a copy was made of: each tensor's identity, storage and
    version counter (bumped by every in-place change)."""
    return tuple((id(tensor), tensor.data_ptr(), tensor._version, tensor.device)
                 for tensor in (*module.parameters(), *module.buffers()))


CAST_COPIES = CastCopies()


# Modules whose forward failed in reduced precision: `auto` picks fp32 for them from then on.
FP32_ONLY: weakref.WeakSet[nn.Module] = weakref.WeakSet()


def _output_layer_in_fp32(module: nn.Module) -> None:
    """Our networks name their last layer (`output_layer`); run in fp32, it keeps the result's low bits (fp16 keeps
    ~11 significant bits, bf16 8: a 16-bit image, or a bf16 8-bit one, would be quantised by it)."""
    layer = module.output_layer() if hasattr(module, "output_layer") else None
    if layer is None:
        return
    layer.float()
    layer.register_forward_pre_hook(lambda _layer, args: tuple(a.float() for a in args))


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
    """Tiles of one or more frames of one size: the grid, the border-padded input `[frames, C, H, W]` on the
    device, the output to fill (zeros wherever tiles are added; any content where each frame is one tile), and the
    options.

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
    tiles: list[Tile] | None = None  # None: every tile of the grid, for every frame
    input_row: int = 0
    output_row: int = 0
    after_forward: Callable[[], None] | None = None  # host work to do while a forward runs on the device
    clamp: bool = False  # the output is final: a frame that is one tile is clipped to 0..1 as it is written
    pad_batches: bool = False  # every forward gets tiles_per_forward windows (one shape for a compiled network)
    ramps: dict[tuple[str, int, int], torch.Tensor] = field(default_factory=dict)


def run_tiles(job: FrameJob, runner: Runner, stats: TileStats) -> int:
    """Runs every tile of the frame into `job.output`; returns the tiles per forward that fitted in memory.

    Out of memory: fewer tiles per forward first (same tiles, same output), then the tiles still to run are split
    into the next level's tiles, whose boundaries include the current ones, so finished tiles stay valid.
    """
    queue: deque[Tile] = deque(job.grid.tiles(0, job.padded.shape[0]) if job.tiles is None else job.tiles)
    staging = _Staging(job)
    tiles_per_forward = job.tiles_per_forward
    while queue:
        if job.cancel is not None and job.cancel():
            raise UpscaleCancelled("upscale cancelled")
        level = queue[0].level
        batch = [queue.popleft()]
        while queue and len(batch) < tiles_per_forward and queue[0].level == level:
            batch.append(queue.popleft())
        failure = None
        try:
            windows = [_window_of(job, tile) for tile in batch]
            if job.pad_batches:
                windows += windows[-1:] * (tiles_per_forward - len(windows))
            inputs = torch.cat(windows)
            outputs = runner.forward(inputs, runner.dtype)[: len(batch)]  # queued on the device
            staging.finish()  # the previous batch's host work overlaps this forward
            if job.after_forward is not None:
                job.after_forward()
            results = _checked(outputs, inputs, runner, stats)
        except UpscaleCancelled:
            raise
        except Exception as error:  # noqa: BLE001 - out-of-memory and reduced-precision failures handled; else re-raised
            if is_out_of_memory(error):
                failure = "memory"
            elif runner.dtype != torch.float32:
                failure = "precision"
                runner.fall_back_to_fp32(error)
            else:
                raise
        if failure == "memory":  # outside the except block, so the failed forward's tensors are freed first
            release_cached(runner.device)
            tiles_per_forward = _recover_from_oom(job.grid, batch, queue, tiles_per_forward, runner, stats)
            continue
        if failure == "precision":
            queue.extendleft(reversed(batch))
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
    return job.padded[tile.frame : tile.frame + 1, :, y0 - job.input_row : y1 - job.input_row, x0:x1]


def _checked(outputs: torch.Tensor, inputs: torch.Tensor, runner: Runner, stats: TileStats) -> torch.Tensor:
    """fp32 outputs; tiles that came out NaN, infinite or black (where the input is not) in reduced precision are
    re-run in fp32, found with one reduction and one read for the whole batch (amax propagates NaN and Inf)."""
    if runner.dtype == torch.float32:
        return outputs.float()
    peaks = torch.stack([outputs.abs().amax(dim=(1, 2, 3)).float(), inputs.amax(dim=(1, 2, 3)).float()])
    results = outputs.float()
    failed = [not out_peak < float("inf") or (out_peak < 1.0 / 255 and in_peak > 4.0 / 255)
              for out_peak, in_peak in zip(*peaks.tolist(), strict=True)]
    for index in (i for i, bad in enumerate(failed) if bad):
        results[index] = runner.forward(inputs[index : index + 1], torch.float32)[0].float()
    # Counted once every re-run has succeeded: an out-of-memory re-run sends the whole batch round again.
    stats.fp32_reruns += sum(failed)
    for bad in failed:
        stats.reruns_in_a_row = stats.reruns_in_a_row + 1 if bad else 0
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
                _write(target, kept, alone, self.job.clamp)
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
            # the compute device's stream: the current device's would not order these copies when they differ
            self.done.record(torch.cuda.current_stream(self.device))

    def finish(self) -> None:
        if self.done is not None:
            self.done.synchronize()
            self.done = None
        for target, staged, alone in self.pending:
            _write(target, staged, alone, self.job.clamp)
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
        target = self.job.output[tile.frame, :, ky0 * scale - top : ky1 * scale - top, kx0 * scale : kx1 * scale]
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


def _write(target: torch.Tensor, kept: torch.Tensor, alone: bool, clamp: bool) -> None:
    if alone and clamp:
        torch.clamp(kept, 0, 1, out=target)  # one pass over the output: copied and clipped together
    elif alone:
        target.copy_(kept)
    else:
        target.add_(kept)
