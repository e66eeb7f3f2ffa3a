"""Video through the upscaler: frames, timestamps, audio and bit depth kept; bad files get clear errors and leave
nothing behind. Clips are made in-process with PyAV."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from realesr_core.media import VideoError, VideoOptions, upscale_video

from helpers import make_clip, photo

av = pytest.importorskip("av")


@pytest.fixture(scope="module")
def quick() -> Any:
    """A small random x4 network: these tests are about what the files carry, not the pixels, and the bundled
    model takes most of a second per frame on a busy CPU."""
    import torch

    from realesr_core import load_model
    from realesr_core.models.archs import SRVGGNetCompact

    torch.manual_seed(0)
    return load_model(SRVGGNetCompact(num_feat=4, num_conv=1, upscale=4).state_dict())


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


def test_ten_bit_source_gives_ten_bit_output(quick, tmp_path: Path) -> None:
    source = make_clip(tmp_path / "deep.mkv", frames=4, audio=False, ten_bit=True)
    result = upscale_video(quick, source, tmp_path / "deep_x4.mkv", video=VideoOptions(crf=10))
    assert result.bit_depth == 10
    with av.open(str(tmp_path / "deep_x4.mkv")) as container:
        assert container.streams.video[0].codec_context.pix_fmt == "yuv420p10le"


@pytest.mark.parametrize("damage", ["truncated", "no video", "not a video", "no frames"])
def test_bad_files_are_clear_errors_and_leave_nothing(quick, tmp_path: Path, damage: str) -> None:
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
        upscale_video(quick, source, tmp_path / "out.mkv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mkv"]


def test_held_drawings_are_upscaled_once(quick, tmp_path: Path) -> None:
    """Anime holds a drawing for several frames: with skip_duplicates those frames reuse the first one's result."""
    source = make_clip(tmp_path / "held.mkv", frames=9, audio=False, hold=3)
    calls = []
    result = upscale_video(quick, source, tmp_path / "held_x4.mkv",
                           video=VideoOptions(skip_duplicates=0.5, frames_per_batch=2),
                           progress=lambda done, total: calls.append(done))
    assert (result.frames, result.duplicates) == (9, 6) and frame_times(tmp_path / "held_x4.mkv") == frame_times(source)
    plain = upscale_video(quick, source, tmp_path / "plain_x4.mkv")
    assert plain.duplicates == 0


def test_an_interrupted_run_resumes_from_its_last_finished_segment(quick, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Segments start at keyframes; a run cancelled in its third segment keeps the first two, and the resumed run
    upscales only the rest and gives the same frames as an uninterrupted run."""
    from realesr_core import UpscaleCancelled
    monkeypatch.setattr("realesr_core.media.video.segments.SEGMENT_SECONDS", 0.3)
    source = make_clip(tmp_path / "long.mkv", frames=16, keyframe_every=4)
    whole = upscale_video(quick, source, tmp_path / "whole.mkv")
    target = tmp_path / "resumed.mkv"
    seen: list[int] = []
    with pytest.raises(UpscaleCancelled):
        upscale_video(quick, source, target, video=VideoOptions(frames_per_batch=1),
                      progress=lambda done, total: seen.append(done), cancel=lambda: len(seen) >= 9)
    assert not target.exists() and (tmp_path / ".resumed.mkv.parts" / "manifest.json").exists()
    upscaled: list[int] = []
    resumed = upscale_video(quick, source, target, video=VideoOptions(frames_per_batch=1, resume=True),
                            progress=lambda done, total: upscaled.append(done))
    assert resumed.frames == whole.frames == 16 and upscaled[0] > 1  # counting on from the kept segments
    assert len(upscaled) < 16 and not (tmp_path / ".resumed.mkv.parts").exists()
    assert frame_times(target) == frame_times(tmp_path / "whole.mkv") == frame_times(source)
    with av.open(str(target)) as a, av.open(str(tmp_path / "whole.mkv")) as b:
        for x, y in zip(a.decode(video=0), b.decode(video=0), strict=True):
            assert np.array_equal(x.to_ndarray(format="rgb24"), y.to_ndarray(format="rgb24"))
        assert len(a.streams.audio) == 1


def test_leftovers_of_another_job_are_not_reused(quick, tmp_path: Path) -> None:
    source = make_clip(tmp_path / "clip.mkv", frames=4, audio=False)
    parts = tmp_path / ".out.mkv.parts"
    parts.mkdir()
    (parts / "manifest.json").write_text('{"job": {"source": "another"}, "done": {"0": [4, 0]}}')
    with pytest.warns(UserWarning, match="another job"):
        result = upscale_video(quick, source, tmp_path / "out.mkv", video=VideoOptions(resume=True))
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


def write_video(path: Path, frames: int = 6, size: tuple[int, int] = (64, 48), codec: str = "libx264",
                pixel_format: str = "yuv420p", *, options: dict[str, str] | None = None,
                setup: Callable[[Any, Any], None] | None = None) -> Path:
    """A clip of a real photo sliding right, encoded in-process; `setup(container, stream)` adds what a test needs
    (rotation, metadata, colour tags) before the first frame."""
    width, height = size
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=12)
        stream.width, stream.height, stream.pix_fmt = width, height, pixel_format
        stream.options = options or {}
        if setup is not None:
            setup(out, stream)
        deep = "10" in pixel_format
        strip = photo(max(width + 4 * frames, height), left=120)
        for index in range(frames):
            pixels = strip[:height, 4 * index : 4 * index + width]
            frame = av.VideoFrame.from_ndarray(pixels.astype(np.uint16) * 257 if deep else pixels,
                                               format="rgb48le" if deep else "rgb24")
            frame = frame.reformat(format=pixel_format, dst_colorspace=stream.codec_context.colorspace or None,
                                   dst_color_range=stream.codec_context.color_range or None)
            frame.pts = index
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def upscaled(model: Any, source: Path, target: Path, **video: Any) -> tuple[Any, list[str]]:
    """The result of upscaling `source` and the warnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = upscale_video(model, source, target, video=VideoOptions(**video))
    return result, [str(warning.message) for warning in caught]


def test_a_damaged_packet_is_skipped_and_counted(quick, tmp_path: Path) -> None:
    """Garbage over one packet in the middle of an MP4: FFmpeg's command line decodes past it, so must we (the whole
    file failed at that packet before), and say how many frames were lost."""
    source = write_video(tmp_path / "clip.mp4", frames=16, options={"g": "8"})
    with av.open(str(source)) as container:
        packets = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    data = bytearray(source.read_bytes())
    position, size = packets[10]
    data[position : position + size] = np.random.default_rng(1).integers(0, 256, size, np.uint8).tobytes()
    source.write_bytes(bytes(data))
    result, said = upscaled(quick, source, tmp_path / "big.mkv")
    assert 0 < result.lost < 8 and result.frames + result.lost == 16
    assert said == [f"clip.mp4: damaged: {result.lost} frames could not be decoded"]
    assert len(frame_times(tmp_path / "big.mkv")) == result.frames


def test_a_cut_off_file_says_how_many_frames_are_missing(quick, tmp_path: Path) -> None:
    source = write_video(tmp_path / "whole.mkv", frames=16)
    with av.open(str(source)) as container:
        starts = [packet.pos for packet in container.demux(video=0) if packet.size]
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(source.read_bytes()[: starts[8] + 5])  # a copy that stopped inside the 9th frame
    totals: list[int] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = upscale_video(quick, cut, tmp_path / "big.mkv", progress=lambda done, total: totals.append(total))
    assert 0 < result.lost < 16 and result.frames + result.lost == 16
    assert [str(w.message) for w in caught] == [
        f"cut.mkv: damaged: {result.lost} frames could not be decoded (the file is cut off)"]
    assert set(totals) == {16}  # the progress total comes from the duration Matroska states


def test_progress_on_mkv_knows_its_total(quick, tmp_path: Path) -> None:
    """Matroska gives no frame count: the total comes from the packets, so the bar and its ETA are right."""
    source = make_clip(tmp_path / "clip.mkv", frames=9, audio=False)
    seen: list[tuple[int, int]] = []
    upscale_video(quick, source, tmp_path / "big.mkv", video=VideoOptions(frames_per_batch=2),
                  progress=lambda done, total: seen.append((done, total)))
    assert [total for _, total in seen] == [9] * len(seen) and seen[-1] == (9, 9)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_a_phone_clips_rotation_is_carried(quick, tmp_path: Path, suffix: str) -> None:
    """A portrait phone clip is stored landscape with a display matrix turning it by 90 degrees: the frames are
    upscaled as stored and the matrix carried, so players turn the result as they turned the source."""
    source = write_video(tmp_path / "portrait.mp4", setup=lambda _out, stream: stream.set_display_rotation(90))
    result, said = upscaled(quick, source, tmp_path / f"big{suffix}")
    assert said == [] and result.size == (256, 192)
    with av.open(str(tmp_path / f"big{suffix}")) as container:
        frame = next(container.decode(video=0))
        assert (frame.rotation, frame.width, frame.height) == (90, 256, 192)


def _describe_everything(out: Any, stream: Any) -> None:
    out.metadata["title"] = "Summer 2024"
    out.set_chapters([{"id": 1, "start": 0, "end": 250, "time_base": Fraction(1, 1000), "metadata": {"title": "Arrival"}},
                      {"id": 2, "start": 250, "end": 500, "time_base": Fraction(1, 1000),
                       "metadata": {"title": "Beach"}}])
    stream.metadata.update({"language": "fra", "title": "camera 1", "timecode": "10:00:00:00"})
    sound = out.add_stream("aac", rate=22050)
    sound.layout = "mono"
    sound.metadata.update({"language": "spa", "title": "commentary"})
    tone = av.AudioFrame.from_ndarray((np.sin(np.arange(11025) / 7) * 0.3).astype(np.float32)[None], format="fltp",
                                      layout="mono")
    tone.sample_rate = 22050
    for packet in [*sound.encode(tone), *sound.encode(None)]:
        out.mux(packet)


@pytest.mark.parametrize("suffix", [".mov", ".mp4", ".mkv"])
def test_chapters_titles_languages_and_timecode_are_carried(quick, tmp_path: Path, suffix: str) -> None:
    """As `ffmpeg -map 0 -c copy` carries them: the chapters, the container's title, each stream's language and title,
    the timecode (MP4 and MOV remake its track from the tag; the source's timecode track is not a second one)."""
    source = write_video(tmp_path / "holiday.mp4", setup=_describe_everything)
    result, said = upscaled(quick, source, tmp_path / f"big{suffix}")
    assert said == [] and result.copied_streams == 1
    with av.open(str(source)) as original, av.open(str(tmp_path / f"big{suffix}")) as copy:
        assert copy.metadata["title"] == "Summer 2024"
        assert [(c["metadata"]["title"], c["start"] * c["time_base"]) for c in copy.chapters()] == [
            (c["metadata"]["title"], c["start"] * c["time_base"]) for c in original.chapters()]
        video, sound = copy.streams.video[0], copy.streams.audio[0]
        tags = {key.lower(): value for key, value in video.metadata.items()}
        assert (video.language, tags.get("title", tags.get("name")), tags["timecode"]) == ("fra", "camera 1",
                                                                                          "10:00:00:00")
        assert sound.language == "spa" and "commentary" in sound.metadata.values()
        # one timecode track and one chapter text track, made by the MP4 and MOV muxers: none copied besides
        tracks = [s.metadata.get("handler_name") for s in copy.streams if s.type in ("data", "subtitle")]
        assert sorted(tracks) == ([] if suffix == ".mkv" else ["SubtitleHandler", "VideoHandler"])
        assert len([s for s in copy.streams if "timecode" in map(str.lower, s.metadata)]) == (1 if suffix == ".mkv" else 2)


@pytest.mark.parametrize("suffix", [".ts", ".mkv"])
def test_a_data_stream_is_carried_where_the_container_holds_it(quick, tmp_path: Path, suffix: str) -> None:
    """KLV telemetry in an MPEG-TS: copied into a .ts; a .mkv cannot hold it, so it is left out with a warning."""
    source = tmp_path / "drone.ts"
    with av.open(str(source), "w") as out:
        video = out.add_stream("libx264", rate=12)
        video.width, video.height, video.pix_fmt = 32, 24, "yuv420p"
        telemetry = out.add_data_stream("klv")
        for index in range(4):
            frame = av.VideoFrame.from_ndarray(photo(40, left=150 + index)[:24, :32], format="rgb24")
            frame.pts = index
            for packet in video.encode(frame):
                out.mux(packet)
            record = av.Packet(b"\x06\x0e\x2b\x34" + bytes([index]) * 12)
            record.stream, record.time_base = telemetry, Fraction(1, 90000)
            record.pts = record.dts = index * 7500
            out.mux(record)
        for packet in video.encode(None):
            out.mux(packet)
    result, said = upscaled(quick, source, tmp_path / f"big{suffix}")
    if suffix == ".ts":
        assert said == [] and result.copied_streams == 1
        with av.open(str(source)) as a, av.open(str(tmp_path / "big.ts")) as b:
            assert [bytes(p) for p in a.demux(data=0) if p.size] == [bytes(p) for p in b.demux(data=0) if p.size]
    else:
        assert result.copied_streams == 0
        assert said == ["drone.ts: data stream 1 (klv) cannot go into a .mkv file and is left out; the source's own "
                        "container keeps it"]


MASTERING = "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,50)"


def _hdr10(_out: Any, stream: Any) -> None:
    context = stream.codec_context
    context.color_primaries, context.color_trc, context.colorspace, context.color_range = 9, 16, 9, 1  # BT.2020, PQ


def test_hdr10_hevc_stays_hevc_with_its_mastering_display(quick, tmp_path: Path) -> None:
    """An HDR10 master: 10-bit HEVC, BT.2020 / PQ, mastering display and light level. The default encoder is the
    source's family and the static metadata goes into the new bitstream unchanged."""
    from realesr_core.media.video.probe import probe_video

    source = write_video(tmp_path / "hdr.mkv", frames=3, codec="libx265", pixel_format="yuv420p10le", setup=_hdr10,
                         options={"x265-params": f"master-display={MASTERING}:max-cll=1000,400:log-level=error"})
    result, said = upscaled(quick, source, tmp_path / "big.mkv")
    assert said == [] and (result.codec, result.bit_depth) == ("libx265", 10)
    before, after = probe_video(av, source), probe_video(av, tmp_path / "big.mkv")
    assert (after.codec, after.bits, after.light_level) == ("hevc", 10, (1000, 400))
    assert after.mastering == before.mastering
    assert after.mastering.red == (Fraction(34000, 50000), Fraction(16000, 50000))
    assert after.mastering.luminance == (Fraction(50, 10000), Fraction(1000))
    assert [after.colour[name] for name in ("color_primaries", "color_trc", "colorspace")] == [9, 16, 9]


@pytest.mark.parametrize(("pixel_format", "codec"), [("yuv444p", None), ("yuv422p10le", None),
                                                     ("yuv444p", "libsvtav1")])
def test_chroma_subsampling_is_kept(quick, tmp_path: Path, pixel_format: str, codec: str | None) -> None:
    """4:4:4 and 4:2:2 sources keep their chroma (libx264 encodes both); an encoder without it says so."""
    source = write_video(tmp_path / "chroma.mkv", frames=3, pixel_format=pixel_format)
    result, said = upscaled(quick, source, tmp_path / "big.mkv", codec=codec)
    with av.open(str(tmp_path / "big.mkv")) as container:
        written = container.streams.video[0].codec_context.pix_fmt
    if codec is None:
        assert said == [] and written == pixel_format
    else:
        assert written == "yuv420p" and said == [
            "chroma.mkv: libsvtav1 cannot encode 8-bit 4:4:4 chroma; the output is 4:2:0 (libx264 and libx265 keep it)"]


def test_an_aspect_ratio_set_only_by_the_container_is_kept(quick, tmp_path: Path) -> None:
    """An anamorphic MP4 whose 2:1 pixel shape is only in its 'pasp' box (the bitstream says nothing): the result
    keeps the shape instead of coming out squashed."""
    plain = write_video(tmp_path / "plain.mp4", frames=3)
    source = tmp_path / "anamorphic.mp4"
    with av.open(str(plain)) as original, av.open(str(source), "w") as out:
        stream = out.add_stream_from_template(original.streams.video[0])
        stream.codec_context.sample_aspect_ratio = Fraction(2, 1)  # the container's, by stream copy
        for packet in original.demux(video=0):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    with av.open(str(source)) as container:
        assert container.streams.video[0].codec_context.sample_aspect_ratio is None  # not in the bitstream
    for suffix in (".mkv", ".mp4"):
        upscale_video(quick, source, tmp_path / f"big{suffix}")
        with av.open(str(tmp_path / f"big{suffix}")) as container:
            assert container.streams.video[0].sample_aspect_ratio == 2


def test_a_failed_run_leaves_no_work_folder(quick, tmp_path: Path) -> None:
    """An error part way (here the caller's own progress callback) removes the finished segments and the temporary
    segment; a cancelled run keeps them for `resume` (see the resume test)."""
    source = make_clip(tmp_path / "clip.mkv", frames=8, audio=False)

    def broken(done: int, total: int) -> None:
        if done >= 4:
            raise RuntimeError("the progress display went away")

    with pytest.raises(RuntimeError, match="went away"):
        upscale_video(quick, source, tmp_path / "out.mkv", video=VideoOptions(frames_per_batch=2), progress=broken)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mkv"]


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_a_second_video_stream_is_copied(quick, tmp_path: Path, suffix: str) -> None:
    """A second picture stream (another camera angle, a cover) is carried unchanged, as `-map 0 -c copy` does; from
    Matroska its packets have no decode time and still arrive."""
    source = tmp_path / "angles.mkv"
    with av.open(str(source), "w") as out:
        streams = [out.add_stream("libx264", rate=12) for _ in range(2)]
        for stream, width in zip(streams, (32, 16), strict=True):
            stream.width, stream.height, stream.pix_fmt = width, 16, "yuv420p"
        for index in range(3):
            for stream in streams:
                frame = av.VideoFrame.from_ndarray(photo(40, left=150 + index)[:16, : stream.width], format="rgb24")
                frame.pts = index
                for packet in stream.encode(frame):
                    out.mux(packet)
        for stream in streams:
            for packet in stream.encode(None):
                out.mux(packet)
    result, said = upscaled(quick, source, tmp_path / f"big{suffix}")
    assert said == [] and result.copied_streams == 1
    with av.open(str(source)) as original, av.open(str(tmp_path / f"big{suffix}")) as copy:
        assert [s.width for s in copy.streams.video] == [128, 16]
        assert [bytes(p) for p in copy.demux(video=1) if p.size] == [bytes(p) for p in original.demux(video=1)
                                                                      if p.size]


def test_ctrl_c_during_a_segments_last_flush_waits_for_the_encoder_before_the_output_closes(monkeypatch) -> None:
    """Ctrl+C while the main thread waits for the encoder's last flush: CPython 3.11 then takes a thread whose join
    was interrupted for stopped though it still runs, and the output was closed under its flush (a segmentation
    fault). `close` returns only once the encoding thread no longer touches the output."""
    import threading
    from types import SimpleNamespace

    from realesr_core.media.video import encoding

    flushing, release, flushed = threading.Event(), threading.Event(), threading.Event()

    class Stream:
        codec_context = SimpleNamespace(pix_fmt="yuv420p")

        def encode(self, frame: Any) -> list[Any]:
            if frame is None:  # the encoder's last flush, after the last frame
                flushing.set()
                release.wait(5)
                flushed.set()
            return []

    encoder = encoding._Encoder(None, Stream(), SimpleNamespace(mux=lambda packet: None), "rgb24", {}, None,
                                VideoOptions(), None, None)

    def interrupted_wait(*_arguments: Any) -> bool:
        flushing.wait(5)
        raise KeyboardInterrupt  # as Ctrl+C lands in the main thread's wait

    monkeypatch.setattr(encoder.ended, "wait", interrupted_wait)
    with pytest.raises(KeyboardInterrupt):
        encoder.finish()
    threading.Timer(0.3, release.set).start()
    encoder.close()
    assert flushed.is_set()  # closed only after the flush ended
