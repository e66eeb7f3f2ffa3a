"""Files in and out: still images (PNG, JPEG, TIFF, WebP, BMP, GIF and whatever else Pillow reads; 8/16-bit and
float; orientation, ICC, EXIF, XMP, IPTC, resolution, PNG text and GeoTIFF tags kept), images larger than memory
streamed into tiled TIFFs (`huge`), and videos through PyAV (`video`, optional extra). Adapters import from here."""

from .huge import (
    TileRowPlan,
    open_for_streaming,
    output_fits_in_memory,
    plan_tile_rows,
    upscale_tile_row,
    upscale_to_tiff,
    write_tile_rows,
)
from .images import (
    DEFAULT_MAX_PIXELS,
    READABLE_SUFFIXES,
    ImageMetadata,
    LoadedImage,
    detect_format,
    image_shape,
    output_format,
    read_image,
    to_pixels,
    to_tensor,
    write_image,
)
from .kinds import media_kind
from .upscale_file import upscale_image_file
from .video import (
    SVT_AV1_PRESETS,
    VIDEO_SUFFIXES,
    X26X_PRESETS,
    SourceFacts,
    VideoError,
    VideoOptions,
    VideoPlan,
    VideoResult,
    check_encoding,
    frame_size,
    join_segments,
    plan_video,
    scan_video,
    upscale_video,
    write_segment,
)

__all__ = ["DEFAULT_MAX_PIXELS", "READABLE_SUFFIXES", "SVT_AV1_PRESETS", "VIDEO_SUFFIXES", "X26X_PRESETS",
           "ImageMetadata", "LoadedImage", "SourceFacts", "TileRowPlan", "VideoError", "VideoOptions", "VideoPlan",
           "VideoResult", "check_encoding", "detect_format", "frame_size", "image_shape", "join_segments", "media_kind",
           "open_for_streaming", "output_fits_in_memory", "output_format", "plan_tile_rows", "plan_video", "read_image",
           "scan_video", "to_pixels", "to_tensor", "upscale_image_file", "upscale_to_tiff", "upscale_tile_row",
           "upscale_video", "write_image", "write_segment", "write_tile_rows"]
