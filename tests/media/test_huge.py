"""Results too large for memory stream into a tiled TIFF: the same pixels as in memory, GeoTIFF kept, nothing
half-written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from realesr_core import ImageError, UpscaleCancelled, UpscaleOptions, load_model, upscale
from realesr_core.cli import main
from realesr_core.media import read_image
from realesr_core.media.huge import OUTPUT_TILE, upscale_to_tiff
from realesr_core.media.images import to_pixels

from helpers import photo

GEO = {33550: (30.0, 30.0, 0.0), 33922: (0.0, 0.0, 0.0, 500000.0, 4600000.0, 0.0),
       34735: (1, 1, 0, 1, 1024, 0, 1, 1), 34737: "WGS 84 / UTM zone 33N|"}


def geotiff(path: Path, pixels: np.ndarray) -> Path:
    tifffile.imwrite(path, pixels, photometric="rgb", compression="lzw",
                     extratags=[(33550, "d", 3, GEO[33550], True), (33922, "d", 6, GEO[33922], True),
                                (34735, "H", 8, GEO[34735], True), (34737, "s", 0, GEO[34737], True)])
    return path


def test_streamed_tiff_equals_the_in_memory_result(tiny_srvgg, tmp_path: Path) -> None:
    """Output larger than one strip of output tiles in both directions (tiles of 256 px): 80 x 70 in, 320 x 280 out."""
    model = load_model(tiny_srvgg.state_dict())  # any network: the two paths must agree tile for tile
    pixels = (photo(80)[:, :70].astype(np.uint16) * 257)
    loaded = read_image(geotiff(tmp_path / "scene.tif", pixels))
    options = dict(tile=24, overlap=8, blend=4, precision="fp32")
    path = upscale_to_tiff(model, loaded, tmp_path / "big.tif", UpscaleOptions(**options))
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        assert page.is_tiled and page.tilelength == OUTPUT_TILE and page.dtype == np.uint16
        streamed = page.asarray()
        tags = {code: page.tags[code].value for code in GEO}
    expected = to_pixels(upscale(model, loaded.tensor, **options).image, 16)
    assert streamed.shape == (320, 280, 3) and np.array_equal(streamed, expected)
    assert tags[33550] == (7.5, 7.5, 0.0) and tags[33922] == GEO[33922] and tags[34737] == GEO[34737]


def test_only_tiffs_and_nothing_half_written(compact, tmp_path: Path) -> None:
    loaded = read_image(geotiff(tmp_path / "scene.tif", photo(40)))
    with pytest.raises(ImageError, match="name the output .tif"):
        upscale_to_tiff(compact, loaded, tmp_path / "big.png")
    with pytest.raises(UpscaleCancelled):
        upscale_to_tiff(compact, loaded, tmp_path / "big.tif", UpscaleOptions(tile=16, overlap=8), cancel=lambda: True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]


@pytest.mark.slow
def test_command_line_streams_and_keeps_the_geotiff(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    source = geotiff(tmp_path / "scene.tif", photo(48))
    assert main(["upscale", str(source), "--stream", "-m", "realesr-animevideov3", "--tile", "16",
                 "--precision", "fp32"]) == 0
    assert "streamed to a tiled TIFF" in capsys.readouterr().out
    with tifffile.TiffFile(tmp_path / "scene_x4.tif") as tif:
        assert tif.pages.first.shape == (192, 192, 3)
        assert tif.pages.first.tags[33550].value == (7.5, 7.5, 0.0)
    assert main(["upscale", str(source), "-o", str(tmp_path / "small.tif"), "-m", "realesr-animevideov3"]) == 0
    with tifffile.TiffFile(tmp_path / "small.tif") as tif:  # the in-memory path keeps GeoTIFF too
        assert tif.pages.first.tags[33550].value == (7.5, 7.5, 0.0)


@pytest.mark.parametrize("layout", [{"tile": (32, 48)}, {"rowsperstrip": 7}])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_tiffs_are_read_by_windows(tmp_path: Path, layout: dict, dtype) -> None:
    """Only the tiles or strips a band of rows touches are decoded; any band equals the same rows of a full read."""
    from realesr_core.media.huge import TiffRows

    pixels = np.random.default_rng(3).integers(0, np.iinfo(dtype).max, (101, 75, 3)).astype(dtype)
    tifffile.imwrite(tmp_path / "scene.tif", pixels, photometric="rgb", compression="zlib", **layout)
    assert TiffRows.suits(tmp_path / "scene.tif")
    rows = TiffRows(tmp_path / "scene.tif")
    try:
        for first, end in ((0, 101), (0, 1), (5, 40), (31, 33), (60, 101), (100, 101)):
            assert np.array_equal(rows[first:end], pixels[first:end])
    finally:
        rows.close()


def test_streaming_from_windows_equals_the_in_memory_result(tiny_srvgg, tmp_path: Path) -> None:
    model = load_model(tiny_srvgg.state_dict())  # any network: the two paths must agree tile for tile
    from realesr_core.media.huge import open_for_streaming

    pixels = photo(80)[:70]
    tifffile.imwrite(tmp_path / "scene.tif", pixels, photometric="rgb", compression="zlib", tile=(32, 32))
    loaded = open_for_streaming(tmp_path / "scene.tif", 10**6)
    assert not isinstance(loaded.pixels, np.ndarray)  # read by windows
    options = dict(tile=24, overlap=8, blend=4, precision="fp32")
    path = upscale_to_tiff(model, loaded, tmp_path / "big.tif", UpscaleOptions(**options))
    expected = to_pixels(upscale(model, read_image(tmp_path / "scene.tif").tensor, **options).image, 8)
    assert np.array_equal(tifffile.imread(path), expected)


@pytest.mark.slow
def test_a_stopped_streaming_run_leaves_no_temporary(tmp_path: Path) -> None:
    """`kill` (SIGTERM) in the middle of a streamed upscale: the hidden temporary TIFF it was writing is removed
    (Ctrl+C already was; SIGTERM ended the process on the spot and left it)."""
    import os
    import signal
    import subprocess
    import sys

    tifffile.imwrite(tmp_path / "scan.tif", photo(96), photometric="rgb")
    child = """
import sys, time
from realesr_core import UpscaleOptions, load_model
from realesr_core.media import open_for_streaming, upscale_to_tiff
def progress(done, total):
    print("tile", done, flush=True)
    time.sleep(0.3)  # a slow machine: the stop comes while tiles are still being written
loaded = open_for_streaming(sys.argv[1], 10**8)
upscale_to_tiff(load_model("realesr-animevideov3"), loaded, sys.argv[2], UpscaleOptions(tile=16), progress=progress)
"""
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    process = subprocess.Popen([sys.executable, "-c", child, str(tmp_path / "scan.tif"), str(tmp_path / "big.tif")],
                               stdout=subprocess.PIPE, text=True, env=environment)
    try:
        assert process.stdout.readline().startswith("tile")
        assert any(name.startswith(".big.") for name in os.listdir(tmp_path))  # the temporary, being written
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        process.kill()
        process.wait()
    assert sorted(os.listdir(tmp_path)) == ["scan.tif"]
