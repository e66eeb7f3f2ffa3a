"""`realesr export` on the command line: files, the runtime check, and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from realesr_core import load_model
from realesr_core.cli import main
from realesr_core.cli.export import parse_size

from helpers import photo


def test_export_and_check(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    Image.fromarray(photo(40, "chelsea", 100, 150)).save(tmp_path / "cat.jpg", quality=95)
    assert main(["export", "realesr-animevideov3-x2", str(tmp_path / "anime-x2.param"), "--precision", "fp16",
                 "--check", str(tmp_path / "cat.jpg")]) == 0
    out = capsys.readouterr().out
    assert f"{tmp_path / 'anime-x2.param'} + {tmp_path / 'anime-x2.bin'} (ncnn, fp16, x2)" in out
    assert "checked with ncnn (CPU) on a 40x40 crop of" in out and float(out.split("crop of")[1].split()[1]) >= 50
    assert load_model(tmp_path / "anime-x2.param").scale == 2
    assert main(["export", "realesr-animevideov3", str(tmp_path / "a.onnx"), "--size", "64x32", "--opset", "13"]) == 0


@pytest.mark.parametrize("arguments,message", [
    (["realesr-animevideov3-x2", "mine.param"], "name it mine-x2.param"),
    (["realesr-animevideov3", "a.param", "--size", "64"], "--opset and --size are for ONNX files"),
    (["no-such-model", "a.onnx"], "neither an existing file nor a bundled model"),
    (["realesr-animevideov3", "a.bin"], "should end in .onnx"),
])
def test_errors_are_one_line(arguments: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["export", *arguments]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("realesr: error: ") and err.count("\n") == 1
    assert not list(tmp_path.iterdir())


def test_sizes_read_as_width_by_height() -> None:
    assert parse_size("640x480") == (480, 640) and parse_size("256") == (256, 256)
