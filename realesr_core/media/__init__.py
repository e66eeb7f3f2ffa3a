"""Files in and out: still images today (8/16-bit PNG and TIFF, JPEG, WebP, BMP); video and images larger than
memory come with the media issue."""

from .images import READABLE_SUFFIXES, LoadedImage, read_image, write_image

__all__ = ["READABLE_SUFFIXES", "LoadedImage", "read_image", "write_image"]
