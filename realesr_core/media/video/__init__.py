"""Video files through the upscaler with PyAV (optional extra `video`): in-process FFmpeg, no executable, no shell.

Frames are decoded, upscaled in small batches and encoded as they come, so memory holds a batch, never the clip.
Every other stream is copied packet for packet (a muxer that cannot hold one says so in a warning), with the
chapters, titles, languages and timecode; timestamps are kept (variable frame rate stays in sync); colour
properties, sample aspect ratio, chroma subsampling, HDR10 metadata, the display matrix and 10-bit depth are
carried; the default encoder is the source's family. Damaged and cut-off files are decoded past the damage with a
warning that counts the lost frames. The result is written beside its name and renamed.

`probe` reads what the file says about itself, `encoding` runs one segment's frames through decoder, upscaler and
encoder, `segments` cuts the clip at keyframes, keeps finished segments for a resumed run and joins them.
"""

from .encoding import CRF_ENCODERS, ENCODER_PRESETS, SVT_AV1_PRESETS, X26X_PRESETS, VideoOptions, check_encoding
from .probe import VIDEO_SUFFIXES, SourceFacts, VideoError, frame_size
from .segments import (
    SEGMENT_SECONDS,
    VideoPlan,
    VideoResult,
    join_segments,
    plan_video,
    scan_video,
    upscale_video,
    write_segment,
)

__all__ = ["CRF_ENCODERS", "ENCODER_PRESETS", "SEGMENT_SECONDS", "SVT_AV1_PRESETS", "VIDEO_SUFFIXES", "X26X_PRESETS",
           "SourceFacts", "VideoError", "VideoOptions", "VideoPlan", "VideoResult", "check_encoding", "frame_size",
           "join_segments", "plan_video", "scan_video", "upscale_video", "write_segment"]
