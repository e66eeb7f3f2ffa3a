"""Video through the upscaler: frames, timestamps, audio and bit depth kept; bad files get clear errors and leave
nothing behind. Clips are made in-process with PyAV."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from realesr_core.media.video import VideoError, VideoOptions, upscale_video

from helpers import make_clip

av = pytest.importorskip("av")


def frame_times(path: Path) -> list[int]:
    with av.open(str(path)) as container:
        return [frame.pts for frame in container.decode(video=0)]


def test_frames_timestamps_and_audio_are_kept(compact, tmp_path: Path) -> None:
    source = make_clip(tmp_path / "clip.mkv")
    seen = []
    result = upscale_video(compact, source, tmp_path / "big.mkv", progress=lambda done, total: seen.append(done))
    assert (result.frames, result.size, result.copied_streams, result.bit_depth) == (10, (128, 96), 1, 8)
    assert frame_times(tmp_path / "big.mkv") == frame_times(source)
    with av.open(str(tmp_path / "big.mkv")) as container:
        assert container.streams.audio[0].codec_context.name == "aac"
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    with av.open(str(source)) as container:
        sound_in = [bytes(p) for p in container.demux(audio=0) if p.size]
    with av.open(str(tmp_path / "big.mkv")) as container:
        sound_out = [bytes(p) for p in container.demux(audio=0) if p.size]
    assert sound_in == sound_out  # copied packet for packet, not re-encoded
    assert frames[0].shape == (96, 128, 3) and seen[-1] == 10


def test_ten_bit_source_gives_ten_bit_output(compact, tmp_path: Path) -> None:
    source = make_clip(tmp_path / "deep.mkv", frames=4, audio=False, ten_bit=True)
    result = upscale_video(compact, source, tmp_path / "deep_x4.mkv", video=VideoOptions(crf=10))
    assert result.bit_depth == 10
    with av.open(str(tmp_path / "deep_x4.mkv")) as container:
        assert container.streams.video[0].codec_context.pix_fmt == "yuv420p10le"


@pytest.mark.parametrize("damage", ["truncated", "no video", "not a video", "no frames"])
def test_bad_files_are_clear_errors_and_leave_nothing(compact, tmp_path: Path, damage: str) -> None:
    source = tmp_path / "in.mkv"
    if damage == "truncated":
        make_clip(source)
        source.write_bytes(source.read_bytes()[:300])
    elif damage == "no video":
        with av.open(str(source), "w") as out:
            sound = out.add_stream("aac", rate=22050)
            sound.layout = "mono"
            tone = av.AudioFrame.from_ndarray(np.zeros((1, 2048), np.float32), format="fltp", layout="mono")
            tone.sample_rate = 22050
            for packet in [*sound.encode(tone), *sound.encode(None)]:
                out.mux(packet)
    elif damage == "no frames":
        with av.open(str(source), "w") as out:
            stream = out.add_stream("libx264", rate=12)
            stream.width, stream.height, stream.pix_fmt = 32, 24, "yuv420p"
            out.start_encoding()  # the header, with its video stream, and not one frame
    else:
        source.write_text("hello")
    with pytest.raises(VideoError):
        upscale_video(compact, source, tmp_path / "out.mkv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mkv"]


def test_held_drawings_are_upscaled_once(compact, tmp_path: Path) -> None:
    """Anime holds a drawing for several frames: with skip_duplicates those frames reuse the first one's result."""
    source = make_clip(tmp_path / "held.mkv", frames=9, audio=False, hold=3)
    calls = []
    result = upscale_video(compact, source, tmp_path / "held_x4.mkv",
                           video=VideoOptions(skip_duplicates=0.5, frames_per_batch=2),
                           progress=lambda done, total: calls.append(done))
    assert (result.frames, result.duplicates) == (9, 6) and frame_times(tmp_path / "held_x4.mkv") == frame_times(source)
    plain = upscale_video(compact, source, tmp_path / "plain_x4.mkv")
    assert plain.duplicates == 0


def test_an_interrupted_run_resumes_from_its_last_finished_segment(compact, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Segments start at keyframes; a run cancelled in its third segment keeps the first two, and the resumed run
    upscales only the rest and gives the same frames as an uninterrupted run."""
    from realesr_core import UpscaleCancelled
    monkeypatch.setattr("realesr_core.media.video.segments.SEGMENT_SECONDS", 0.3)
    source = make_clip(tmp_path / "long.mkv", frames=16, keyframe_every=4)
    whole = upscale_video(compact, source, tmp_path / "whole.mkv")
    target = tmp_path / "resumed.mkv"
    seen: list[int] = []
    with pytest.raises(UpscaleCancelled):
        upscale_video(compact, source, target, video=VideoOptions(frames_per_batch=1),
                      progress=lambda done, total: seen.append(done), cancel=lambda: len(seen) >= 9)
    assert not target.exists() and (tmp_path / ".resumed.mkv.parts" / "manifest.json").exists()
    upscaled: list[int] = []
    resumed = upscale_video(compact, source, target, video=VideoOptions(frames_per_batch=1, resume=True),
                            progress=lambda done, total: upscaled.append(done))
    assert resumed.frames == whole.frames == 16 and upscaled[0] > 1  # counting on from the kept segments
    assert len(upscaled) < 16 and not (tmp_path / ".resumed.mkv.parts").exists()
    assert frame_times(target) == frame_times(tmp_path / "whole.mkv") == frame_times(source)
    with av.open(str(target)) as a, av.open(str(tmp_path / "whole.mkv")) as b:
        for x, y in zip(a.decode(video=0), b.decode(video=0), strict=True):
            assert np.array_equal(x.to_ndarray(format="rgb24"), y.to_ndarray(format="rgb24"))
        assert len(a.streams.audio) == 1


def test_leftovers_of_another_job_are_not_reused(compact, tmp_path: Path) -> None:
    source = make_clip(tmp_path / "clip.mkv", frames=4, audio=False)
    parts = tmp_path / ".out.mkv.parts"
    parts.mkdir()
    (parts / "manifest.json").write_text('{"job": {"source": "another"}, "done": {"0": [4, 0]}}')
    with pytest.warns(UserWarning, match="another job"):
        result = upscale_video(compact, source, tmp_path / "out.mkv", video=VideoOptions(resume=True))
    assert result.frames == 4 and not parts.exists()


def test_colours_go_back_through_the_sources_matrix(tmp_path: Path) -> None:
    """A BT.709 clip through an identity network keeps its colours (converting back with FFmpeg's default BT.601
    matrix, as before, turned (199, 58, 29) into (210, 68, 24) under the same tags)."""
    import torch

    from realesr_core import load_model
    from realesr_core.models.archs import SRVGGNetCompact

    red = np.zeros((48, 64, 3), np.uint8)
    red[...] = (200, 60, 30)
    source = tmp_path / "bt709.mkv"
    with av.open(str(source), "w") as out:
        stream = out.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        context = stream.codec_context
        context.colorspace = context.color_primaries = context.color_trc = context.color_range = 1  # BT.709, TV range
        for _ in range(3):
            frame = av.VideoFrame.from_ndarray(red, format="rgb24").reformat(
                format="yuv420p", dst_colorspace=1, dst_color_range=1)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    network = SRVGGNetCompact(num_feat=8, num_conv=1, upscale=1)
    torch.nn.init.zeros_(network.body[-1].weight)
    torch.nn.init.zeros_(network.body[-1].bias)
    upscale_video(load_model(network.state_dict()), source, tmp_path / "same.mkv")
    colours = []
    for path in (source, tmp_path / "same.mkv"):
        with av.open(str(path)) as container:
            frame = next(container.decode(video=0))
            assert frame.colorspace == 1 and frame.color_range == 1
            colours.append(frame.to_ndarray(format="rgb24").reshape(-1, 3).mean(0))
    assert np.abs(colours[0] - colours[1]).max() <= 2
