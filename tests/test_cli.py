"""`realesr upscale` end to end on real photo files."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from realesr_core.cli import main
from realesr_core.models import zoo

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
    assert main(["degrade", str(source), str(tmp_path / "x"), "--preset", "bicubic_x4"]) == 0


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
    for name, quality in (("out.png", 95), ("out.jpg", 70)):
        assert main(["upscale", str(tmp_path / "phone.jpg"), "-o", str(tmp_path / name), "-m",
                     "realesr-animevideov3-x2", "--quality", str(quality)]) == 0
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
                 "--crf", "20", "--preset", "veryfast"]) == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["clip_x4.mp4", "still_x4.png"]
    captured = capsys.readouterr()
    assert "broken.mkv" in captured.err and "4 frames" in captured.out and "1 audio/subtitle stream(s)" in captured.out
    assert f"1 of 3 failed: {folder / 'broken.mkv'}" in captured.err


def test_encoder_settings_ffmpeg_would_refuse_are_named_before_upscaling(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("av")
    make_clip(tmp_path / "clip.mp4", frames=2)
    assert main(["upscale", str(tmp_path / "clip.mp4"), "-m", "realesr-animevideov3", "--codec", "libsvtav1"]) == 1
    assert "libsvtav1 has no preset 'medium'" in capsys.readouterr().err
    assert not list(tmp_path.glob("clip_x4*")) and not list(tmp_path.glob(".clip_x4*"))
