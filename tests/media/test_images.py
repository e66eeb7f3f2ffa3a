"""Image files: modes, 8- and 16-bit round trips, damaged files."""

from __future__ import annotations

import struct
import zlib
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
    loaded = read_image(tmp_path / "p.png")
    assert loaded.bit_depth == 16
    assert np.array_equal(np.round(loaded.tensor[0, 0].numpy() * 65535).astype(np.uint16), smooth)


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


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_pillow_does(tmp_path: Path, orientation: int) -> None:
    from PIL import ImageOps

    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "realesr test camera"  # Make: kept in the output's EXIF
    Image.fromarray(photo(24)[:, :16]).save(tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    loaded = read_image(tmp_path / "phone.jpg")
    with Image.open(tmp_path / "phone.jpg") as img:
        upright = np.asarray(ImageOps.exif_transpose(img))
    assert np.array_equal(np.round(loaded.tensor[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8), upright)
    kept = Image.Exif()
    kept.load(loaded.exif)
    assert kept.get(0x0112, 1) == 1 and kept[0x010F] == "realesr test camera"


@pytest.mark.parametrize("suffix,bits", [(".png", 8), (".png", 16), (".tif", 8), (".tif", 16), (".jpg", 8),
                                         (".webp", 8)])
def test_icc_profile_and_exif_reach_the_output(tmp_path: Path, suffix: str, bits: int) -> None:
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "camera"
    path = write_image(tmp_path / f"out{suffix}", torch.rand(1, 3, 12, 10), bits, icc_profile=icc,
                       exif=exif.tobytes())
    loaded = read_image(path)
    assert loaded.icc_profile == icc and loaded.bit_depth == bits
    if suffix != ".tif":  # our TIFFs carry the profile; EXIF stays with the formats that have a place for it
        with Image.open(path) as img:
            assert img.getexif()[0x010F] == "camera"


@pytest.mark.parametrize("compression", [None, "lzw", "zlib", "zstd"])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_tiffs_as_other_programs_write_them(tmp_path: Path, compression: str | None, channels: int) -> None:
    import tifffile

    values = np.random.default_rng(channels).integers(0, 65536, (21, 13, channels)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "in.tif", values if channels > 1 else values[..., 0], compression=compression,
                     photometric="rgb" if channels >= 3 else "minisblack",
                     extrasamples=("unassalpha",) if channels == 4 else None)
    loaded = read_image(tmp_path / "in.tif")
    assert loaded.bit_depth == 16
    assert np.array_equal(np.round(loaded.tensor[0].permute(1, 2, 0).numpy() * 65535).astype(np.uint16), values)


def test_planar_bigtiff_and_float_tiffs(tmp_path: Path) -> None:
    import tifffile

    values = np.random.default_rng(1).integers(0, 256, (3, 9, 11)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "planar.tif", values, photometric="rgb", planarconfig="separate", bigtiff=True)
    planar = read_image(tmp_path / "planar.tif")
    assert planar.bit_depth == 8 and torch.equal(planar.tensor[0], torch.from_numpy(values).float() / 255)
    floats = np.linspace(-0.5, 1.5, 12 * 8, dtype=np.float32).reshape(12, 8)
    tifffile.imwrite(tmp_path / "float.tif", floats)
    loaded = read_image(tmp_path / "float.tif")
    assert loaded.bit_depth == 16 and loaded.tensor.min() == 0 and loaded.tensor.max() == 1


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif"])
def test_lossless_round_trips_are_exact(tmp_path: Path, suffix: str) -> None:
    pixels = photo(17)
    image = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255
    loaded = read_image(write_image(tmp_path / f"x{suffix}", image))
    assert torch.equal(loaded.tensor, image)


def test_format_comes_from_the_bytes_not_the_name(tmp_path: Path) -> None:
    Image.fromarray(photo(8)).save(tmp_path / "really_a_png.jpg", format="PNG")
    assert read_image(tmp_path / "really_a_png.jpg").format == "png"
    (tmp_path / "notes.png").write_text("hello")
    with pytest.raises(ImageError, match="not an image this tool reads"):
        read_image(tmp_path / "notes.png")


def test_images_over_the_pixel_limit_get_a_clear_error_before_decoding(tmp_path: Path) -> None:
    """A PNG whose header claims 30000 x 30000 pixels (Pillow's decompression-bomb case) is refused from its header;
    the message gives the size and the option that raises the limit."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\0" * 1000)  # a start: the file is refused long before its pixels would be needed
    (tmp_path / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels)
                                        + chunk(b"IEND", b""))
    with pytest.raises(ImageError, match=r"30000x30000 = 900,000,000 pixels.*--max-pixels"):
        read_image(tmp_path / "bomb.png")
    Image.fromarray(photo(20)).save(tmp_path / "small.png")
    with pytest.raises(ImageError, match="limit of 100"):
        read_image(tmp_path / "small.png", max_pixels=100)


def test_animated_gif_gives_its_first_frame_with_a_warning(tmp_path: Path) -> None:
    frames = [Image.fromarray(photo(12, name)) for name in ("astronaut", "coffee")]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    with pytest.warns(UserWarning, match="animated"):
        assert read_image(tmp_path / "a.gif").tensor.shape == (1, 3, 12, 12)


def test_corrupt_jpeg_is_a_clear_error(tmp_path: Path) -> None:
    Image.fromarray(photo(32)).save(tmp_path / "x.jpg")
    (tmp_path / "x.jpg").write_bytes((tmp_path / "x.jpg").read_bytes()[:200])
    with pytest.raises(ImageError, match="cannot read image"):
        read_image(tmp_path / "x.jpg")


def test_an_interrupted_write_leaves_nothing_under_the_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_save(self, target, *args, **kwargs):
        Path(target).write_bytes(b"half an image")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        write_image(tmp_path / "out.jpg", torch.rand(1, 3, 8, 8))
    assert list(tmp_path.iterdir()) == []
