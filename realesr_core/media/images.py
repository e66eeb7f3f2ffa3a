"""Image files as people have them, to and from float tensors `[1, C, H, W]` in 0..1 (C = 1, 2, 3 or 4).

Formats are told apart by their first bytes, not their names. 16-bit PNG goes through imagecodecs (libpng: exact,
and as fast as OpenCV), TIFF through tifffile (every compression imagecodecs can decode, BigTIFF, 8/16-bit and float),
everything 8-bit through Pillow. Pixels come upright (the EXIF Orientation applied); the ICC profile and EXIF (its
Orientation reset) go back into the output where the format holds them. Files are written beside the target and
renamed, so an interrupted write never leaves a half-written image under the output name.
"""

from __future__ import annotations

import functools
import os
import struct
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from PIL import Image, UnidentifiedImageError

from ..errors import ImageError
from ..files import write_atomically

READABLE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
WRITABLE_SUFFIXES = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp", ".bmp": "bmp",
                     ".tif": "tiff", ".tiff": "tiff"}
# Pillow's own decompression-bomb limit: images above it need `max_pixels` raised on purpose.
DEFAULT_MAX_PIXELS = 178_956_970
ORIENTATION_TAG = 0x0112
# imagecodecs' fast PNG settings (OpenCV's): a 3-megapixel 16-bit RGB PNG encodes in 0.14 s instead of 0.8 s.
FAST_PNG = {"level": 1, "strategy": 3, "filter": 16}
_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpeg"), (b"II*\x00", "tiff"), (b"MM\x00*", "tiff"),
               (b"II+\x00", "tiff"), (b"MM\x00+", "tiff"), (b"BM", "bmp"), (b"GIF87a", "gif"), (b"GIF89a", "gif"))


# GeoTIFF's tags (pixel scale, tie points, transformation, the GeoKey directory and its parameters) and their TIFF
# data types; an upscale divides the pixel size by its factor.
GEOTIFF_TAGS = {33550: "d", 33922: "d", 34264: "d", 34735: "H", 34736: "d", 34737: "s"}


@dataclass(frozen=True)
class LoadedImage:
    pixels: np.ndarray  # [H, W, C] upright, as stored: uint8, uint16 or float32 in 0..1
    bit_depth: int  # 8 or 16 (float TIFFs count as 16)
    format: str  # png, jpeg, tiff, webp, bmp or gif
    icc_profile: bytes | None = None
    exif: bytes | None = None  # with Orientation reset to 1: the pixels are upright
    geotiff: dict[int, tuple] | None = None  # GeoTIFF tags by code

    @functools.cached_property
    def tensor(self) -> torch.Tensor:
        """`[1, C, H, W]` float32 in 0..1 (made on first use: a huge image streams from `pixels` instead)."""
        return to_tensor(self.pixels)


def detect_format(path: str | os.PathLike) -> str:
    """The file's format from its first bytes."""
    with open(path, "rb") as handle:
        head = handle.read(16)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    for signature, name in _SIGNATURES:
        if head.startswith(signature):
            return name
    raise ImageError(f"{Path(path).name} is not an image this tool reads (PNG, JPEG, TIFF, WebP, BMP, GIF)")


def read_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Reads an image file upright; palette and CMYK become RGB(A), 16-bit stays 16-bit. Images of more than
    `max_pixels` pixels are refused with an error that says their size."""
    path = Path(path)
    try:
        kind = detect_format(path)
        if kind == "tiff":
            return _read_tiff(path, max_pixels)
        if kind == "png" and _png_bit_depth(path) == 16:
            return _read_png16(path, max_pixels)
        return _read_with_pillow(path, kind, max_pixels)
    except ImageError:
        raise
    except (OSError, ValueError, SyntaxError, UnidentifiedImageError, struct.error, RuntimeError) as exc:
        raise ImageError(f"cannot read image {path}: {exc}") from exc


def image_shape(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int, int]:
    """(height, width, channels) from the file's header, without decoding it; the pixel limit is checked."""
    path = Path(path)
    try:
        if detect_format(path) == "tiff":
            import tifffile

            with tifffile.TiffFile(path) as tif:
                page = tif.pages.first
                height, width, channels = page.imagelength, page.imagewidth, page.samplesperpixel
        else:
            limit = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
            try:
                with Image.open(path) as img:
                    (width, height), channels = img.size, min(len(img.getbands()), 4)
            finally:
                Image.MAX_IMAGE_PIXELS = limit
    except ImageError:
        raise
    except (OSError, ValueError, SyntaxError, UnidentifiedImageError, struct.error) as exc:
        raise ImageError(f"cannot read image {path}: {exc}") from exc
    _check_size(path, width, height, max_pixels)
    return height, width, channels


def _check_size(path: Path, width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageError(f"{path.name} has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageError(f"{path.name} is {width}x{height} = {width * height:,} pixels, more than the limit of "
                         f"{max_pixels:,}; raise it with --max-pixels (max_pixels=) if the image is what you expect")


def _read_with_pillow(path: Path, kind: str, max_pixels: int) -> LoadedImage:
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # our own limit, with our own message, is checked from the header below
    try:
        with Image.open(path) as img:
            _check_size(path, *img.size, max_pixels)
            icc, exif = img.info.get("icc_profile"), img.getexif()
            if kind == "gif" and getattr(img, "n_frames", 1) > 1:
                warnings.warn(f"{path.name} is animated: only its first frame is used", stacklevel=3)
            img.load()
            array, bit_depth = _pillow_pixels(img)
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    return _loaded(array, bit_depth, kind, icc, exif)


def _loaded(array: np.ndarray, bit_depth: int, kind: str, icc: bytes | None, exif: Image.Exif) -> LoadedImage:
    """Upright pixels as a tensor, with the metadata to write back (the Orientation reset: the pixels are upright)."""
    orientation = int(exif.get(ORIENTATION_TAG, 1) or 1)
    if orientation != 1:
        exif[ORIENTATION_TAG] = 1
    return LoadedImage(_upright(array, orientation), bit_depth, kind, icc or None,
                       exif.tobytes() if len(exif) else None)


def _png_bit_depth(path: Path) -> int:
    with open(path, "rb") as handle:
        header = handle.read(25)
    return header[24] if len(header) == 25 else 8


def _read_png16(path: Path, max_pixels: int) -> LoadedImage:
    """16-bit PNG (Pillow would truncate it to 8 bits): the header and metadata chunks read here, the pixels by
    imagecodecs (libpng)."""
    import imagecodecs

    with open(path, "rb") as handle:
        handle.seek(16)
        width, height = struct.unpack(">II", handle.read(8))
        _check_size(path, width, height, max_pixels)
        icc, exif = _png_metadata(handle)
    return _loaded(imagecodecs.png_decode(path.read_bytes()), 16, "png", icc, exif)


def _png_metadata(handle) -> tuple[bytes | None, Image.Exif]:
    """The ICC profile (iCCP) and EXIF (eXIf) chunks, found by walking the chunk headers without reading the
    pixel data."""
    icc, exif = None, Image.Exif()
    handle.seek(8)
    while header := handle.read(8):
        if len(header) < 8:
            break
        length, kind = struct.unpack(">I4s", header)
        if kind == b"iCCP":
            data = handle.read(length)
            icc = zlib.decompress(data[data.index(b"\0") + 2 :])
            handle.seek(4, os.SEEK_CUR)
        elif kind == b"eXIf":
            exif.load(b"Exif\x00\x00" + handle.read(length))
            handle.seek(4, os.SEEK_CUR)
        elif kind == b"IEND":
            break
        else:
            handle.seek(length + 4, os.SEEK_CUR)
    return icc, exif


def _pillow_pixels(img: Image.Image) -> tuple[np.ndarray, int]:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(img)
        return (array.astype(np.uint16), 16) if img.mode != "I" or array.max() > 255 else (array.astype(np.uint8), 8)
    if img.mode == "F":
        return np.asarray(img, dtype=np.float32), 16
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode not in ("L", "LA", "RGB", "RGBA"):
        img = img.convert("RGBA" if "A" in img.mode else "RGB")
    return np.asarray(img), 8


def _read_tiff(path: Path, max_pixels: int) -> LoadedImage:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        if page.photometric not in (tifffile.PHOTOMETRIC.MINISBLACK, tifffile.PHOTOMETRIC.RGB):
            return _read_with_pillow(path, "tiff", max_pixels)  # palette, CMYK, YCbCr, min-is-white: Pillow converts
        axes = page.axes.replace("I", "")
        height, width = page.imagelength, page.imagewidth
        _check_size(path, width, height, max_pixels)
        array = page.asarray()
        icc, orientation, geotiff = tiff_metadata(page)
    if axes.startswith("S"):  # planar: samples first
        array = np.moveaxis(array, 0, -1)
    array = array.reshape(height, width, -1)
    if array.shape[2] not in (1, 2, 3, 4):
        raise ImageError(f"{path.name} has {array.shape[2]} samples per pixel; expected gray, RGB or either with alpha")
    bit_depth = 8 if array.dtype == np.uint8 else 16
    if array.dtype.kind == "f":
        array = np.clip(np.nan_to_num(array.astype(np.float32)), 0, 1)
    elif array.dtype not in (np.uint8, np.uint16):
        raise ImageError(f"{path.name} holds {array.dtype} samples; expected 8- or 16-bit integers or floats")
    return LoadedImage(_upright(array, orientation), bit_depth, "tiff", icc, geotiff=geotiff)


def tiff_metadata(page) -> tuple[bytes | None, int, dict[int, tuple] | None]:
    """A TIFF page's ICC profile, orientation and GeoTIFF tags."""
    icc = page.tags.valueof("InterColorProfile")
    geotiff = {code: page.tags[code].value for code in GEOTIFF_TAGS if code in page.tags}
    return (bytes(icc) if icc else None), int(page.tags.valueof("Orientation") or 1), geotiff or None


def _upright(array: np.ndarray, orientation: int) -> np.ndarray:
    """Pixels as the EXIF Orientation says they are meant to be seen (the transposes Pillow's exif_transpose uses)."""
    if array.ndim == 2:
        array = array[..., None]
    turns = {1: lambda a: a, 2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
             5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, -1), 7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],
             8: lambda a: np.rot90(a, 1)}
    return np.ascontiguousarray(turns.get(orientation, turns[1])(array))


def to_tensor(hwc: np.ndarray) -> torch.Tensor:
    """Stored pixels `[H, W, C]` (uint8, uint16 or float) as `[1, C, H, W]` float32 in 0..1."""
    if hwc.shape[0] == 0 or hwc.shape[1] == 0:
        raise ImageError(f"image has no pixels ({hwc.shape[1]}x{hwc.shape[0]})")
    peak = 1.0 if hwc.dtype.kind == "f" else (65535.0 if hwc.dtype == np.uint16 else 255.0)
    return rearrange(torch.from_numpy(hwc.astype(np.float32)), "h w c -> 1 c h w") / peak


def to_pixels(image: torch.Tensor, bit_depth: int) -> np.ndarray:
    """`[C, H, W]` or `[1, C, H, W]` in 0..1 as stored pixels `[H, W, C]`, uint8 or uint16."""
    if image.dim() == 4:
        image = image[0]
    peak, dtype = (65535, np.uint16) if bit_depth == 16 else (255, np.uint8)
    hwc = rearrange(image.detach().float().clamp(0, 1), "c h w -> h w c").cpu().numpy()
    return np.round(hwc * peak).astype(dtype)


def scaled_geotiff(tags: dict[int, tuple], factor: float) -> dict[int, tuple]:
    """GeoTIFF tags for the image upscaled by `factor`: pixels `factor` times smaller, the same place on Earth."""
    scaled = dict(tags)
    if 33550 in tags:  # ModelPixelScale: (x, y, z) size of a pixel
        x, y, *rest = tags[33550]
        scaled[33550] = (x / factor, y / factor, *rest)
    if 33922 in tags:  # ModelTiepoint: (i, j, k, x, y, z) per point; i, j are raster coordinates
        points = list(tags[33922])
        for start in range(0, len(points), 6):
            points[start] *= factor
            points[start + 1] *= factor
        scaled[33922] = tuple(points)
    if 34264 in tags:  # ModelTransformation: 4x4, raster to model; the raster axes' columns shrink
        matrix = list(tags[34264])
        for index in (0, 1, 4, 5, 8, 9):
            matrix[index] /= factor
        scaled[34264] = tuple(matrix)
    return scaled


def write_image(path: str | os.PathLike, image: torch.Tensor, bit_depth: int = 8, *, quality: int = 95,
                icc_profile: bytes | None = None, exif: bytes | None = None,
                geotiff: dict[int, tuple] | None = None) -> Path:
    """Writes `[1, C, H, W]` or `[C, H, W]` (0..1) in the format its suffix names: PNG and TIFF in 8 or 16 bits,
    JPEG and WebP at `quality`, BMP; the ICC profile, EXIF and GeoTIFF tags where the format holds them."""
    path = Path(path)
    kind = output_format(path)
    channels = image.shape[-3]
    if channels in (2, 4) and kind in ("jpeg", "bmp"):
        raise ImageError(f"{path.name}: {kind.upper()} cannot store transparency; write a .png, .tif or .webp")
    sixteen = bit_depth == 16 and kind in ("png", "tiff")
    array = to_pixels(image, 16 if sixteen else 8)
    if kind == "tiff":
        writer = _tiff_writer(array, icc_profile, geotiff)
    elif kind == "png" and sixteen:
        writer = _png16_writer(array, icc_profile, exif)
    else:
        writer = _pillow_writer(array, kind, quality, icc_profile, exif)
    return write_atomically(path, writer)


def output_format(path: Path) -> str:
    kind = WRITABLE_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise ImageError(f"{path.name}: cannot write {path.suffix or 'files without a suffix'}; "
                         f"write one of {', '.join(WRITABLE_SUFFIXES)}")
    return kind


def _pillow_writer(array: np.ndarray, kind: str, quality: int, icc: bytes | None,
                   exif: bytes | None) -> Callable[[Path], None]:
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[array.shape[2]]
    img = Image.fromarray(array[..., 0] if mode == "L" else array, mode)
    options = {key: value for key, value in (("icc_profile", icc), ("exif", exif)) if value and kind != "bmp"}
    if kind in ("jpeg", "webp"):
        options["quality"] = quality
    return lambda target: img.save(target, format=kind.upper(), **options)


def _png16_writer(array: np.ndarray, icc: bytes | None, exif: bytes | None) -> Callable[[Path], None]:
    import imagecodecs

    def write(target: Path) -> None:
        encoded = imagecodecs.png_encode(np.ascontiguousarray(array if array.shape[2] > 1 else array[..., 0]),
                                         **FAST_PNG)
        extra = b""
        if icc:
            extra += _png_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc))
        if exif:
            extra += _png_chunk(b"eXIf", exif.removeprefix(b"Exif\x00\x00"))
        header_end = 8 + 25  # signature, then the IHDR chunk: the metadata chunks must come before the pixels
        target.write_bytes(encoded[:header_end] + extra + encoded[header_end:])

    return write


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _tiff_writer(array: np.ndarray, icc: bytes | None, geotiff: dict[int, tuple] | None) -> Callable[[Path], None]:
    data = array if array.shape[2] > 1 else array[..., 0]

    def write(target: Path) -> None:
        write_tiff(target, data, data.shape, data.dtype, icc, geotiff)

    return write


def write_tiff(target: Path, data, shape: tuple[int, ...], dtype: np.dtype, icc: bytes | None = None,
               geotiff: dict[int, tuple] | None = None, tile: tuple[int, int] | None = None) -> None:
    """A deflate-compressed TIFF (BigTIFF past 2 GiB) of an array, or, with `tile`, of an iterator of tiles in row
    order (the image is then never in memory)."""
    import tifffile

    channels = shape[2] if len(shape) == 3 else 1
    extratags = [(code, GEOTIFF_TAGS[code], len(value) if not isinstance(value, str) else 0, value, True)
                 for code, value in (geotiff or {}).items()]
    tifffile.imwrite(target, data, shape=shape, dtype=dtype, photometric="minisblack" if channels <= 2 else "rgb",
                     extrasamples=("unassalpha",) if channels in (2, 4) else None, compression="zlib",
                     compressionargs={"level": 1}, predictor=True, iccprofile=icc, tile=tile, extratags=extratags,
                     bigtiff=int(np.prod(shape)) * np.dtype(dtype).itemsize > 2**31)
