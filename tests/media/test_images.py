"""Image files: modes, 8- and 16-bit round trips, damaged files."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from realesr_core import ImageError
from realesr_core.media import ImageMetadata, read_image, write_image

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
    kept.load(loaded.metadata.exif)
    assert kept.get(0x0112, 1) == 1 and kept[0x010F] == "realesr test camera"


@pytest.mark.parametrize("suffix,bits", [(".png", 8), (".png", 16), (".tif", 8), (".tif", 16), (".jpg", 8),
                                         (".webp", 8)])
def test_icc_profile_and_exif_reach_the_output(tmp_path: Path, suffix: str, bits: int) -> None:
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "camera"
    metadata = ImageMetadata(icc_profile=icc, exif=exif.tobytes())
    if suffix == ".tif":  # our TIFFs carry the profile; EXIF stays with the formats that have a place for it
        with pytest.warns(UserWarning, match="TIFF file cannot hold the source's EXIF"):
            path = write_image(tmp_path / f"out{suffix}", torch.rand(1, 3, 12, 10), bits, metadata=metadata)
    else:
        path = write_image(tmp_path / f"out{suffix}", torch.rand(1, 3, 12, 10), bits, metadata=metadata)
        with Image.open(path) as img:
            assert img.getexif()[0x010F] == "camera"
    loaded = read_image(path)
    assert loaded.metadata.icc_profile == icc and loaded.bit_depth == bits


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
    assert (loaded.bit_depth, loaded.value_range) == (32, (-0.5, 1.5))
    assert loaded.tensor.min() == 0 and loaded.tensor.max() == 1  # the model sees the range mapped onto 0..1


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


@pytest.fixture(scope="module")
def nearest() -> object:
    """An x2 network whose learned part is zero: its output is exactly the nearest-neighbour enlargement, so what a
    test sees in the output is what the file handling did."""
    from realesr_core import load_model
    from realesr_core.models.archs import SRVGGNetCompact

    network = SRVGGNetCompact(num_feat=4, num_conv=1, upscale=2)
    torch.nn.init.zeros_(network.body[-1].weight)
    torch.nn.init.zeros_(network.body[-1].bias)
    return load_model(network.state_dict())


def upscale_file(model: object, source: Path, target: Path, bits: int | None = None) -> Path:
    """`source` upscaled into `target` as the command line does it, in full precision (the CPU's bfloat16 would
    round what these tests compare)."""
    from realesr_core import UpscaleOptions
    from realesr_core.media import upscale_image_file

    loaded = read_image(source)
    upscale_image_file(model, loaded, target, UpscaleOptions(precision="fp32"), bit_depth=bits or loaded.bit_depth,
                       quality=95)
    return target


def test_a_tiff_whose_first_directory_is_past_the_end_is_a_clear_error(tmp_path: Path) -> None:
    """tifffile raises IndexError from such a file (a damaged download): it is an ImageError naming the file, from
    the header check and from the read."""
    from realesr_core.media import image_shape

    (tmp_path / "scan.tif").write_bytes(b"II*\x00" + struct.pack("<I", 0x00FFFF00) + bytes(range(256)) * 4)
    for read in (image_shape, read_image):
        with pytest.raises(ImageError, match=r"cannot read image .*scan\.tif: the file is damaged .*IndexError"):
            read(tmp_path / "scan.tif")


@pytest.mark.parametrize(("pillow_format", "exact"), [("AVIF", False), ("JPEG2000", True), ("TGA", True),
                                                       ("PPM", True), ("QOI", True)])
def test_formats_pillow_reads_are_read_by_their_content(tmp_path: Path, pillow_format: str, exact: bool) -> None:
    """Formats beyond the usual six, named whatever: what decides is the content."""
    pixels = photo(24)
    options = {"irreversible": False} if pillow_format == "JPEG2000" else {}
    Image.fromarray(pixels).save(tmp_path / "picture.data", format=pillow_format, **options)
    loaded = read_image(tmp_path / "picture.data")
    assert loaded.format == pillow_format.lower() and loaded.pixels.shape == (24, 24, 3)
    difference = np.abs(loaded.pixels.astype(int) - pixels).mean()
    assert difference == 0 if exact else difference < 6


def test_animated_webp_gets_the_first_frame_with_a_warning(tmp_path: Path) -> None:
    frames = [Image.fromarray(photo(12, name)) for name in ("astronaut", "coffee")]
    frames[0].save(tmp_path / "a.webp", save_all=True, append_images=frames[1:], lossless=True)
    with pytest.warns(UserWarning, match="a.webp is animated: only its first frame is used"):
        assert np.array_equal(read_image(tmp_path / "a.webp").pixels, photo(12))


@pytest.mark.parametrize(("source", "target"), [("in.jpg", "out.jpg"), ("in.png", "out.png"), ("in.tif", "out.tif"),
                                                ("in.jpg", "out.png"), ("in16.png", "out16.png")])
def test_resolution_follows_the_scale(nearest, tmp_path: Path, source: str, target: str) -> None:
    """300 dpi upscaled x2 is 600 dpi: the picture keeps the size it states on paper (as a GeoTIFF keeps its
    place on the ground), whatever the format stores it in: JFIF density, PNG pHYs, TIFF X/YResolution, EXIF."""
    exif = Image.Exif()
    exif[282], exif[283], exif[296] = 300, 300, 2  # X/YResolution, inches
    pixels = photo(16).astype(np.uint16) * 257 if "16" in source else photo(16)
    if source.endswith(".tif"):
        import tifffile

        tifffile.imwrite(tmp_path / source, pixels, photometric="rgb", resolution=(300, 300), resolutionunit="INCH")
    elif "16" in source:
        write_image(tmp_path / source, torch.from_numpy(pixels / 65535.0).permute(2, 0, 1)[None].float(), 16,
                    metadata=ImageMetadata(dpi=(300.0, 300.0)))
    else:
        Image.fromarray(pixels).save(tmp_path / source, dpi=(300, 300), exif=exif.tobytes())
    out = upscale_file(nearest, tmp_path / source, tmp_path / target)
    with Image.open(out) as img:
        assert img.info["dpi"] == pytest.approx((600, 600), abs=0.01)
        if source == "in.jpg":
            assert [float(img.getexif()[tag]) for tag in (282, 283)] == [600, 600]
    assert read_image(out).metadata.dpi == pytest.approx((600, 600), abs=0.01)


def iptc_records(*keywords: str) -> bytes:
    """IPTC-IIM: record 2 (application), dataset 25 (keywords), one per keyword, as cameras and DAMs write them."""
    return b"".join(b"\x1c\x02\x19" + struct.pack(">H", len(word)) + word.encode() for word in keywords)


XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
       b'<rdf:Description xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/" '
       b'xmp:Rating="4"><dc:creator><rdf:Seq><rdf:li>Ana Pereira</rdf:li></rdf:Seq></dc:creator>'
       b"</rdf:Description></rdf:RDF></x:xmpmeta>")


@pytest.mark.parametrize("target", ["out.jpg", "out.png", "out.tif"])
def test_xmp_and_iptc_keywords_are_carried(nearest, tmp_path: Path, target: str) -> None:
    """A rated, keyworded photo from a photo library: XMP (rating, creator) and IPTC keywords (Photoshop's APP13
    in a JPEG) survive into each format that has a place for them, where Pillow and exiftool look."""
    from PIL import IptcImagePlugin

    keywords = iptc_records("beach", "family")
    resource = b"8BIM\x04\x04\x00\x00" + struct.pack(">I", len(keywords)) + keywords
    app13 = b"Photoshop 3.0\x00" + resource + b"\0" * (len(keywords) % 2)
    Image.fromarray(photo(16)).save(tmp_path / "buffer.jpg", xmp=XMP)
    data = (tmp_path / "buffer.jpg").read_bytes()
    (tmp_path / "in.jpg").write_bytes(data[:2] + b"\xff\xed" + struct.pack(">H", len(app13) + 2) + app13 + data[2:])
    out = upscale_file(nearest, tmp_path / "in.jpg", tmp_path / target)
    loaded = read_image(out)
    assert loaded.metadata.xmp == XMP
    with Image.open(out) as img:
        from xml.etree import ElementTree

        description = ElementTree.fromstring(img.info["xmp"]).find(".//{*}Description")
        assert description.get("{http://ns.adobe.com/xap/1.0/}Rating") == "4"
        if target != "out.png":  # a PNG keeps IPTC as ImageMagick's raw profile text
            assert IptcImagePlugin.getiptcinfo(img)[(2, 25)] == [b"beach", b"family"]
    if target == "out.png":
        assert keywords.hex() in dict(loaded.metadata.text)["Raw profile type iptc"].replace("\n", "")
    else:
        assert loaded.metadata.iptc == keywords


@pytest.mark.parametrize("bits", [8, 16])
def test_png_text_chunks_are_carried(nearest, tmp_path: Path, bits: int) -> None:
    """tEXt, zTXt and iTXt chunks (a generator's parameters, a comment, a UTF-8 title) come back with their text."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("parameters", "a lighthouse at dusk, Steps: 30")
    info.add_text("Comment", "scanned 2019 " * 30, zip=True)
    info.add_itxt("Title", "Café à Lisboa", lang="pt", tkey="Título")
    pixels = photo(16).astype(np.uint16) * 257 if bits == 16 else photo(16)
    if bits == 16:  # Pillow cannot write 16-bit colour: make the pixels, then take the chunks from an 8-bit twin
        write_image(tmp_path / "in.png", torch.from_numpy(pixels / 65535.0).permute(2, 0, 1)[None].float(), 16,
                    metadata=ImageMetadata(text=(("parameters", "a lighthouse at dusk, Steps: 30"),
                                                 ("Comment", "scanned 2019 " * 30), ("Title", "Café à Lisboa"))))
    else:
        Image.fromarray(pixels).save(tmp_path / "in.png", pnginfo=info)
    out = upscale_file(nearest, tmp_path / "in.png", tmp_path / "out.png")
    with Image.open(out) as img:
        img.load()
        assert {key: str(value) for key, value in img.text.items()} == {
            "parameters": "a lighthouse at dusk, Steps: 30", "Comment": "scanned 2019 " * 30,
            "Title": "Café à Lisboa"}
    assert read_image(out).bit_depth == bits


def test_a_format_without_a_place_for_metadata_says_what_it_left_out(nearest, tmp_path: Path) -> None:
    Image.fromarray(photo(16)).save(tmp_path / "in.jpg", dpi=(300, 300), xmp=XMP)
    with pytest.warns(UserWarning, match=r"out.webp: a WEBP file cannot hold the source's resolution; they are left"):
        upscale_file(nearest, tmp_path / "in.jpg", tmp_path / "out.webp")
    assert read_image(tmp_path / "out.webp").metadata.xmp == XMP


def cmyk_profile() -> bytes:
    """A small CMYK printer profile (ICC v2, Lab connection space), written byte by byte: inks with dot gain and
    hues of real process inks, so a conversion through it differs from Pillow's formula as a press profile does."""
    def fixed(value: float) -> bytes:
        return struct.pack(">i", round(value * 65536))

    def lut16(inputs: int, outputs: int, grid: int, colour, curve) -> bytes:
        head = b"mft2" + b"\0" * 4 + bytes([inputs, outputs, grid, 0]) + b"".join(
            fixed(v) for v in (1, 0, 0, 0, 1, 0, 0, 0, 1)) + struct.pack(">HH", 256, 2)
        curves = struct.pack(">256H", *(round(curve(i / 255) * 65535) for i in range(256))) * inputs
        points = np.stack(np.meshgrid(*[np.linspace(0, 1, grid)] * inputs, indexing="ij"), -1).reshape(-1, inputs)
        return head + curves + b"".join(struct.pack(f">{outputs}H", *colour(p)) for p in points) + struct.pack(
            ">HH", 0, 65535) * outputs

    hues = np.array([[-37.0, -50.0], [74.0, -3.0], [-5.0, 93.0]])  # a*, b* of full cyan, magenta, yellow

    def cmyk_to_lab(point: np.ndarray) -> tuple[int, int, int]:
        c, m, y, k = point
        lightness = 95 * (1 - 0.45 * c) * (1 - 0.5 * m) * (1 - 0.08 * y) * (1 - 0.84 * k)
        a, b = (np.array([c, m, y]) @ hues) * (1 - k) * 0.8
        return round(lightness / 100 * 0xFF00), round((a + 128) * 256), round((b + 128) * 256)

    description = b"Test press CMYK\0"
    tags = [(b"desc", b"desc" + b"\0" * 4 + struct.pack(">I", len(description)) + description + b"\0" * 78),
            (b"wtpt", b"XYZ " + b"\0" * 4 + fixed(0.9642) + fixed(1.0) + fixed(0.8249)),
            (b"cprt", b"text" + b"\0" * 4 + b"none\0"),
            (b"A2B0", lut16(4, 3, 3, cmyk_to_lab, lambda v: v**0.8)),  # the curve: ink spreads (dot gain)
            (b"B2A0", lut16(3, 4, 2, lambda p: (0, 0, 0, round((1 - p[0]) * 65535)), lambda v: v))]
    offset = 128 + 4 + 12 * len(tags)
    table, body = struct.pack(">I", len(tags)), b""
    for signature, data in tags:
        data += b"\0" * (-len(data) % 4)
        table += signature + struct.pack(">II", offset + len(body), len(data))
        body += data
    header = (struct.pack(">I", offset + len(body)) + b"none" + bytes([2, 0x10, 0, 0]) + b"prtrCMYKLab " + b"\0" * 12
              + b"acsp" + b"\0" * 28 + fixed(0.9642) + fixed(1.0) + fixed(0.8249) + b"none" + b"\0" * 44)
    return header + table + body


def test_a_cmyk_jpeg_is_converted_through_its_own_profile(tmp_path: Path) -> None:
    """A print-ready CMYK JPEG with its press profile becomes sRGB through that profile (LittleCMS, relative
    colorimetric with black point compensation) and is tagged sRGB; the CMYK profile is not put in an RGB file.
    Without a profile, Pillow's formula, and no profile."""
    from PIL import ImageCms

    profile = cmyk_profile()
    cmyk = Image.fromarray(np.random.default_rng(3).integers(0, 256, (8, 8, 4), np.uint8), "CMYK")
    cmyk.save(tmp_path / "print.jpg", icc_profile=profile, quality=100)
    cmyk.save(tmp_path / "bare.jpg", quality=100)
    with Image.open(tmp_path / "print.jpg") as stored:
        managed = np.asarray(ImageCms.profileToProfile(
            stored, ImageCms.ImageCmsProfile(io.BytesIO(profile)), ImageCms.createProfile("sRGB"), outputMode="RGB",
            renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC, flags=ImageCms.Flags.BLACKPOINTCOMPENSATION))
        naive = np.asarray(stored.convert("RGB"))
    loaded = read_image(tmp_path / "print.jpg")
    assert np.array_equal(loaded.pixels, managed) and np.abs(managed.astype(int) - naive).mean() > 20
    tagged = ImageCms.ImageCmsProfile(io.BytesIO(loaded.metadata.icc_profile))
    assert tagged.profile.xcolor_space.strip() == "RGB" and "sRGB" in ImageCms.getProfileDescription(tagged)
    write_image(tmp_path / "out.png", loaded.tensor, metadata=loaded.metadata)
    with Image.open(tmp_path / "out.png") as written:
        assert written.info["icc_profile"] == loaded.metadata.icc_profile
    bare = read_image(tmp_path / "bare.jpg")
    assert bare.metadata.icc_profile is None and bare.pixels.shape == (8, 8, 3)


def test_a_float_tiff_keeps_floats_and_its_range(nearest, tmp_path: Path) -> None:
    """Scene-linear HDR in a float TIFF (values up to 4, some below 0 from a colour transform): the output is a
    float TIFF with the same range, not 16-bit integers clipped at 1."""
    import tifffile

    values = np.random.default_rng(2).uniform(-0.25, 4.0, (10, 12, 3)).astype(np.float32)
    tifffile.imwrite(tmp_path / "hdr.tif", values, photometric="rgb")
    out = upscale_file(nearest, tmp_path / "hdr.tif", tmp_path / "big.tif")
    written = tifffile.imread(out)
    assert written.dtype == np.float32 and written.shape == (20, 24, 3)
    assert np.allclose(written, values.repeat(2, 0).repeat(2, 1), atol=1e-5)
    (tmp_path / "bad.tif").unlink(missing_ok=True)
    tifffile.imwrite(tmp_path / "bad.tif", np.full((4, 4), np.nan, np.float32))
    with pytest.raises(ImageError, match="bad.tif holds NaN or infinite samples"):
        read_image(tmp_path / "bad.tif")


def test_flat_and_exact_alpha_stay_exact(compact, tmp_path: Path) -> None:
    """A cut-out (opaque subject, transparent background) and a layer of constant 50% opacity, through the real
    model: inside the opaque, transparent and constant areas the alpha comes out exactly as it went in (before,
    255 came out as 253..255 and 128 drifted); only the edges are the model's."""
    rgba = np.dstack([photo(24), np.zeros((24, 24), np.uint8)])
    rgba[6:18, 4:20, 3] = 255
    Image.fromarray(rgba).save(tmp_path / "cutout.png")
    flat = np.dstack([photo(24), np.full((24, 24), 128, np.uint8)])
    Image.fromarray(flat).save(tmp_path / "layer.png")
    for name, alpha in (("cutout", rgba[..., 3]), ("layer", flat[..., 3])):
        out = upscale_file(compact, tmp_path / f"{name}.png", tmp_path / f"{name}_x4.png")
        written = np.asarray(Image.open(out))[..., 3].astype(int)
        expected = alpha.repeat(4, 0).repeat(4, 1).astype(int)
        windows = np.lib.stride_tricks.sliding_window_view(np.pad(alpha, 1, mode="edge"), (3, 3))
        flat_area = (windows.min((2, 3)) == windows.max((2, 3))).repeat(4, 0).repeat(4, 1)  # 3x3 all one value
        assert np.array_equal(written[flat_area], expected[flat_area])
        assert name != "layer" or np.all(written == 128)


def test_every_damaged_file_is_read_or_named(tmp_path: Path) -> None:
    """A folder of damaged downloads (cut off, or overwritten with noise, at many places, in every format read here):
    each one reads or fails with an ImageError that names it, never another exception (a folder run stops on
    those). 200 files, as a recovered card gives them."""
    import tifffile

    from realesr_core.media import image_shape

    pixels = photo(48)
    sources = {}
    for name, save in {
        "a.png": lambda path: Image.fromarray(pixels).save(path),
        "a16.png": lambda path: write_image(path, torch.from_numpy(pixels / 255.0).permute(2, 0, 1)[None].float(), 16),
        "a.jpg": lambda path: Image.fromarray(pixels).save(path, quality=90),
        "a.webp": lambda path: Image.fromarray(pixels).save(path),
        "a.gif": lambda path: Image.fromarray(pixels).save(path),
        "a.bmp": lambda path: Image.fromarray(pixels).save(path),
        "a.avif": lambda path: Image.fromarray(pixels).save(path),
        "a.tif": lambda path: tifffile.imwrite(path, pixels, photometric="rgb", compression="zlib", tile=(16, 16)),
        "s.tif": lambda path: tifffile.imwrite(path, pixels.astype(np.uint16) * 257, photometric="rgb"),
        "c.tif": lambda path: Image.fromarray(pixels).convert("CMYK").save(path),
    }.items():
        save(tmp_path / name)
        sources[name] = (tmp_path / name).read_bytes()
    rng = np.random.default_rng(7)
    damaged = []
    for name, data in sources.items():
        for index in range(20):
            where = int(rng.integers(4, len(data)))
            if index == 0 and name.endswith(".tif"):  # the first directory's offset: past the end of the file
                broken = data[:4] + b"\xff\xff\xff\x00" + data[8:]
            elif index % 2:
                broken = data[:where]  # cut off
            else:
                noise = rng.integers(0, 256, int(rng.integers(1, 64)), np.uint8).tobytes()
                broken = data[:where] + noise + data[where + len(noise) :]
            path = tmp_path / "damaged" / f"{index:02d}_{name}"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(broken)
            damaged.append(path)
    outcomes = {"read": 0, "named": 0}
    for path in damaged:
        for read in (image_shape, read_image):
            try:
                read(path)
                outcomes["read"] += 1
            except ImageError as error:
                assert path.name in str(error)
                outcomes["named"] += 1
    assert outcomes["named"] > 100 and sum(outcomes.values()) == 2 * len(damaged) == 400



def test_a_deep_image_in_fp16_keeps_its_depth(compact, tmp_path: Path) -> None:
    """A 16-bit file is upscaled for 16 bits: the last layer runs in fp32, so fp16's 1,024 steps per octave do not
    posterise a smooth gradient (its bright half has some 30,000 distinct 16-bit values, not 1,025)."""
    import tifffile

    from realesr_core import UpscaleOptions
    from realesr_core.media import upscale_image_file

    ramp = np.linspace(0, 65535, 96)
    tifffile.imwrite(tmp_path / "ramp.tif", ((ramp[:, None] + ramp[None, :]) / 2).astype(np.uint16)[..., None]
                     .repeat(3, -1), photometric="rgb")
    loaded = read_image(tmp_path / "ramp.tif")
    assert loaded.bit_depth == 16
    upscale_image_file(compact, loaded, tmp_path / "big.tif", UpscaleOptions(precision="fp16"), bit_depth=16,
                       quality=95)
    written = tifffile.imread(tmp_path / "big.tif")
    assert written.dtype == np.uint16 and len(np.unique(written[written >= 32768])) > 4096
