"""Images whose upscaled result does not fit in memory: the output streams, tile row by tile row, into a tiled TIFF.

The input is held as stored (one byte a sample for 8-bit; an 8192 x 8192 RGB scan is 200 MB), the output never: only
the rows still being blended and one strip of output tiles are in memory, whatever the size. GeoTIFF tags follow,
with the pixel size divided by the scale.
"""

from __future__ import annotations

import ctypes
import functools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from einops import rearrange

from ..errors import ImageError
from ..files import WorkFolder, write_atomically
from ..models.descriptor import describe
from ..upscaling.channels import from_model_channels
from ..upscaling.options import UpscaleOptions
from ..upscaling.streaming import TileRows, band_tile, upscale_rows
from .images import (
    ImageMetadata,
    LoadedImage,
    detect_format,
    image_shape,
    read_image,
    tiff_metadata,
    to_pixels,
    to_tensor,
    write_tiff,
)
from .termination import terminating_cleanly

OUTPUT_TILE = 256
CONVERT_ROWS = 64  # output rows turned into stored pixels at a time (a small float copy, whatever the width)
# The in-memory path holds the float32 result and a few working copies of it: stream once that would pass this
# share of the memory available.
IN_MEMORY_SHARE = 0.25
# Largest tile of an image whose rows of tiles are spread over workers when none is asked for (smaller where a row's
# output would pass BAND_BYTES): the planner cannot see the workers' memory, and every worker must make the same grid.
SPREAD_TILE = 512


def output_fits_in_memory(height: int, width: int, channels: int, scale: int, available: int) -> bool:
    return height * width * channels * scale * scale * 4 * 3 <= available * IN_MEMORY_SHARE


class TiffRows:
    """Rows of a tiled or striped TIFF, decoding only the tiles or strips they touch: `rows[a:b]` is `[b - a, W, C]`
    as stored. For gray / RGB (+ alpha) pages of 8- or 16-bit samples, interleaved, upright."""

    def __init__(self, path: Path) -> None:
        import tifffile

        self.file = tifffile.TiffFile(path)
        page = self.page = self.file.pages.first
        self.shape = (page.imagelength, page.imagewidth, page.samplesperpixel)
        self.dtype = page.dtype
        self.chunk_rows, self.chunks_across = page.chunks[0], page.chunked[1]

    @staticmethod
    def suits(path: Path) -> bool:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            return (page.photometric in (tifffile.PHOTOMETRIC.MINISBLACK, tifffile.PHOTOMETRIC.RGB)
                    and page.planarconfig == tifffile.PLANARCONFIG.CONTIG and page.dtype in (np.uint8, np.uint16)
                    and int(page.tags.valueof("Orientation") or 1) == 1 and page.samplesperpixel in (1, 2, 3, 4)
                    and len(page.dataoffsets) == page.chunked[0] * page.chunked[1])

    def __getitem__(self, rows: slice) -> np.ndarray:
        first, end, _ = rows.indices(self.shape[0])
        height, width, samples = self.shape
        out = np.empty((end - first, width, samples), self.dtype)
        handle, decode = self.file.filehandle, self.page.decode
        for chunk_row in range(first // self.chunk_rows, -(-end // self.chunk_rows)):
            for column in range(self.chunks_across):
                index = chunk_row * self.chunks_across + column
                handle.seek(self.page.dataoffsets[index])
                segment, (_, _, top, left, _), _shape = decode(handle.read(self.page.databytecounts[index]), index)
                segment = segment.reshape(segment.shape[-3:])
                lo, hi = max(first, top), min(end, top + segment.shape[0], height)
                right = min(left + segment.shape[1], width)
                out[lo - first : hi - first, left:right] = segment[lo - top : hi - top, : right - left]
        return out

    def close(self) -> None:
        self.file.close()


def open_for_streaming(path: str | os.PathLike, max_pixels: int) -> LoadedImage:
    """The image to stream: a TIFF that allows it is read by windows (only the rows a tile row needs are decoded);
    anything else is held as stored."""
    path = Path(path)
    image_shape(path, max_pixels)
    if detect_format(path) == "tiff" and TiffRows.suits(path):
        rows = TiffRows(path)
        metadata, _orientation = tiff_metadata(rows.page)
        return LoadedImage(rows, 16 if rows.dtype == np.uint16 else 8, "tiff", metadata)
    return read_image(path, max_pixels)


def upscale_to_tiff(model: Any, loaded: LoadedImage, target: str | os.PathLike, options: UpscaleOptions | None = None,
                    *, bit_depth: int | None = None, progress: Callable[[int, int], None] | None = None,
                    cancel: Callable[[], bool] | None = None) -> Path:
    """Upscales `loaded` at the model's scale straight into a tiled (Big)TIFF at `target`."""
    target = Path(target)
    if target.suffix.lower() not in (".tif", ".tiff"):
        raise ImageError(f"{target.name}: an image too large for memory is written as a tiled TIFF; name the output "
                         f".tif (the format can hold any size and is written piece by piece)")
    pixels = loaded.pixels
    height, width, channels = pixels.shape
    bits = bit_depth or loaded.bit_depth
    scale = describe(model).scale

    def read_rows(first: int, end: int) -> torch.Tensor:
        return to_tensor(pixels[first:end], loaded.value_range)

    options = (options or UpscaleOptions()).for_bit_depth(bits)
    rows = upscale_rows(model, read_rows, height, width, channels, options, progress=progress, cancel=cancel)
    try:
        return _write_tiled(target, _pixel_rows(rows, bits, loaded.value_range),
                            (height * scale, width * scale, channels), bits, loaded.metadata.scaled(scale))
    finally:
        if isinstance(pixels, TiffRows):
            pixels.close()


def _write_tiled(target: Path, pixel_rows: Iterator[np.ndarray], shape: tuple[int, int, int], bits: int,
                 metadata: ImageMetadata) -> Path:
    """Output rows (stored pixels, top to bottom, any number at a time) streamed into a tiled (Big)TIFF, atomically."""
    dtype = {8: np.uint8, 16: np.uint16, 32: np.float32}[bits]

    def write(temporary: Path) -> None:
        tiles = _tiles(_strips(pixel_rows), shape[1])
        write_tiff(temporary, tiles, shape if shape[2] > 1 else shape[:2], dtype, metadata,
                   tile=(OUTPUT_TILE, OUTPUT_TILE))

    with terminating_cleanly():  # the upscale runs inside the write: a stop must not leave the temporary behind
        return write_atomically(target, write)


def _pixel_rows(rows: Iterator[tuple[int, torch.Tensor]], bit_depth: int,
                value_range: tuple[float, float] | None) -> Iterator[np.ndarray]:
    """Finished output rows as stored pixels, a few rows at a time (no float copy of a whole block)."""
    for _first, block in rows:
        for top in range(0, block.shape[2], CONVERT_ROWS):
            yield to_pixels(block[:, :, top : top + CONVERT_ROWS], bit_depth, value_range)
        del block  # let go of the row buffer before the next one is made
        _return_free_memory()


def _strips(pixel_rows: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    """Stored output rows regrouped into strips of OUTPUT_TILE rows (the last may be shorter)."""
    pending: list[np.ndarray] = []
    count = 0
    for block in pixel_rows:
        pending.append(block)
        count += block.shape[0]
        while count >= OUTPUT_TILE:
            joined = np.concatenate(pending)
            yield joined[:OUTPUT_TILE]
            pending, count = [joined[OUTPUT_TILE:]], count - OUTPUT_TILE
    if count:
        yield np.concatenate(pending)


@dataclass(frozen=True)
class TileRowPlan:
    """An image too large for one worker, cut into its rows of tiles: workers upscale rows anywhere and in any order
    (`upscale_tile_row`), each into a file of the work folder beside the target; one writer then streams them into
    the tiled TIFF (`write_tile_rows`). The grid is the streaming path's, for the same tile size."""

    source: Path
    target: Path
    options: UpscaleOptions  # with the tile size fixed, so every worker makes the same grid
    shape: tuple[int, int, int]  # input height, width, channels
    scale: int
    bits: int
    rows: int
    metadata: ImageMetadata  # already scaled
    value_range: tuple[float, float] | None  # a float image's, where it leaves 0..1
    work: WorkFolder

    def finished(self, row: int) -> bool:
        return self.work.finished(row) is not None


def plan_tile_rows(model: Any, source: str | os.PathLike, target: str | os.PathLike, options: UpscaleOptions,
                   key: dict[str, Any], *, bit_depth: int | None, max_pixels: int) -> TileRowPlan:
    """Reads `source`'s header and metadata (a TIFF by window, anything else whole, once) and plans its tile rows;
    rows a run of the same job (`key`) finished are kept."""
    source, target = Path(source), Path(target)
    if target.suffix.lower() not in (".tif", ".tiff"):
        raise ImageError(f"{target.name}: an image too large for memory is written as a tiled TIFF; name the output "
                         f".tif (the format can hold any size and is written piece by piece)")
    loaded = open_for_streaming(source, max_pixels)
    if isinstance(loaded.pixels, TiffRows):
        loaded.pixels.close()
    height, width, channels = loaded.pixels.shape
    bits = bit_depth or loaded.bit_depth
    options = replace(options, tile=options.tile or min(SPREAD_TILE, band_tile(model, width)))
    rows = TileRows(model, height, width, channels, options)
    return TileRowPlan(source, target, options, (height, width, channels), rows.scale, bits,
                       rows.count, loaded.metadata.scaled(rows.scale), loaded.value_range,
                       WorkFolder(target, key, True, ".npz"))


def upscale_tile_row(model: Any, plan: TileRowPlan, row: int, options: UpscaleOptions, max_pixels: int) -> int:
    """Upscales tile row `row` (reading only its window of a tiled or striped TIFF) into its file in the work folder,
    written atomically: the output rows it shares with its neighbours as floats, to be added by the writer, and the
    rows it alone makes as stored pixels. Returns the output rows it holds."""
    loaded = open_for_streaming(plan.source, max_pixels)
    try:
        rows = TileRows(model, *plan.shape, replace(options.for_bit_depth(plan.bits), tile=plan.options.tile))
        if rows.count != plan.rows:
            raise ImageError(f"{plan.source.name}: this worker cut {rows.count} rows of tiles, the plan {plan.rows}")
        output = rows.upscale(lambda first, end: to_tensor(loaded.pixels[first:end], plan.value_range), row)[0]
    finally:
        if isinstance(loaded.pixels, TiffRows):
            loaded.pixels.close()
    kept_top = rows.kept(row)[0]
    shared_above = rows.kept(row - 1)[1] - kept_top if row else 0
    shared_below = rows.finished_before(row) - kept_top
    if shared_above > shared_below:
        raise ImageError(f"{plan.source.name}: tiles of {plan.options.tile} px are too small for the blend band")
    own = to_pixels(rows.finish(output[None, :, shared_above:shared_below]), plan.bits, plan.value_range)

    def write(temporary: Path) -> None:
        np.savez(temporary, above=output[:, :shared_above].contiguous().numpy(), own=own,
                 below=output[:, shared_below:].contiguous().numpy())

    write_atomically(plan.work.part(row), write)
    return output.shape[1]


def write_tile_rows(plan: TileRowPlan) -> Path:
    """The single writer: streams the finished tile rows into the tiled TIFF, top to bottom, adding the rows each
    shares with the one above, then removes the work folder."""
    channels = plan.shape[2]

    def pixel_rows() -> Iterator[np.ndarray]:
        carried: torch.Tensor | None = None  # the rows the row above left to be blended with this one
        for row in range(plan.rows):
            with np.load(plan.work.part(row)) as part:
                above = torch.from_numpy(part["above"])
                if carried is not None:
                    yield to_pixels(from_model_channels((carried + above)[None], channels).clamp_(0, 1), plan.bits,
                                    plan.value_range)
                yield part["own"]
                carried = torch.from_numpy(part["below"])

    height, width = plan.shape[0] * plan.scale, plan.shape[1] * plan.scale
    path = _write_tiled(plan.target, pixel_rows(), (height, width, channels), plan.bits, plan.metadata)
    plan.work.remove()
    return path


def _return_free_memory() -> None:
    """Hands the heap's free pages back to the system (glibc). A long run frees many tile-sized temporaries; without
    this, fragmentation held 1.66 GB resident instead of 1.2 GB at 8192 px in (bench/huge.py)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


@functools.cache
def _libc():
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def _tiles(strips: Iterator[np.ndarray], width: int) -> Iterator[np.ndarray]:
    for strip in strips:
        for left in range(0, width, OUTPUT_TILE):
            tile = strip[:, left : left + OUTPUT_TILE]
            yield tile if tile.shape[2] > 1 else rearrange(tile, "h w 1 -> h w")
