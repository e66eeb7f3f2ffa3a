"""The Upscale Video node on real clips made in-process: frames, size, audio kept; progress per frame; Cancel (between
frames and within one) leaves nothing in the folder it writes to; VIDEO kinds other than a file; queue-time checks."""

from __future__ import annotations

import io
import shutil
import sys
import types
from pathlib import Path

import pytest
import torch

from nodes import NODE_CLASS_MAPPINGS
from nodes.upscale_model import to_upscale_model

from helpers import make_clip

av = pytest.importorskip("av")
NODE = NODE_CLASS_MAPPINGS["RealESR_UpscaleVideo"]
FRAMES = 10


def _upscale(model, video, **overrides):
    options = dict(codec="libx264", crf=18, preset="ultrafast", bit_depth="as source", tile=0, overlap=32,
                   precision="fp32", skip_duplicates=0.0)
    options.update(overrides)
    (out,) = NODE().upscale(model, video, **options)
    return out


def _streams(path: Path) -> tuple[int, tuple[int, int], list[str]]:
    """Frames decoded, frame size, and the kinds of every stream."""
    with av.open(str(path)) as container:
        frames = [frame for frame in container.decode(video=0)]
        return len(frames), (frames[0].width, frames[0].height), [s.type for s in container.streams]


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return make_clip(tmp_path / "clip.mp4", frames=FRAMES, keyframe_every=4)


@pytest.fixture
def comfy_temp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """ComfyUI's folder_paths with its temp directory in the test's folder."""
    folder = tmp_path / "comfy_temp"
    module = types.ModuleType("folder_paths")
    module.get_temp_directory = lambda: str(folder)
    monkeypatch.setitem(sys.modules, "folder_paths", module)
    return folder


class VideoFromFile:
    """Core's file-backed VIDEO, as much of it as the node and Save Video use."""

    def __init__(self, file):
        self.file = file

    def get_stream_source(self):
        return self.file


def test_frames_size_and_audio_without_comfyui(compact, clip: Path) -> None:
    """Plain Python: a VIDEO is a path; every frame comes out at x4 with the audio stream beside it."""
    out = _upscale(to_upscale_model(compact), clip)
    try:
        assert isinstance(out, Path) and out.suffix == ".mp4"
        assert _streams(out) == (FRAMES, (128, 96), ["video", "audio"])
    finally:
        shutil.rmtree(out.parent)


def test_in_comfyui_progress_per_frame_and_a_file_backed_video(compact, clip: Path, fake_comfy, comfy_temp: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """ComfyUI's VideoFromFile in and out (the output names a file in the temp directory, which Save Video copies);
    the bar moves once per frame; the model is loaded through its patcher with room for a frame's tiles."""
    video_types = types.ModuleType("comfy_api.input_impl")
    video_types.VideoFromFile = VideoFromFile
    monkeypatch.setitem(sys.modules, "comfy_api.input_impl", video_types)
    model = to_upscale_model(compact)
    model.patcher = types.SimpleNamespace(load_device=torch.device("cpu"))
    out = _upscale(model, VideoFromFile(str(clip)))
    assert isinstance(out, VideoFromFile)
    path = Path(out.get_stream_source())
    assert path.is_relative_to(comfy_temp) and _streams(path) == (FRAMES, (128, 96), ["video", "audio"])
    assert [done for done, _ in fake_comfy["updates"]] == list(range(1, FRAMES + 1))
    [(loaded, working_memory, _)] = fake_comfy["loads"]
    assert loaded == [model.patcher] and working_memory > 32 * 24 * 3 * 4


@pytest.mark.parametrize("how", ["between frames", "within a frame"])
def test_cancel_leaves_nothing_behind(compact, clip: Path, fake_comfy, comfy_temp: Path, how: str) -> None:
    """Cancel ends the run as ComfyUI's own interruption, and neither the result, its temporary name nor the
    writer's segment folder is left in the folder it writes to."""
    if how == "between frames":
        fake_comfy["cancel_after"] = 3
    else:
        fake_comfy["interrupt_after_updates"] = 2  # pressed during the third frame: the engine's check finds it
    with pytest.raises(fake_comfy["Interrupted"]):
        _upscale(to_upscale_model(compact), clip, tile=32)
    assert 0 < len(fake_comfy["updates"]) < FRAMES
    if how == "within a frame":
        assert len(fake_comfy["updates"]) == 2 and fake_comfy["raised_by"] == "node"
    assert list(comfy_temp.iterdir()) == []


def test_a_bad_file_is_a_clear_error_and_leaves_nothing(compact, tmp_path: Path, comfy_temp: Path) -> None:
    from realesr_core.media.video import VideoError

    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    with pytest.raises(VideoError, match="cannot read video"):
        _upscale(to_upscale_model(compact), broken)
    assert list(comfy_temp.iterdir()) == []


def test_videos_held_in_memory_or_made_from_frames(compact, clip: Path, comfy_temp: Path) -> None:
    """A VIDEO whose file is in memory is copied out; one made from frames (whose stream source ComfyUI 0.8.0
    cannot make) is saved as MP4 by ComfyUI first. Only the result stays."""

    class FromFrames:
        def get_stream_source(self):
            raise ValueError("Could not determine output format")

        def save_to(self, path):
            shutil.copyfile(clip, path)

    for video in (VideoFromFile(io.BytesIO(clip.read_bytes())), FromFrames()):
        out = _upscale(to_upscale_model(compact), video)
        assert _streams(out)[:2] == (FRAMES, (128, 96))
        assert [p.name for p in out.parent.iterdir()] == [out.name]


def test_queue_time_checks() -> None:
    check = NODE.VALIDATE_INPUTS
    assert check(codec="libx264", crf=18, preset="medium", tile=0, overlap=32) is True
    assert check(codec="libsvtav1", crf=40, preset="8", tile=0, overlap=32) is True
    assert "0 to 51" in check(codec="libx264", crf=60, preset="medium", tile=0, overlap=32)
    assert "no preset 'medium'" in check(codec="libsvtav1", crf=30, preset="medium", tile=0, overlap=32)
    assert "codec must be one of" in check(codec="ffv1", crf=18, preset="medium", tile=0, overlap=32)
    assert "no encoder preset" in check(codec="libx264", crf=18, preset="fastest", tile=0, overlap=32)
    assert "tile must be 0 (auto) or 16..8192" in check(codec="libx264", crf=18, preset="medium", tile=8, overlap=32)


def test_nvenc_without_an_nvidia_gpu_is_refused_at_queue_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert "NVIDIA GPU" in NODE.VALIDATE_INPUTS(codec="hevc_nvenc", crf=18, preset="medium", tile=0, overlap=32)
