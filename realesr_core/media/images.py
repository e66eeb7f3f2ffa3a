"""Reading and writing image files as float tensors `[1, C, H, W]` in 0..1 (C = 1, 3 or 4), keeping 16-bit depth."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from PIL import Image, UnidentifiedImageError

from ..errors import ImageError
from .png16 import is_16bit_png, read_png16, write_png16
from .tiff16 import is_16bit_tiff, read_tiff16, write_tiff16

READABLE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class LoadedImage:
    tensor: torch.Tensor  # [1, C, H, W] float32 in 0..1
    bit_depth: int  # 8 or 16


def read_image(path: str | os.PathLike) -> LoadedImage:
    """Reads an image file; palette and CMYK images become RGB(A), 16-bit images stay 16-bit."""
    for is_16bit, read in ((is_16bit_png, read_png16), (is_16bit_tiff, read_tiff16)):
        if is_16bit(Path(path)):
            return LoadedImage(_to_tensor(read(Path(path)).astype(np.float32) / 65535.0), 16)
    try:
        with Image.open(path) as img:
            img.load()
            return _from_pil(img)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ImageError(f"cannot read image {path}: {exc}") from exc


def _from_pil(img: Image.Image) -> LoadedImage:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(img, dtype=np.float32)
        peak = 65535.0 if img.mode != "I" or array.max() > 255 else 255.0
        return LoadedImage(_to_tensor(array[..., None] / peak), 16 if peak > 255 else 8)
    if img.mode == "F":
        return LoadedImage(_to_tensor(np.clip(np.asarray(img, dtype=np.float32), 0, 1)[..., None]), 16)
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode not in ("L", "LA", "RGB", "RGBA"):
        img = img.convert("RGBA" if "A" in img.mode else "RGB")
    array = np.asarray(img, dtype=np.float32) / 255.0
    if array.ndim == 2:
        array = array[..., None]
    return LoadedImage(_to_tensor(array), 8)


def _to_tensor(hwc: np.ndarray) -> torch.Tensor:
    if hwc.shape[0] == 0 or hwc.shape[1] == 0:
        raise ImageError(f"image has no pixels ({hwc.shape[1]}x{hwc.shape[0]})")
    return rearrange(torch.from_numpy(np.ascontiguousarray(hwc)), "h w c -> 1 c h w").float()


def write_image(path: str | os.PathLike, image: torch.Tensor, bit_depth: int = 8) -> Path:
    """Writes `[1, C, H, W]` or `[C, H, W]` (0..1) as PNG/JPEG/WebP/TIFF by suffix.

    16-bit output for PNG and TIFF."""
    path = Path(path)
    if image.dim() == 4:
        image = image[0]
    hwc = rearrange(image.detach().float().clamp(0, 1), "c h w -> h w c").cpu().numpy()
    channels = hwc.shape[2]
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    writers = {".png": write_png16, ".tif": write_tiff16, ".tiff": write_tiff16}
    if bit_depth == 16 and suffix in writers:
        writers[suffix](path, np.round(hwc * 65535).astype(np.uint16))
        return path
    if channels in (2, 4) and suffix in (".jpg", ".jpeg"):
        raise ImageError(f"{path.name}: JPEG cannot store transparency; write a .png")
    array = np.round(hwc * 255).astype(np.uint8)
    Image.fromarray(array[..., 0] if channels == 1 else array, {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels]).save(path)
    return path
