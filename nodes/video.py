"""Upscale Video: core's VIDEO in, a file-backed VIDEO out, frames streamed through the engine and the library's
video writer (never the whole clip in memory)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from realesr_core import RealESRError
from realesr_core.media import (
    SVT_AV1_PRESETS,
    X26X_PRESETS,
    VideoOptions,
    check_encoding,
    frame_size,
    upscale_video,
)

from . import comfy_env
from .upscale import TILING_INPUTS, cancelled_as_comfyui, check_tiling, model_on_device, progress_for_comfyui

# The encoders whose streams an MP4 holds: Save Video copies our file's streams into an .mp4 unchanged.
CODECS = ["libx264", "libx265", "libsvtav1", "h264_nvenc", "hevc_nvenc", "av1_nvenc"]
ENCODER_PRESET_NAMES = [*X26X_PRESETS, *SVT_AV1_PRESETS]
BIT_DEPTHS = ["as source", "8", "10"]


class UpscaleVideo:
    DESCRIPTION = ("Upscales a video (from Load Video or any node that outputs VIDEO) at the model's scale, frame by "
                   "frame as it is decoded, encoding as it goes: memory holds a few frames, never the clip. Audio and "
                   "subtitle streams are copied unchanged, timestamps (variable frame rate too), colour properties "
                   "and 10-bit depth are kept. The result is a video file in ComfyUI's temp folder; connect Save "
                   "Video to keep it (it copies the streams, no second encode). Cancel stops within a frame and "
                   "leaves no file behind.")
    CATEGORY = "image/video"
    FUNCTION = "upscale"
    RETURN_TYPES = ("VIDEO",)
    OUTPUT_TOOLTIPS = ("The upscaled video, an MP4 file with the source's audio and subtitles.",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "upscale_model": ("UPSCALE_MODEL", {"tooltip": "From our loader or ComfyUI's Load Upscale Model."}),
            "video": ("VIDEO", {"tooltip": "The video to upscale, e.g. from Load Video."}),
            "codec": (CODECS, {"default": "libx264", "tooltip": (
                "Encoder of the upscaled video: libx264 (H.264, plays everywhere), libx265 (HEVC, smaller), "
                "libsvtav1 (AV1, smallest, slowest), *_nvenc on an NVIDIA GPU (fast; crf and preset unused).")}),
            "crf": ("INT", {"default": 18, "min": 0, "max": 63, "tooltip": (
                "Quality: lower is better and larger. x264 / x265 take 0 to 51 (18 looks lossless), SVT-AV1 0 to "
                "63 (about 25 for the same look).")}),
            "preset": (ENCODER_PRESET_NAMES, {"default": "medium", "tooltip": (
                "Encoder speed: slower presets give smaller files at the same quality. x264 / x265 by name "
                "(ultrafast .. placebo), SVT-AV1 by number (0 slowest .. 13 fastest).")}),
            "bit_depth": (BIT_DEPTHS, {"default": "as source", "tooltip": (
                "8 or 10 bits per sample; 'as source' keeps a 10-bit video 10-bit.")}),
            **TILING_INPUTS,
            "skip_duplicates": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 10.0, "step": 0.1, "tooltip": (
                "A frame whose mean difference from the previous one is at most this many 8-bit levels reuses its "
                "result (anime holds drawings for several frames); 0 upscales every frame.")}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, codec: str, crf: int, preset: str, tile: int, overlap: int) -> bool | str:
        tiling = check_tiling(tile, overlap)
        if tiling is not True:
            return tiling
        if codec not in CODECS:
            return f"codec must be one of {', '.join(CODECS)} (what an MP4 holds), got {codec!r}"
        if preset not in ENCODER_PRESET_NAMES:
            return f"preset {preset!r} is no encoder preset"
        try:
            check_encoding(VideoOptions(codec=codec, crf=crf, preset=preset))
        except RealESRError as exc:
            return str(exc)
        return True

    def upscale(self, upscale_model: Any, video: Any, codec: str, crf: int, preset: str, bit_depth: str, tile: int,
                overlap: int, precision: str, skip_duplicates: float) -> tuple[Any]:
        options = VideoOptions(codec=codec, crf=crf, preset=preset,
                               bit_depth=None if bit_depth == "as source" else int(bit_depth),
                               frames_per_batch=1,  # progress and Cancel per frame; the engine runs frames singly
                               skip_duplicates=skip_duplicates or None)
        # A folder of its own holds the result and the writer's segments, so a failure or Cancel removes it whole.
        folder = Path(tempfile.mkdtemp(prefix="realesr_video_", dir=comfy_env.temp_folder()))
        try:
            source = _source_file(video, folder)
            width, height = frame_size(source)
            with model_on_device(upscale_model, torch.empty(1, 3, height, width, device="meta"), tile=tile,
                                 overlap=overlap, precision=precision) as (model, engine_options):
                target = folder / f"{source.stem}_x{model.scale}.mp4"
                with cancelled_as_comfyui():
                    upscale_video(model, source, target, engine_options, options, progress=progress_for_comfyui(),
                                  cancel=comfy_env.processing_interrupted)
            if source.parent == folder:
                source.unlink()
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return (comfy_env.video_from_file(target),)


def _source_file(video: Any, folder: Path) -> Path:
    """The VIDEO as a file: its own file where it has one (Load Video's), else a copy in `folder` of the bytes it
    holds in memory, or (a video made from frames) the MP4 that ComfyUI encodes from them."""
    if isinstance(video, (str, Path)):
        return Path(video)
    copy = folder / "source.mp4"
    try:
        stream = video.get_stream_source()
    except ValueError:  # 0.8.0's default for videos made from frames cannot name a format for an in-memory copy
        video.save_to(str(copy))
        return copy
    if isinstance(stream, str):
        return Path(stream)
    stream.seek(0)
    with copy.open("wb") as file:
        shutil.copyfileobj(stream, file)
    return copy
