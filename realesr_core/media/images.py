"""Image files as people have them, to and from float tensors `[1, C, H, W]` in 0..1 (C = 1, 2, 3 or 4).

Formats are told apart by their content, not their names: PNG, JPEG, TIFF, WebP, BMP and GIF by their first bytes,
then anything else the installed Pillow opens (AVIF, JPEG 2000, PSD, TGA, QOI...). 16-bit PNG goes through imagecodecs
(libpng: exact, and as fast as OpenCV), TIFF through tifffile (every compression imagecodecs can decode, BigTIFF,
8/16-bit and float), everything 8-bit through Pillow. Pixels come upright (the EXIF Orientation applied). What the file
says about itself goes back into the output where the format holds it (`ImageMetadata`); a CMYK image with its
profile is converted through that profile to sRGB. Files are written beside the target and renamed, so an
interrupted write never leaves a half-written image under the output name.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import struct
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from PIL import Image, ImageFile

from ..errors import ImageError, RealESRError
from ..files import write_atomically

WRITABLE_SUFFIXES = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp", ".bmp": "bmp",
                     ".tif": "tiff", ".tiff": "tiff"}
# Pillow formats that are not images it decodes itself: an MPEG video's header, PostScript (needs Ghostscript), an
# IPTC record file.
NOT_IMAGES = {"MPEG", "EPS", "IPTC"}
# Formats whose extra frames are animation: only the first is upscaled, with a warning (a multi-frame MPO or ICO
# holds other pictures of the same photo, not motion).
ANIMATED_FORMATS = {"gif", "webp", "png", "avif"}
# Pillow's own decompression-bomb limit: images above it need `max_pixels` raised on purpose.
DEFAULT_MAX_PIXELS = 178_956_970
ORIENTATION_TAG, X_RESOLUTION_TAG, Y_RESOLUTION_TAG, RESOLUTION_UNIT_TAG = 0x0112, 0x011A, 0x011B, 0x0128
# imagecodecs' fast PNG settings (OpenCV's): a 3-megapixel 16-bit RGB PNG encodes in 0.14 s instead of 0.8 s.
FAST_PNG = {"level": 1, "strategy": 3, "filter": 16}
_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpeg"), (b"II*\x00", "tiff"), (b"MM\x00*", "tiff"),
               (b"II+\x00", "tiff"), (b"MM\x00+", "tiff"), (b"BM", "bmp"), (b"GIF87a", "gif"), (b"GIF89a", "gif"))
PNG_XMP_KEY = "XML:com.adobe.xmp"
PNG_IPTC_KEY = "Raw profile type iptc"  # ImageMagick's and exiftool's place for IPTC in a PNG
PHOTOSHOP_IRB = b"Photoshop 3.0\x00"  # JPEG APP13: Photoshop's image resources, IPTC-IIM among them
IPTC_RESOURCE = 0x0404
TIFF_XMP_TAG, TIFF_IPTC_TAG = 700, 33723
INCH = 0.0254  # metres


# GeoTIFF's tags (pixel scale, tie points, transformation, the GeoKey directory and its parameters) and their TIFF
# data types; an upscale divides the pixel size by its factor.
GEOTIFF_TAGS = {33550: "d", 33922: "d", 34264: "d", 34735: "H", 34736: "d", 34737: "s"}


def _readable_suffixes() -> tuple[str, ...]:
    """The suffixes of every format the installed Pillow decodes (AVIF, JPEG 2000, PSD...), for telling images apart
    from other files in a folder; the format itself is still read from the content."""
    Image.init()
    openable = [suffix for suffix, name in Image.registered_extensions().items()
                if name in Image.OPEN and name not in NOT_IMAGES and not _is_stub(name)]
    return tuple(dict.fromkeys([*WRITABLE_SUFFIXES, ".gif", *sorted(openable)]))


def _is_stub(name: str) -> bool:
    """Pillow's placeholders for formats it only identifies (BUFR, GRIB, HDF5, WMF without a handler)."""
    opener = Image.OPEN[name][0]
    return isinstance(opener, type) and issubclass(opener, ImageFile.StubImageFile)


READABLE_SUFFIXES = _readable_suffixes()


@dataclass(frozen=True)
class ImageMetadata:
    """What an image file says about itself besides its pixels, to go back into the output where its format holds
    it. `scaled` gives the metadata of the image upscaled."""

    icc_profile: bytes | None = None
    exif: bytes | None = None  # with Orientation reset to 1: the pixels are upright
    xmp: bytes | None = None
    iptc: bytes | None = None  # IPTC-IIM records (keywords, caption, creator)
    dpi: tuple[float, float] | None = None
    text: tuple[tuple[str, str], ...] = ()  # PNG text chunks (keyword, text), in file order
    geotiff: dict[int, tuple] | None = field(default=None, hash=False)  # GeoTIFF tags by code

    def scaled(self, factor: float) -> ImageMetadata:
        """The metadata of the image upscaled by `factor`. Resolution follows the scale (300 dpi x4 becomes 1200
        dpi): the picture keeps the physical size it states, printed or placed, as the GeoTIFF pixel size does on
        the ground; the EXIF copy of the resolution follows too."""
        dpi = (self.dpi[0] * factor, self.dpi[1] * factor) if self.dpi else None
        return replace(self, dpi=dpi, exif=_scaled_exif(self.exif, factor),
                       geotiff=scaled_geotiff(self.geotiff, factor) if self.geotiff else None)

    def held_by(self, kind: str) -> list[str]:
        """What the output format `kind` cannot hold of this metadata (empty where it holds everything)."""
        present = {name for name, value in (("ICC profile", self.icc_profile), ("EXIF", self.exif),
                                            ("XMP", self.xmp), ("IPTC", self.iptc), ("resolution", self.dpi),
                                            ("text chunks", self.text), ("GeoTIFF tags", self.geotiff)) if value}
        return sorted(present - FORMAT_HOLDS[kind])


FORMAT_HOLDS = {
    "png": {"ICC profile", "EXIF", "XMP", "IPTC", "resolution", "text chunks"},
    "jpeg": {"ICC profile", "EXIF", "XMP", "IPTC", "resolution"},
    "webp": {"ICC profile", "EXIF", "XMP"},
    "tiff": {"ICC profile", "XMP", "IPTC", "resolution", "GeoTIFF tags"},
    "bmp": {"resolution"},
}

# Pillow's save() keywords, named as ImageMetadata's fields, and what they hold.
PILLOW_SAVE_KEYS = {"icc_profile": "ICC profile", "exif": "EXIF", "xmp": "XMP", "dpi": "resolution"}


@dataclass(frozen=True)
class LoadedImage:
    pixels: np.ndarray  # [H, W, C] upright, as stored: uint8, uint16 or float32
    bit_depth: int  # 8, 16, or 32 for floating point
    format: str  # png, jpeg, tiff, webp, bmp, gif, or another format Pillow reads (avif, jpeg2000...)
    metadata: ImageMetadata = ImageMetadata()
    # a float image's (lowest, highest) sample where they leave 0..1: the model sees the image mapped onto 0..1
    # from it, and the output goes back to it
    value_range: tuple[float, float] | None = None

    @functools.cached_property
    def tensor(self) -> torch.Tensor:
        """`[1, C, H, W]` float32 in 0..1 (made on first use: a huge image streams from `pixels` instead)."""
        return to_tensor(self.pixels, self.value_range)


def detect_format(path: str | os.PathLike) -> str:
    """The file's format from its content: the first bytes of the formats read here, else what Pillow makes of it."""
    with open(path, "rb") as handle:
        head = handle.read(16)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    for signature, name in _SIGNATURES:
        if head.startswith(signature):
            return name
    try:
        with _without_pillow_limit(), Image.open(path) as img:
            if img.format not in NOT_IMAGES and not _is_stub(img.format):
                return img.format.lower()
    except Exception:  # noqa: BLE001, S110 - whatever Pillow says, the answer is the error below
        pass
    raise ImageError(f"{Path(path).name} is not an image this tool reads (PNG, JPEG, TIFF, WebP, BMP, GIF, and the "
                     f"other formats Pillow {Image.__version__} opens)")


def read_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Reads an image file upright; palette and CMYK become RGB(A) (CMYK through its ICC profile), 16-bit stays
    16-bit, float stays float. Images of more than `max_pixels` pixels are refused with an error that says their
    size; any failure of a decoder is an ImageError naming the file."""
    path = Path(path)
    with _read_errors(path):
        kind = detect_format(path)
        if kind == "tiff":
            return _read_tiff(path, max_pixels)
        if kind == "png" and _png_bit_depth(path) == 16:
            return _read_png16(path, max_pixels)
        return _read_with_pillow(path, kind, max_pixels)


def image_shape(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int, int]:
    """(height, width, channels) from the file's header, without decoding it; the pixel limit is checked."""
    path = Path(path)
    with _read_errors(path):
        if detect_format(path) == "tiff":
            import tifffile

            with tifffile.TiffFile(path) as tif:
                page = tif.pages.first
                height, width, channels = page.imagelength, page.imagewidth, page.samplesperpixel
        else:
            with _without_pillow_limit(), Image.open(path) as img:
                (width, height), channels = img.size, min(len(img.getbands()), 4)
    _check_size(path, width, height, max_pixels)
    return height, width, channels


@contextlib.contextmanager
def _read_errors(path: Path) -> Iterator[None]:
    """Any exception a decoder raises (tifffile's IndexError for a first IFD past the end of the file, Pillow's
    OSError for a truncated JPEG...) becomes an ImageError naming the file."""
    try:
        yield
    except RealESRError:
        raise
    except Exception as exc:  # noqa: BLE001 - every decoder failure is the file's, and the run goes on
        said = str(exc).strip()
        if isinstance(exc, (OSError, ValueError, SyntaxError)) and len(said) > 3:
            raise ImageError(f"cannot read image {path}: {said}") from exc
        raise ImageError(f"cannot read image {path}: the file is damaged or cut off (the decoder failed with "
                         f"{type(exc).__name__}{': ' + said if said else ''})") from exc


@contextlib.contextmanager
def _without_pillow_limit() -> Iterator[None]:
    """Pillow's decompression-bomb check off: our own limit, with our own message, is checked from the header."""
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def _check_size(path: Path, width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageError(f"{path.name} has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageError(f"{path.name} is {width}x{height} = {width * height:,} pixels, more than the limit of "
                         f"{max_pixels:,}; raise it with --max-pixels (max_pixels=) if the image is what you expect")


def _read_with_pillow(path: Path, kind: str, max_pixels: int) -> LoadedImage:
    with _without_pillow_limit(), Image.open(path) as img:
        _check_size(path, *img.size, max_pixels)
        if kind in ANIMATED_FORMATS and getattr(img, "n_frames", 1) > 1:
            warnings.warn(f"{path.name} is animated: only its first frame is used", stacklevel=4)
        img.load()
        metadata = _pillow_metadata(img)
        array, bit_depth, icc = _pillow_pixels(img, metadata.icc_profile)
        exif = img.getexif()
    return _loaded(array, bit_depth, kind, replace(metadata, icc_profile=icc), exif)


def _loaded(array: np.ndarray, bit_depth: int, kind: str, metadata: ImageMetadata, exif: Image.Exif) -> LoadedImage:
    """Upright pixels, with the metadata to write back (the Orientation reset: the pixels are upright)."""
    orientation = int(exif.get(ORIENTATION_TAG, 1) or 1)
    if orientation != 1:
        exif[ORIENTATION_TAG] = 1
    metadata = replace(metadata, exif=exif.tobytes() if len(exif) else None)
    return LoadedImage(_upright(array, orientation), bit_depth, kind, metadata)


def _pillow_metadata(img: Image.Image) -> ImageMetadata:
    """ICC profile, XMP, IPTC, resolution and (PNG) text chunks as Pillow found them; EXIF is read apart."""
    info = img.info
    xmp = info.get("xmp")
    text = tuple((key, str(value)) for key, value in getattr(img, "text", {}).items() if key != PNG_XMP_KEY)
    dpi = info.get("dpi")
    return ImageMetadata(
        icc_profile=info.get("icc_profile") or None, xmp=(xmp.encode() if isinstance(xmp, str) else xmp) or None,
        iptc=_pillow_iptc(img), dpi=(float(dpi[0]), float(dpi[1])) if dpi and min(dpi) > 0 else None, text=text)


def _pillow_iptc(img: Image.Image) -> bytes | None:
    """IPTC-IIM records: a JPEG's in Photoshop's APP13 resources, a TIFF's in its IPTC tag."""
    for marker, data in getattr(img, "applist", ()):
        if marker == "APP13" and data.startswith(PHOTOSHOP_IRB):
            return _photoshop_resource(data[len(PHOTOSHOP_IRB) :], IPTC_RESOURCE)
    tags = getattr(img, "tag_v2", None)
    if tags is not None and TIFF_IPTC_TAG in tags:
        value = tags[TIFF_IPTC_TAG]
        return bytes(value) if isinstance(value, bytes) else struct.pack(f">{len(value)}I", *value)
    return None


def _photoshop_resource(data: bytes, wanted: int) -> bytes | None:
    """One resource of a Photoshop image resource block ('8BIM', id, padded Pascal name, size, padded data)."""
    offset = 0
    while offset + 12 <= len(data) and data[offset : offset + 4] == b"8BIM":
        resource = struct.unpack(">H", data[offset + 4 : offset + 6])[0]
        name_length = data[offset + 6]
        offset += 6 + name_length + 1 + (name_length + 1) % 2
        size = struct.unpack(">I", data[offset : offset + 4])[0]
        offset += 4
        if resource == wanted:
            return data[offset : offset + size] or None
        offset += size + size % 2
    return None


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
        metadata, exif = _png_metadata(handle)
    return _loaded(imagecodecs.png_decode(path.read_bytes()), 16, "png", metadata, exif)


def _png_metadata(handle) -> tuple[ImageMetadata, Image.Exif]:
    """The metadata chunks (iCCP, eXIf, pHYs, tEXt, zTXt, iTXt), found by walking the chunk headers without reading
    the pixel data."""
    icc, dpi, exif, text = None, None, Image.Exif(), {}
    handle.seek(8)
    while (header := handle.read(8)) and len(header) == 8:
        length, kind = struct.unpack(">I4s", header)
        if kind == b"IEND":
            break
        if kind not in (b"iCCP", b"eXIf", b"pHYs", b"tEXt", b"zTXt", b"iTXt"):
            handle.seek(length + 4, os.SEEK_CUR)
            continue
        data = handle.read(length)
        handle.seek(4, os.SEEK_CUR)
        if kind == b"iCCP":
            icc = zlib.decompress(data[data.index(b"\0") + 2 :])
        elif kind == b"eXIf":
            exif.load(b"Exif\x00\x00" + data)
        elif kind == b"pHYs":
            across, down, unit = struct.unpack(">IIB", data[:9])
            dpi = (across * INCH, down * INCH) if unit == 1 and across and down else None
        else:
            text.update([_png_text(kind, data)])
    xmp = text.pop(PNG_XMP_KEY, None)
    return ImageMetadata(icc_profile=icc, xmp=xmp.encode() if xmp else None, dpi=dpi,
                         text=tuple(text.items())), exif


def _png_text(kind: bytes, data: bytes) -> tuple[str, str]:
    """(keyword, text) of a tEXt (Latin-1), zTXt (compressed Latin-1) or iTXt (UTF-8, maybe compressed) chunk."""
    keyword, rest = data.split(b"\0", 1)
    if kind == b"tEXt":
        return keyword.decode("latin-1"), rest.decode("latin-1")
    if kind == b"zTXt":
        return keyword.decode("latin-1"), zlib.decompress(rest[1:]).decode("latin-1")
    compressed, rest = rest[0], rest[2:]
    _language, _translated, value = rest.split(b"\0", 2)
    return keyword.decode("latin-1"), (zlib.decompress(value) if compressed else value).decode("utf-8")


def _pillow_pixels(img: Image.Image, icc: bytes | None) -> tuple[np.ndarray, int, bytes | None]:
    """Stored pixels, their bit depth, and the ICC profile that describes them (a CMYK image is converted through
    its own profile to sRGB and tagged sRGB; its CMYK profile would be wrong in an RGB file)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(img)
        if img.mode != "I" or array.max() > 255:
            return array.astype(np.uint16), 16, icc
        return array.astype(np.uint8), 8, icc
    if img.mode == "F":
        return np.asarray(img, dtype=np.float32), 32, icc
    if img.mode == "CMYK":
        return _cmyk_to_srgb(img, icc)
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode not in ("L", "LA", "RGB", "RGBA"):
        img = img.convert("RGBA" if "A" in img.mode else "RGB")
    return np.asarray(img), 8, icc


def _cmyk_to_srgb(img: Image.Image, icc: bytes | None) -> tuple[np.ndarray, int, bytes | None]:
    """A CMYK image through its own profile (relative colorimetric with black point compensation, Photoshop's
    default) into sRGB; without a CMYK profile, Pillow's formula, and no profile."""
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(io.BytesIO(icc)) if icc else None
    if profile is None or profile.profile.xcolor_space.strip() != "CMYK":
        return np.asarray(img.convert("RGB")), 8, None
    converted = ImageCms.profileToProfile(img, profile, _srgb(), outputMode="RGB",
                                          renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
                                          flags=ImageCms.Flags.BLACKPOINTCOMPENSATION)
    return np.asarray(converted), 8, _srgb().tobytes()


@functools.cache
def _srgb():
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


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
        metadata, orientation = tiff_metadata(page)
    if axes.startswith("S"):  # planar: samples first
        array = np.moveaxis(array, 0, -1)
    array = array.reshape(height, width, -1)
    if array.shape[2] not in (1, 2, 3, 4):
        raise ImageError(f"{path.name} has {array.shape[2]} samples per pixel; expected gray, RGB or either with alpha")
    value_range = None
    if array.dtype.kind == "f":
        array, value_range = _float_samples(path, array)
    elif array.dtype not in (np.uint8, np.uint16):
        raise ImageError(f"{path.name} holds {array.dtype} samples; expected 8- or 16-bit integers or floats")
    bit_depth = {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16}.get(array.dtype, 32)
    return LoadedImage(_upright(array, orientation), bit_depth, "tiff", metadata, value_range)


def _float_samples(path: Path, array: np.ndarray) -> tuple[np.ndarray, tuple[float, float] | None]:
    """Float samples as float32, and their range where they leave 0..1 (an HDR or scientific image): the output
    keeps floats and that range."""
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise ImageError(f"{path.name} holds NaN or infinite samples, which cannot be upscaled; replace them first")
    low, high = float(array.min()), float(array.max())
    return array, (None if low >= 0 and high <= 1 else (min(low, 0.0), max(high, 1.0)))


def tiff_metadata(page) -> tuple[ImageMetadata, int]:
    """A TIFF page's metadata (ICC profile, XMP, IPTC, resolution, GeoTIFF tags) and orientation."""
    tags = page.tags
    icc, xmp, iptc = (tags.valueof(name) for name in ("InterColorProfile", TIFF_XMP_TAG, TIFF_IPTC_TAG))
    geotiff = {code: tags[code].value for code in GEOTIFF_TAGS if code in tags}
    if iptc is not None and not isinstance(iptc, bytes):  # written as 32-bit integers, as Photoshop does
        iptc = np.asarray(iptc, dtype=page.parent.byteorder + "u4").tobytes()
    metadata = ImageMetadata(icc_profile=bytes(icc) if icc else None, xmp=bytes(xmp) if xmp else None,
                             iptc=iptc or None, dpi=_tiff_dpi(tags), geotiff=geotiff or None)
    return metadata, int(tags.valueof("Orientation") or 1)


def _tiff_dpi(tags) -> tuple[float, float] | None:
    across, down = tags.valueof("XResolution"), tags.valueof("YResolution")
    unit = int(tags.valueof("ResolutionUnit") or 2)
    if not across or not down or unit not in (2, 3):  # 1: no absolute unit (an aspect ratio only)
        return None
    per_inch = 2.54 if unit == 3 else 1.0  # 3: per centimetre
    return tuple(float(Fraction(*value) if isinstance(value, tuple) else value) * per_inch for value in (across, down))


def _scaled_exif(exif: bytes | None, factor: float) -> bytes | None:
    """EXIF with its X/YResolution multiplied by `factor` (where it has them), like the file's own resolution."""
    if not exif:
        return exif
    parsed = Image.Exif()
    parsed.load(exif)
    if X_RESOLUTION_TAG not in parsed and Y_RESOLUTION_TAG not in parsed:
        return exif
    for tag in (X_RESOLUTION_TAG, Y_RESOLUTION_TAG):
        if tag in parsed:
            parsed[tag] = Fraction(float(parsed[tag]) * factor).limit_denominator(10_000)
    return parsed.tobytes()


def _upright(array: np.ndarray, orientation: int) -> np.ndarray:
    """Pixels as the EXIF Orientation says they are meant to be seen (the transposes Pillow's exif_transpose uses)."""
    if array.ndim == 2:
        array = array[..., None]
    turns = {1: lambda a: a, 2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
             5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, -1), 7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],
             8: lambda a: np.rot90(a, 1)}
    return np.ascontiguousarray(turns.get(orientation, turns[1])(array))


def to_tensor(hwc: np.ndarray, value_range: tuple[float, float] | None = None) -> torch.Tensor:
    """Stored pixels `[H, W, C]` (uint8, uint16 or float; floats mapped from `value_range` where given) as
    `[1, C, H, W]` float32 in 0..1."""
    if hwc.shape[0] == 0 or hwc.shape[1] == 0:
        raise ImageError(f"image has no pixels ({hwc.shape[1]}x{hwc.shape[0]})")
    tensor = rearrange(torch.from_numpy(hwc.astype(np.float32)), "h w c -> 1 c h w")
    if hwc.dtype.kind != "f":
        return tensor / (65535.0 if hwc.dtype == np.uint16 else 255.0)
    if value_range is None:
        return tensor.clamp(0, 1)
    low, high = value_range
    return (tensor - low) / (high - low)


def to_pixels(image: torch.Tensor, bit_depth: int, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """`[C, H, W]` or `[1, C, H, W]` in 0..1 as stored pixels `[H, W, C]`: uint8, uint16, or float32 for a bit
    depth of 32. Where a float image's `value_range` is given, the values go back onto it first (integers then keep
    its 0..1 part, as a viewer shows it)."""
    if image.dim() == 4:
        image = image[0]
    hwc = rearrange(image.detach().float().clamp(0, 1), "c h w -> h w c").cpu().numpy()
    if value_range is not None:
        low, high = value_range
        hwc = hwc * (high - low) + low
    if bit_depth == 32:
        return hwc.astype(np.float32)
    peak, dtype = (65535, np.uint16) if bit_depth == 16 else (255, np.uint8)
    return np.round(np.clip(hwc, 0, 1) * peak).astype(dtype)


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
                metadata: ImageMetadata | None = None, value_range: tuple[float, float] | None = None) -> Path:
    """Writes `[1, C, H, W]` or `[C, H, W]` (0..1) in the format its suffix names: PNG in 8 or 16 bits, TIFF in 8,
    16 or 32-bit float (mapped back onto `value_range` where given), JPEG and WebP at `quality`, BMP. The metadata
    goes where the format holds it; what it cannot hold is named in a warning."""
    path = Path(path)
    kind = output_format(path)
    metadata = metadata or ImageMetadata()
    channels = image.shape[-3]
    if channels in (2, 4) and kind in ("jpeg", "bmp"):
        raise ImageError(f"{path.name}: {kind.upper()} cannot store transparency; write a .png, .tif or .webp")
    if left_out := metadata.held_by(kind):
        warnings.warn(f"{path.name}: a {kind.upper()} file cannot hold the source's {', '.join(left_out)}; they are "
                      f"left out (PNG, TIFF, JPEG and WebP each hold most)", stacklevel=2)
    bits = bit_depth if kind == "tiff" and bit_depth in (16, 32) else 16 if bit_depth > 8 and kind == "png" else 8
    array = to_pixels(image, bits, value_range)
    if kind == "tiff":
        writer = _tiff_writer(array, metadata)
    elif kind == "png":
        writer = _png_writer(array, metadata)
    else:
        writer = _pillow_writer(array, kind, quality, metadata)
    return write_atomically(path, writer)


def output_format(path: Path) -> str:
    kind = WRITABLE_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise ImageError(f"{path.name}: cannot write {path.suffix or 'files without a suffix'}; "
                         f"write one of {', '.join(WRITABLE_SUFFIXES)}")
    return kind


def _pillow_image(array: np.ndarray) -> Image.Image:
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[array.shape[2]]
    return Image.fromarray(array[..., 0] if mode == "L" else array, mode)


def _pillow_writer(array: np.ndarray, kind: str, quality: int, metadata: ImageMetadata) -> Callable[[Path], None]:
    """JPEG, WebP and BMP through Pillow, with what each holds; a JPEG's IPTC goes into an APP13 segment."""
    img = _pillow_image(array)
    options = {key: getattr(metadata, key) for key, label in PILLOW_SAVE_KEYS.items()
               if getattr(metadata, key) and label in FORMAT_HOLDS[kind]}
    if kind in ("jpeg", "webp"):
        options["quality"] = quality

    def write(target: Path) -> None:
        if kind == "jpeg" and metadata.iptc:
            encoded = io.BytesIO()
            img.save(encoded, format="JPEG", **options)
            target.write_bytes(_with_app13(encoded.getvalue(), metadata.iptc))
        else:
            img.save(target, format=kind.upper(), **options)

    return write


def _with_app13(jpeg: bytes, iptc: bytes) -> bytes:
    """The JPEG with Photoshop's APP13 segment holding the IPTC records, after its other APPn segments."""
    resource = b"8BIM" + struct.pack(">H", IPTC_RESOURCE) + b"\0\0" + struct.pack(">I", len(iptc)) + iptc
    payload = PHOTOSHOP_IRB + resource + b"\0" * (len(iptc) % 2)
    segment = b"\xff\xed" + struct.pack(">H", len(payload) + 2) + payload
    offset = 2
    while jpeg[offset] == 0xFF and 0xE0 <= jpeg[offset + 1] <= 0xEF:
        offset += 2 + struct.unpack(">H", jpeg[offset + 2 : offset + 4])[0]
    return jpeg[:offset] + segment + jpeg[offset:]


def _png_writer(array: np.ndarray, metadata: ImageMetadata) -> Callable[[Path], None]:
    """PNG pixels from imagecodecs (16-bit: Pillow cannot) or Pillow, then the metadata chunks after the header."""
    chunks = _png_metadata_chunks(metadata)

    def write(target: Path) -> None:
        if array.dtype == np.uint16:
            import imagecodecs

            encoded = imagecodecs.png_encode(np.ascontiguousarray(array if array.shape[2] > 1 else array[..., 0]),
                                             **FAST_PNG)
        elif not chunks:
            _pillow_image(array).save(target, format="PNG")  # straight to the file: no copy of it in memory
            return
        else:
            buffer = io.BytesIO()
            _pillow_image(array).save(buffer, format="PNG")
            encoded = buffer.getvalue()
        header_end = 8 + 25  # signature, then the IHDR chunk: iCCP and pHYs must come before the pixels
        target.write_bytes(encoded[:header_end] + chunks + encoded[header_end:])

    return write


def _png_metadata_chunks(metadata: ImageMetadata) -> bytes:
    chunks = b""
    if metadata.icc_profile:
        chunks += _png_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(metadata.icc_profile))
    if metadata.dpi:
        across, down = (round(value / INCH) for value in metadata.dpi)
        chunks += _png_chunk(b"pHYs", struct.pack(">IIB", across, down, 1))
    if metadata.exif:
        chunks += _png_chunk(b"eXIf", metadata.exif.removeprefix(b"Exif\x00\x00"))
    text = list(metadata.text)
    if metadata.xmp:
        text.append((PNG_XMP_KEY, metadata.xmp.decode("utf-8", "replace")))
    if metadata.iptc and PNG_IPTC_KEY not in dict(text):
        text.append((PNG_IPTC_KEY, _raw_profile("iptc", metadata.iptc)))
    for keyword, value in text:  # iTXt: UTF-8 holds any text; compressed past a few hundred bytes
        packed = value.encode("utf-8")
        compress = len(packed) > 256
        body = zlib.compress(packed) if compress else packed
        chunks += _png_chunk(b"iTXt", keyword.encode("latin-1")[:79] + b"\0" + bytes([compress, 0]) + b"\0\0" + body)
    return chunks


def _raw_profile(name: str, data: bytes) -> str:
    """ImageMagick's text form of a binary profile in a PNG (read by exiftool and ImageMagick): name, length, hex."""
    hexed = data.hex()
    return f"\n{name}\n{len(data):8d}\n" + "\n".join(hexed[i : i + 72] for i in range(0, len(hexed), 72)) + "\n"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _tiff_writer(array: np.ndarray, metadata: ImageMetadata) -> Callable[[Path], None]:
    data = array if array.shape[2] > 1 else array[..., 0]

    def write(target: Path) -> None:
        write_tiff(target, data, data.shape, data.dtype, metadata)

    return write


def write_tiff(target: Path, data, shape: tuple[int, ...], dtype: np.dtype, metadata: ImageMetadata | None = None,
               tile: tuple[int, int] | None = None) -> None:
    """A deflate-compressed TIFF (BigTIFF past 2 GiB) of an array, or, with `tile`, of an iterator of tiles in row
    order (the image is then never in memory), with the metadata a TIFF holds."""
    import tifffile

    metadata = metadata or ImageMetadata()
    channels = shape[2] if len(shape) == 3 else 1
    extratags = [(code, GEOTIFF_TAGS[code], len(value) if not isinstance(value, str) else 0, value, True)
                 for code, value in (metadata.geotiff or {}).items()]
    extratags += [(code, 7, len(value), value, True)  # 7: undefined bytes
                  for code, value in ((TIFF_XMP_TAG, metadata.xmp), (TIFF_IPTC_TAG, metadata.iptc)) if value]
    resolution = {"resolution": metadata.dpi, "resolutionunit": "INCH"} if metadata.dpi else {}
    floating = np.dtype(dtype).kind == "f"
    tifffile.imwrite(target, data, shape=shape, dtype=dtype, photometric="minisblack" if channels <= 2 else "rgb",
                     extrasamples=("unassalpha",) if channels in (2, 4) else None, compression="zlib",
                     compressionargs={"level": 1}, predictor=3 if floating else True, iccprofile=metadata.icc_profile,
                     tile=tile, extratags=extratags, metadata=None, **resolution,
                     bigtiff=int(np.prod(shape)) * np.dtype(dtype).itemsize > 2**31)
