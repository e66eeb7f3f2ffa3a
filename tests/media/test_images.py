"""Image files: modes, 8- and 16-bit round trips, damaged files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from realesr_core import ImageError
from realesr_core.media.images import read_image, write_image

from helpers import photo


@pytest.mark.parametrize("mode,channels", [("RGB", 3), ("RGBA", 4), ("L", 1), ("LA", 2), ("P", 3), ("CMYK", 3)])
def test_modes(tmp_path: Path, mode: str, channels: int) -> None:
    path = tmp_path / ("x.tif" if mode == "CMYK" else "x.png")
    Image.fromarray(photo(16)).convert(mode).save(path)
    loaded = read_image(path)
    assert loaded.tensor.shape == (1, channels, 16, 16) and loaded.bit_depth == 8


def test_8bit_round_trip_is_exact(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", read_image_from(photo(16), tmp_path))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), photo(16))


def read_image_from(array: np.ndarray, tmp_path: Path) -> torch.Tensor:
    Image.fromarray(array).save(tmp_path / "src.png")
    return read_image(tmp_path / "src.png").tensor


def test_16bit_gray_keeps_precision(tmp_path: Path) -> None:
    values = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    loaded = read_image(tmp_path / "g16.png")
    assert loaded.bit_depth == 16
    write_image(tmp_path / "out.png", loaded.tensor, bit_depth=16)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out.png")).astype(np.uint16), values)


def test_unreadable_and_jpeg_alpha(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="cannot read image"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="JPEG cannot store transparency"):
        write_image(tmp_path / "x.jpg", torch.rand(1, 4, 8, 8))


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_16bit_round_trip(tmp_path: Path, channels: int, suffix: str) -> None:
    values = np.random.default_rng(channels).integers(0, 65536, (9, 13, channels)).astype(np.uint16)
    image = torch.from_numpy(values.astype(np.float32) / 65535).permute(2, 0, 1)[None]
    write_image(tmp_path / f"x{suffix}", image, bit_depth=16)
    loaded = read_image(tmp_path / f"x{suffix}")
    assert loaded.bit_depth == 16
    assert np.array_equal(np.round(loaded.tensor[0].permute(1, 2, 0).numpy() * 65535).astype(np.uint16), values)


def test_16bit_png_written_by_pillow_with_paeth_filters(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    smooth = np.cumsum(np.cumsum(rng.integers(0, 50, (40, 60)), 0), 1).astype(np.uint16)
    Image.fromarray(smooth).save(tmp_path / "p.png")
    from realesr_core.media.png16 import read_png16

    assert np.array_equal(read_png16(tmp_path / "p.png")[..., 0], smooth)


def test_damaged_16bit_png(tmp_path: Path) -> None:
    write_image(tmp_path / "x.png", torch.rand(1, 3, 8, 8), bit_depth=16)
    data = (tmp_path / "x.png").read_bytes()
    (tmp_path / "x.png").write_bytes(data[:60])
    with pytest.raises(ImageError):
        read_image(tmp_path / "x.png")


def test_16bit_tiff_interoperates_with_other_readers_and_writers(tmp_path: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    values = np.random.default_rng(5).integers(0, 65536, (11, 7, 3)).astype(np.uint16)
    write_image(tmp_path / "ours.tif", torch.from_numpy(values.astype(np.float32) / 65535).permute(2, 0, 1)[None], 16)
    assert np.array_equal(cv2.imread(str(tmp_path / "ours.tif"), cv2.IMREAD_UNCHANGED)[..., ::-1], values)
    cv2.imwrite(str(tmp_path / "theirs.tif"), values[..., ::-1], [cv2.IMWRITE_TIFF_COMPRESSION, 1])
    loaded = read_image(tmp_path / "theirs.tif")
    assert loaded.bit_depth == 16
    assert np.array_equal(np.round(loaded.tensor[0].permute(1, 2, 0).numpy() * 65535).astype(np.uint16), values)
