"""Upscaling an image larger than memory: one row of tiles at a time, finished output rows handed on as they are done.

The grid, the windows, the cross-fades and the order of every addition are those of the in-memory path, so the rows
are the ones `upscale` would give; only the input rows one tile row needs and the output rows still being blended
are held.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch

from ..errors import ImageError
from ..image_tensors import pad_reflect
from ..models.descriptor import describe
from . import channels as ch
from .engine import ProgressCallback, make_plan, with_values
from .options import UpscaleOptions
from .tile_runner import FrameJob, TileStats, run_tiles
from .tiling import Tile, make_grid

RowReader = Callable[[int, int], torch.Tensor]  # (first row, end row) -> [1, C, rows, W] float in 0..1
# Float32 output rows held for one row of tiles: bounds the automatic tile size, since a tile row's output is as
# wide as the whole result (a 32768-pixel-wide x4 RGB result holds 1.5 MB of output per input row).
BAND_BYTES = 384 << 20


def upscale_rows(model: Any, read_rows: RowReader, height: int, width: int, channels: int,
                 options: UpscaleOptions | None = None, *, progress: ProgressCallback | None = None,
                 cancel: Callable[[], bool] | None = None,
                 **option_values: Any) -> Iterator[tuple[int, torch.Tensor]]:
    """Yields (first output row, rows `[1, C, n, width * scale]` in 0..1) from top to bottom, at the model's scale.

    `read_rows(a, b)` gives input rows a..b; each is asked for once per tile row (with the tiles' context).
    Transparency and output sizes other than the model's scale need the whole image: `upscale`.
    """
    rows = TileRows(model, height, width, channels, with_values(options or UpscaleOptions(), option_values),
                    progress=progress, cancel=cancel)
    carried: torch.Tensor | None = None  # output rows the previous tile row left to be blended with this one
    try:
        for row in range(rows.count):
            kept_top, _kept_bottom = rows.kept(row)
            output = rows.upscale(read_rows, row, carried)
            done = rows.finished_before(row)
            carried = output[:, :, done - kept_top :].clone()
            # in place where the image has the model's channels: the finished rows take no further additions
            yield kept_top, rows.finish(output[:, :, : done - kept_top])
            del output  # the next row's buffer is made after this one is gone (the consumer has let go of its rows)
    finally:
        rows.plan.runner.close()


def band_tile(model: Any, width: int) -> int:
    """The largest tile whose row of output, as wide as the whole result, stays within BAND_BYTES."""
    model = describe(model)
    return max(64, BAND_BYTES // (width * model.scale**2 * model.out_channels * 4))


class TileRows:
    """The tile grid of an image upscaled a row of tiles at a time, and each row's output. Rows can be upscaled
    anywhere and in any order (a Ray worker each): a row's output, added to the rows its neighbours leave to be
    blended, is the stretch of the whole image's output it keeps."""

    def __init__(self, model: Any, height: int, width: int, channels: int, options: UpscaleOptions, *,
                 progress: ProgressCallback | None = None, cancel: Callable[[], bool] | None = None) -> None:
        if options.outscale is not None or options.width or options.height:
            raise ImageError("streaming upscales at the model's scale only; resize the result afterwards")
        if channels not in (1, 3):
            raise ImageError(f"streaming takes gray or RGB images (no transparency), got {channels} channels")
        self.model = model = describe(model)
        self.height, self.width, self.channels, self.scale = height, width, channels, model.scale
        self.plan = plan = make_plan(model, torch.empty(1, channels, height, width, device="meta"), options, progress,
                                     cancel)
        if options.tile == 0:
            plan.tile = min(plan.tile, band_tile(model, width))
        self.grid, self.padding = make_grid(height, width, plan.tile, plan.overlap, plan.blend, plan.border,
                                            model.size_multiple)
        self.count = self.grid.rows.count(0)
        self.stats = TileStats(planned=len(self.grid.tiles(0)))

    def kept(self, row: int) -> tuple[int, int]:
        """The output rows tile row `row` writes to (its cores, with the blend bands)."""
        top, bottom = self.grid.rows.kept(0, row)
        return top * self.scale, bottom * self.scale

    def finished_before(self, row: int) -> int:
        """The first output row that the row after `row` adds to (the image's height for the last row)."""
        return self.kept(row + 1)[0] if row + 1 < self.count else self.height * self.scale

    def upscale(self, read_rows: RowReader, row: int, carried: torch.Tensor | None = None) -> torch.Tensor:
        """Tile row `row`'s output `[1, model channels, kept rows, width * scale]`, float, added onto `carried` (the
        rows the previous tile row left to blend, or zeros)."""
        plan, top, _bottom, left, right = self.plan, *self.padding
        window_top, window_bottom = self.grid.rows.window(0, row)
        first, last = max(window_top - top, 0), min(window_bottom - top, self.height)
        band = pad_reflect(read_rows(first, last).to(plan.device).float(), max(top - window_top, 0),
                           max(window_bottom - top - self.height, 0), left, right)
        kept_top, kept_bottom = self.kept(row)
        output = torch.empty(1, self.model.out_channels, kept_bottom - kept_top, self.width * self.scale,
                             device=plan.output_device, memory_format=torch.channels_last).zero_()
        if carried is not None:
            output[:, :, : carried.shape[2]] = carried
        job = FrameJob(self.grid, ch.to_model_channels(band, self.model.in_channels), output, self.scale,
                       plan.tiles_per_forward, plan.progress, plan.cancel,
                       tiles=[Tile(0, row, col) for col in range(self.grid.cols.count(0))],
                       input_row=window_top, output_row=kept_top)
        plan.tiles_per_forward = run_tiles(job, plan.runner, self.stats)
        return output

    def finish(self, rows: torch.Tensor) -> torch.Tensor:
        """Finished output rows in the image's channels, clipped to 0..1 (in place where the channels match)."""
        return ch.from_model_channels(rows, self.channels).clamp_(0, 1)
