"""`realesr upscale` end to end on real photo files."""

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from realesr_core.cli import main
from realesr_core.models import load_model, zoo

from helpers import make_clip, photo, psnr


def test_upscale_default_model_on_a_photo(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    source = tmp_path / "cat.jpg"
    Image.fromarray(photo(48, "chelsea", 60, 120)).save(source, quality=95)
    assert main(["upscale", str(source)]) == 0
    output = tmp_path / "cat_x4.png"
    assert str(output) in capsys.readouterr().out
    result = Image.open(output)
    assert result.size == (192, 192) and result.mode == "RGB"
    bicubic = Image.open(source).resize((192, 192), Image.BICUBIC)
    assert psnr(np.asarray(result), np.asarray(bicubic)) > 22  # the same picture, not noise


def test_upscale_gray_and_alpha(tmp_path: Path) -> None:
    gray = tmp_path / "gray.png"
    Image.fromarray(photo(20)[..., 0]).save(gray)
    assert main(["upscale", str(gray), "-o", str(tmp_path / "g.png"), "--model", "realesr-animevideov3-x2"]) == 0
    assert Image.open(tmp_path / "g.png").mode == "L" and Image.open(tmp_path / "g.png").size == (40, 40)
    rgba = np.dstack([photo(20), np.full((20, 20), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    for mode, tolerance in (("resize", 0), ("model", 4)):  # the network itself shifts flat mid-gray a little
        assert main(["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "b.png"), "-m", "realesr-animevideov3",
                     "--alpha", mode, "--precision", "fp32"]) == 0
        result = np.asarray(Image.open(tmp_path / "b.png")).astype(int)
        assert result.shape == (80, 80, 4) and np.abs(result[..., 3] - 128).max() <= tolerance


def test_upscale_bad_input_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    assert main(["upscale", str(tmp_path / "broken.png")]) == 1
    assert "cannot read image" in capsys.readouterr().err
    assert main(["upscale", str(tmp_path / "broken.png"), "-m", str(tmp_path / "none.pth")]) == 2


def test_directory_of_images_with_options(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(photo(24, top=40 * i)).save(folder / f"f{i}.png")
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    assert main(["upscale", str(folder), "-o", str(out), "-m", "realesr-animevideov3", "--tile", "16",
                 "--overlap", "8", "--border", "4", "--precision", "fp32", "--outscale", "2"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["f0_x2.png", "f1_x2.png"]
    assert Image.open(out / "f0_x2.png").size == (48, 48)


def test_exact_width_and_16bit_png(tmp_path: Path) -> None:
    import imagecodecs

    source = tmp_path / "deep.png"
    source.write_bytes(imagecodecs.png_encode(photo(20).astype(np.uint16) * 257 + 3))
    assert main(["upscale", str(source), "-o", str(tmp_path / "w.png"), "-m", "realesr-animevideov3",
                 "--width", "50"]) == 0
    result = imagecodecs.png_decode((tmp_path / "w.png").read_bytes())
    assert result.shape == (50, 50, 3)
    assert (result % 257 != 0).any()  # 16-bit values, not 8-bit ones scaled up


def test_one_bad_file_does_not_stop_the_others(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "a_bad.png").write_bytes(b"junk")
    Image.fromarray(photo(16)).save(tmp_path / "b_good.png")
    assert main(["upscale", str(tmp_path / "a_bad.png"), str(tmp_path / "b_good.png"),
                 "-m", "realesr-animevideov3"]) == 1
    assert (tmp_path / "b_good_x4.png").exists()
    assert "a_bad.png" in capsys.readouterr().err


def test_degrade_writes_pairs_and_replayable_parameters(tmp_path: Path) -> None:
    import json

    import torch

    from realesr_core.degradation import apply_parameters
    from realesr_core.media.images import read_image

    source = tmp_path / "clean"
    source.mkdir()
    Image.fromarray(photo(64)).save(source / "a.png")
    Image.fromarray(photo(48, "coffee", 0, 0)).save(source / "b.png")
    out = tmp_path / "pairs"
    assert main(["degrade", str(source), str(out), "--seed", "3", "--scale", "2", "--pairs"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.json", "a_gt.png", "a_lq.png", "b.json", "b_gt.png", "b_lq.png"]
    assert Image.open(out / "a_lq.png").size == (32, 32)
    record = json.loads((out / "a.json").read_text())
    replayed = apply_parameters(read_image(source / "a.png").tensor, [record["params"]]).degraded
    assert torch.equal(torch.round(replayed * 255), torch.round(read_image(out / "a_lq.png").tensor * 255))
    assert main(["degrade", str(source), str(tmp_path / "x"), "--degradation", "bicubic_x4"]) == 0


def test_the_cache_folder_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(zoo, "_cache_dir", zoo.cache_dir())  # restored afterwards
    monkeypatch.setenv("REALESR_CACHE", str(tmp_path / "explicit"))
    assert main(["models"]) == 0 and f"cache: {tmp_path / 'explicit'}" in capsys.readouterr().out
    monkeypatch.delenv("REALESR_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert main(["models"]) == 0 and f"cache: {tmp_path / 'xdg' / 'realesr'}" in capsys.readouterr().out


def test_phone_photo_comes_out_upright_with_its_colour_profile(tmp_path: Path) -> None:
    """A JPEG stored sideways (Orientation 6) with a Display-P3-like profile: the x2 result is upright (portrait)
    and carries the profile; the output's format and quality follow its name and --quality."""
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(photo(32)[:, :20]).save(tmp_path / "phone.jpg", exif=exif.tobytes(), icc_profile=icc)
    for name, quality in (("out.png", []), ("out.jpg", ["--quality", "70"])):
        assert main(["upscale", str(tmp_path / "phone.jpg"), "-o", str(tmp_path / name), "-m",
                     "realesr-animevideov3-x2", *quality]) == 0
        with Image.open(tmp_path / name) as out:
            assert out.size == (64, 40) and out.info.get("icc_profile") == icc
            assert out.format == ("PNG" if name.endswith("png") else "JPEG")


def test_tiff_in_tiff_out_and_the_pixel_limit(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import tifffile

    tifffile.imwrite(tmp_path / "scan.tif", (photo(16).astype(np.uint16) * 257), compression="lzw")
    assert main(["upscale", str(tmp_path / "scan.tif"), "-m", "realesr-animevideov3"]) == 0
    result = tifffile.imread(tmp_path / "scan_x4.tif")
    assert result.shape == (64, 64, 3) and result.dtype == np.uint16
    assert main(["upscale", str(tmp_path / "scan.tif"), "--max-pixels", "100"]) == 1
    assert "16x16 = 256 pixels, more than the limit of 100" in capsys.readouterr().err


def test_a_folder_of_images_and_videos_with_one_broken(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("av")

    folder = tmp_path / "in"
    folder.mkdir()
    make_clip(folder / "clip.mp4", frames=4)
    Image.fromarray(photo(16)).save(folder / "still.png")
    (folder / "broken.mkv").write_bytes(b"\x1aE\xdf\xa3 not really")
    assert main(["upscale", str(folder), "-o", str(tmp_path / "out"), "-m", "realesr-animevideov3",
                 "--crf", "20", "--encoder-preset", "veryfast"]) == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["clip_x4.mp4", "still_x4.png"]
    captured = capsys.readouterr()
    assert "broken.mkv" in captured.err and "4 frames" in captured.out and "1 audio/subtitle stream(s)" in captured.out
    assert f"1 of 3 failed: {folder / 'broken.mkv'}" in captured.err


def test_encoder_settings_ffmpeg_would_refuse_are_named_before_upscaling(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("av")
    make_clip(tmp_path / "clip.mp4", frames=2)
    Image.fromarray(photo(16)).save(tmp_path / "a.png")  # met first: the check comes before it is upscaled too
    assert main(["upscale", str(tmp_path / "a.png"), str(tmp_path / "clip.mp4"), "-m", "realesr-animevideov3",
                 "--codec", "libsvtav1", "--encoder-preset", "medium", "--outscale", "2"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "realesr: error: --outscale, --width and --height are for images; videos are upscaled at the model's scale "
        "(resize them afterwards, or give the videos a run of their own)",
        "realesr: error: libsvtav1 has no preset 'medium'; it takes 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13"]
    assert not list(tmp_path.glob("a_x2*"))
    assert not list(tmp_path.glob("clip_x4*")) and not list(tmp_path.glob(".clip_x4*"))


REPO = Path(__file__).resolve().parents[1]
QUICK = ["-m", "realesr-animevideov3", "--encoder-preset", "veryfast"]


def _realesr(*arguments: str, **options: object) -> "subprocess.Popen[str]":
    """`realesr` in a process of its own (signals, mounts), with this tree's code and the tests' weight cache."""

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "realesr_core", *arguments], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **options)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _hidden(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob(".*"))


@pytest.mark.slow
def test_a_folder_of_damaged_files_finishes_with_every_failure_named(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    """162 damaged copies of PNGs, JPEGs, TIFFs (first IFD past the end, absurd tag counts, strips past the end),
    WebP, GIF, BMP, MP4 and MKV: cut short, garbled, zeroed, doubled. Every one is either made or named as failed,
    no traceback, nothing half-written or temporary left."""
    from damaged import damaged_folder

    pytest.importorskip("av")
    names = damaged_folder(tmp_path / "in")
    assert len(names) == 162
    status = main(["upscale", str(tmp_path / "in"), "-o", str(tmp_path / "out"), *QUICK])
    captured = capsys.readouterr()
    assert status == 1 and "Traceback" not in captured.err
    made = {line.split(" -> ")[0].split("] ", 1)[1].split(" (")[0] for line in captured.out.splitlines()
            if " -> " in line}
    failed = {line.split(": ")[2] for line in captured.err.splitlines() if line.startswith("realesr: error: ")}
    assert made.isdisjoint(failed) and made | failed == {str(tmp_path / "in" / name) for name in names}
    assert f"realesr: {len(failed)} of 162 failed: " in captured.err
    assert "IndexError: 0" in captured.err  # the TIFF whose first IFD lies past the end: named, not a traceback
    outputs = [path for path in (tmp_path / "out").iterdir()]
    assert len(outputs) == len(made) and _hidden(tmp_path / "out") == []


def test_checks_before_work_name_what_to_change_one_line_each(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Each mistake is one line before anything is loaded (the model named here does not exist: its error would
    come later), and nothing is written."""
    source = tmp_path / "a.png"
    Image.fromarray(photo(16)).save(source)
    (tmp_path / "notes.txt").write_text("a file")
    cases = [
        (["-o", "/sys/out.png"], ["-o /sys/out.png: cannot write in /sys (Permission denied); choose another output"]),
        (["-o", str(tmp_path / "notes.txt" / "out.png")],
         [f"-o {tmp_path / 'notes.txt' / 'out.png'}: {tmp_path / 'notes.txt'} is a file, not a folder; choose another "
          f"output"]),
        (["-o", str(tmp_path / "x.jpg"), "--bits", "16"],
         ["--bits 16: x.jpg is JPEG, which holds 8 bits per channel; name a .png or .tif output for 16-bit images"]),
        (["-o", str(tmp_path / "x.png"), "--quality", "80"],
         ["--quality is for JPEG and WebP outputs, and x.png is PNG, stored without loss: leave --quality out, or "
          "name a .jpg or .webp output"]),
        (["-o", str(tmp_path / "out"), "--quality", "80", "--stream"],
         ["--quality is for JPEG and WebP outputs, and the outputs of folders and several inputs are PNG or TIFF: "
          "leave --quality out, or name a .jpg or .webp output"]),
    ]
    import torch

    if not torch.cuda.is_available():
        cases.append((["--device", "cuda"], ["--device cuda: this PyTorch is built without CUDA; leave --device out (or "
                                             "use --device cpu) to upscale on the CPU"
                                             if torch.version.cuda is None else
                                             "--device cuda: PyTorch finds no NVIDIA GPU and driver; leave --device out "
                                             "(or use --device cpu) to upscale on the CPU"]))
    for arguments, lines in cases:
        assert main(["upscale", str(source), "-m", "no-such-model", *arguments]) == 2
        assert capsys.readouterr().err.splitlines() == [f"realesr: error: {line}" for line in lines]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "notes.txt"]


def test_an_output_over_an_input_is_refused_and_the_original_kept(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    source = tmp_path / "same.png"
    Image.fromarray(photo(16)).save(source)
    original = source.read_bytes()
    assert main(["upscale", str(source), "-o", str(source), "-m", "realesr-animevideov3"]) == 2
    assert capsys.readouterr().err == f"realesr: error: -o {source} is the input itself: name another output file\n"
    assert source.read_bytes() == original


def test_sub_folders_mirrored_names_shared_and_the_skipped_listed(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    photos = tmp_path / "photos"
    (photos / "2019" / "03").mkdir(parents=True)
    Image.fromarray(photo(16)).save(photos / "2019" / "03" / "IMG_1.JPG", format="JPEG")
    Image.fromarray(photo(16, left=60)).save(photos / "2019" / "03" / "IMG_1.PNG")
    Image.fromarray(photo(16)).save(photos / "top.png")
    (photos / "2019" / "notes.txt").write_text("harbour")
    assert main(["upscale", str(photos), "-o", str(tmp_path / "big"), "-m", "realesr-animevideov3"]) == 0
    assert sorted(str(p.relative_to(tmp_path / "big")) for p in (tmp_path / "big").rglob("*.png")) == [
        "2019/03/IMG_1_jpg_x4.png", "2019/03/IMG_1_png_x4.png", "top_x4.png"]
    captured = capsys.readouterr()
    assert (f"{photos / '2019' / '03' / 'IMG_1.PNG'} is written as IMG_1_png_x4.png: it shares its name with "
            f"IMG_1.JPG") in captured.out
    assert captured.err.splitlines()[-1] == f"realesr: skipped 1: 1 not an image or video ({photos / '2019' / 'notes.txt'})"


def test_a_file_that_cannot_be_written_fails_alone(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A sub-folder of the output that is a file: that input's failure, named, and the next input is made."""
    photos = tmp_path / "photos"
    for folder in ("2019", "2020"):
        (photos / folder).mkdir(parents=True)
        Image.fromarray(photo(16)).save(photos / folder / "a.png")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "2019").write_text("in the way")
    assert main(["upscale", str(photos), "-o", str(tmp_path / "out"), "-m", "realesr-animevideov3"]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("realesr:")]  # no bars
    assert errors[0].startswith(f"realesr: error: {photos / '2019' / 'a.png'}: ")
    assert errors[1] == f"realesr: 1 of 2 failed: {photos / '2019' / 'a.png'}"
    assert (tmp_path / "out" / "2020" / "a_x4.png").exists() and _hidden(tmp_path / "out") == []


def test_the_output_folder_gone_stops_the_run_with_a_clear_message(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    """The output folder is deleted once the first output is in it (as an unmounted drive would go): the run stops
    at the next input instead of writing the rest into a new folder of that name."""

    folder = tmp_path / "in"
    folder.mkdir()
    for index in range(8):
        Image.fromarray(photo(32, left=60 + 5 * index)).save(folder / f"p{index}.png")
    out = tmp_path / "out"

    def delete_after_the_first() -> None:
        deadline = time.monotonic() + 120
        while not (out / "p0_x4.png").exists() and time.monotonic() < deadline:
            time.sleep(0.001)
        shutil.rmtree(out, ignore_errors=True)

    deleter = threading.Thread(target=delete_after_the_first)
    deleter.start()
    try:
        assert main(["upscale", str(folder), "-o", str(out), "-m", "realesr-animevideov3"]) == 3
    finally:
        deleter.join()
    errors = capsys.readouterr().err
    assert f"realesr: error: the output folder {out} is gone (deleted, moved or unmounted during the run); stopped " \
           f"before {folder}" in errors
    assert "realesr: stopped after " in errors and "running the same command again makes them all" in errors


def test_an_error_and_a_warning_begin_their_own_lines(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from realesr_core.cli.common import ProgressBar, say

    bar = ProgressBar("clip.mp4", "frames")
    bar.started -= 2  # shown: it has run for more than a moment
    bar(3, 10)
    say("realesr: error: clip.mp4: damaged")
    bar.close()
    assert capsys.readouterr().err.split("\n")[1:] == ["realesr: error: clip.mp4: damaged", ""]
    frames = [Image.fromarray(photo(16, left=60 + 8 * i)) for i in range(2)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    assert main(["upscale", str(tmp_path / "anim.gif"), "-m", "realesr-animevideov3"]) == 0
    assert "realesr: warning: anim.gif is animated: only its first frame is used\n" in capsys.readouterr().err


def test_the_log_says_the_depth_written(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import imagecodecs

    (tmp_path / "deep.png").write_bytes(imagecodecs.png_encode(photo(16).astype(np.uint16) * 257))
    assert main(["upscale", str(tmp_path / "deep.png"), "-o", str(tmp_path / "out.jpg"), "-m",
                 "realesr-animevideov3"]) == 0
    assert "(8-bit)" in capsys.readouterr().out  # JPEG holds 8 bits, whatever the input's depth
    assert main(["upscale", str(tmp_path / "deep.png"), "-o", str(tmp_path / "out.png"), "-m",
                 "realesr-animevideov3"]) == 0
    assert "(16-bit)" in capsys.readouterr().out


def test_convert_refuses_a_pth_name_and_an_existing_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["convert", "realesr-animevideov3", str(tmp_path / "out.pth")]) == 2
    assert "name the output .safetensors" in capsys.readouterr().err and not (tmp_path / "out.pth").exists()
    target = tmp_path / "mine.safetensors"
    target.write_bytes(b"someone's model")
    assert main(["convert", "realesr-animevideov3", str(target)]) == 2
    assert f"{target} exists; add --force to replace it" in capsys.readouterr().err
    assert target.read_bytes() == b"someone's model"
    assert main(["convert", "realesr-animevideov3", str(target), "--force"]) == 0
    assert "(replaced)" in capsys.readouterr().out and load_model(target).scale == 4


def test_degrade_mirrors_sub_folders_and_lists_what_it_skipped(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("av")
    source = tmp_path / "clean"
    (source / "set2").mkdir(parents=True)
    Image.fromarray(photo(32)).save(source / "a.png")
    Image.fromarray(photo(32, left=60)).save(source / "a.jpg")
    Image.fromarray(photo(32)).save(source / "set2" / "b.png")
    make_clip(source / "clip.mp4", frames=2)
    assert main(["degrade", str(source), str(tmp_path / "lq"), "--degradation", "bicubic_x4"]) == 0
    assert sorted(str(p.relative_to(tmp_path / "lq")) for p in (tmp_path / "lq").rglob("*")) == [
        "a_jpg.json", "a_jpg_lq.png", "a_png.json", "a_png_lq.png", "set2", "set2/b.json", "set2/b_lq.png"]
    assert f"skipped 1: 1 videos (degrade takes images) ({source / 'clip.mp4'})" in capsys.readouterr().err


def _wait_for(condition, run: "subprocess.Popen[str]", seconds: float = 300) -> None:
    """Until `condition()` holds while `run` goes on (its output shown if it ended first)."""

    deadline = time.monotonic() + seconds
    while not condition():
        assert run.poll() is None, run.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.mark.slow
def test_a_terminated_streamed_image_leaves_no_temporary(tmp_path: Path) -> None:
    """`kill` (SIGTERM) while a huge image streams into its TIFF: the hidden temporary is removed (it used to stay,
    19 MB), and the message says what is true."""

    Image.fromarray(np.tile(photo(128), (2, 2, 1))).save(tmp_path / "scan.png")
    out = tmp_path / "out"
    run = _realesr("upscale", str(tmp_path / "scan.png"), "-o", str(out / "scan.tif"), "--stream", "--tile", "32",
                   "-m", "realesr-animevideov3")
    _wait_for(lambda: out.is_dir() and any(out.iterdir()), run)  # the temporary is there from the first tile
    run.send_signal(signal.SIGTERM)
    _stdout, stderr = run.communicate(timeout=120)
    assert run.returncode == 128 + signal.SIGTERM
    assert stderr.splitlines()[-1] == "realesr: interrupted; no partial output is left"
    assert list(out.iterdir()) == []


@pytest.mark.slow
def test_ctrl_c_in_a_video_keeps_its_finished_segments_and_says_so(tmp_path: Path) -> None:
    """Ctrl+C once the first ten-second segment of a clip is done: the message names the folder kept and how to
    continue, nothing else is left; the same command with --resume finishes from there and removes the folder."""

    av = pytest.importorskip("av")
    from fractions import Fraction

    with av.open(str(tmp_path / "clip.mp4"), "w") as clip:  # a time-lapse: 16 frames a second apart, two segments
        stream = clip.add_stream("libx264", rate=1)
        stream.width, stream.height, stream.pix_fmt = 32, 24, "yuv420p"
        stream.codec_context.gop_size = 4
        for index in range(16):
            frame = av.VideoFrame.from_ndarray(photo(32, left=60 + 4 * index)[:24], format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1)
            for packet in stream.encode(frame):
                clip.mux(packet)
        for packet in stream.encode(None):
            clip.mux(packet)
    out = tmp_path / "out"
    command = ["upscale", str(tmp_path / "clip.mp4"), "-o", str(out), *QUICK]
    parts = out / ".clip_x4.mp4.parts"
    run = _realesr(*command, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    _wait_for(lambda: '"0"' in _read(parts / "manifest.json"), run)  # the first segment noted as finished
    run.send_signal(signal.SIGINT)
    _stdout, stderr = run.communicate(timeout=120)
    assert run.returncode == 128 + signal.SIGINT
    assert stderr.splitlines()[-1] == (
        f"realesr: interrupted; no partial output is left; the 1 finished segment(s) of clip.mp4 are kept in {parts}: "
        f"run the same command with --resume to continue from them, or delete that folder")
    assert _hidden(out) == [parts.name]  # and nothing hidden in it: no temporaries
    assert sorted(path.name for path in parts.iterdir()) == ["manifest.json", "part00000.mp4"]
    resumed = _realesr(*command, "--resume")
    stdout, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    assert "clip_x4.mp4" in stdout and _hidden(out) == []


@pytest.mark.slow
def test_a_full_disk_stops_the_run_and_leaves_nothing_half_written(tmp_path: Path) -> None:
    """Outputs into a 300 kB file system (a tmpfs mounted in a user namespace: no root needed where user namespaces
    are allowed): the outputs that fit are whole, the one that did not fit is gone, and the run stops at once instead
    of failing every later file."""

    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {tmp_path}"]).returncode != 0:
        pytest.skip("no user namespace to mount a small file system in")
    folder = tmp_path / "in"
    folder.mkdir()
    for index in range(6):
        Image.fromarray(photo(64, left=40 + 9 * index)).save(folder / f"p{index}.png")
    out = tmp_path / "out"
    out.mkdir()
    script = (f'mount -t tmpfs -o size=300k tmpfs {out} && "{sys.executable}" -m realesr_core upscale {folder} -o {out} '
              f'-m realesr-animevideov3; echo "status=$?"; ls -A {out}')

    done = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    lines = done.stdout.splitlines()
    status = next(line for line in lines if line.startswith("status="))
    left = lines[lines.index(status) + 1 :]
    made = [line.split(" -> ")[1].split(" (")[0] for line in lines if " -> " in line]
    assert status == "status=3", done.stderr
    assert "No space left on device; stopped, since every later file would fail too (no partial output is left)" in \
        done.stderr
    assert 0 < len(made) < 6 and sorted(left) == sorted(Path(path).name for path in made)  # no temporaries
