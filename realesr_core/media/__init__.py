"""Files in and out: still images today (PNG, JPEG, TIFF, WebP, BMP, GIF; 8/16-bit, orientation, ICC and EXIF kept);
video and images larger than memory come with the media issue."""

from .images import DEFAULT_MAX_PIXELS, READABLE_SUFFIXES, LoadedImage, detect_format, read_image, write_image

__all__ = ["DEFAULT_MAX_PIXELS", "READABLE_SUFFIXES", "LoadedImage", "detect_format", "read_image", "write_image"]
