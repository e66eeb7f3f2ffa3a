"""`realesr upscale` end to end on real photo files."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from realesr_core.cli import main

from conftest import photo, psnr


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
    assert main(["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "b.png"), "-m", "realesr-animevideov3"]) == 0
    result = np.asarray(Image.open(tmp_path / "b.png"))
    assert result.shape == (80, 80, 4) and np.all(result[..., 3] == 128)


def test_upscale_bad_input_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    assert main(["upscale", str(tmp_path / "broken.png")]) == 2
    assert "cannot read image" in capsys.readouterr().err
    assert main(["upscale", str(tmp_path / "broken.png"), "-m", str(tmp_path / "none.pth")]) == 2
