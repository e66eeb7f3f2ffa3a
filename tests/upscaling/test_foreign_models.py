"""Models from other loaders (spandrel, as ComfyUI's own loader gives them) go through the engine the way spandrel
runs them: their call function, size requirements, tiling advice and precision support."""

from __future__ import annotations

import warnings

import pytest
import torch

from realesr_core import ImageError, RealESRError, upscale
from realesr_core.image_tensors import luminance
from realesr_core.models import ModelTiling, describe
from realesr_core.upscaling.channels import to_model_channels
from realesr_core.upscaling.device import cpu_has_native_bf16

from helpers import SPANDREL_ARCHITECTURES, photo, psnr, spandrel_model, to_tensor

pytest.importorskip("spandrel")


SCALES = {"FBCNN": 1, "FDnCNN": 1, "SwinIR": 2, "SPAN": 2, "ESRGAN": 4, "Compact": 4}


@pytest.mark.parametrize("name", sorted(SCALES))
def test_whole_image_equals_the_descriptors_own_call(name: str) -> None:
    model = spandrel_model(name)
    image = to_tensor(photo(24))
    with torch.inference_mode():
        expected = model(image)
    result = upscale(model, image, precision="fp32")
    assert result.image.shape == (1, 3, 24 * SCALES[name], 24 * SCALES[name]) == expected.shape
    torch.testing.assert_close(result.image, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["FBCNN", "FDnCNN", "SPAN", "ESRGAN", "Compact"])
def test_convolutional_models_tile_seamlessly(name: str) -> None:
    model = spandrel_model(name)
    image = to_tensor(photo(64))
    whole = upscale(model, image, precision="fp32").image
    tiled = upscale(model, image, tile=32, precision="fp32")
    assert tiled.tile_count == 4
    assert psnr(tiled.image, whole, peak=1.0) > 50


def test_tiling_advice_is_followed() -> None:
    """SwinIR's descriptor discourages tiling: one piece while it fits, a warning that says why when it does not."""
    model = spandrel_model("SwinIR")
    assert describe(model).tiling is ModelTiling.DISCOURAGED
    image = to_tensor(photo(40))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert upscale(model, image, tile=16, precision="fp32").tile_count == 1


def test_tiling_is_refused_only_with_a_warning_when_the_image_does_not_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    import realesr_core.upscaling.engine as engine

    monkeypatch.setattr(engine, "memory_budget", lambda device: 1 << 20)
    with pytest.warns(UserWarning, match="works best on whole images.*tiling it anyway"):
        result = upscale(spandrel_model("SwinIR"), to_tensor(photo(40)), tile=16, precision="fp32")
    assert result.tile_count == 9


def test_precision_support_is_honoured() -> None:
    """FDnCNN says it has no fp16 support: asking for it is a clear error, auto never picks it."""
    model = spandrel_model("FDnCNN")
    assert not describe(model).supports_fp16
    with pytest.raises(Exception, match="does not support fp16"):
        upscale(model, to_tensor(photo(8)), precision="fp16")


def _reference(model, image: torch.Tensor) -> torch.Tensor:
    """fp32 through the descriptor's own call, on the channels the model takes (a gray model: the luminance), as
    RGB."""
    with torch.inference_mode():
        out = model(luminance(image) if model.input_channels == 1 else image)
    return out.expand(-1, 3, -1, -1)


# auto is the node's default (bf16 on a CPU with native bf16); the explicit precisions are the longer run
@pytest.mark.parametrize("precision", ["auto", pytest.param("bf16", marks=pytest.mark.slow),
                                       pytest.param("fp16", marks=pytest.mark.slow)])
@pytest.mark.parametrize("name", SPANDREL_ARCHITECTURES)
def test_every_architecture_in_each_precision_it_supports(name: str, precision: str) -> None:
    """Reduced precision where spandrel says the architecture supports it (and runs there: SwinIR builds an fp32
    attention mask inside its forward), close to fp32; a precision it does not support is refused by name. A gray
    model gets the luminance and gives gray RGB."""
    model = spandrel_model(name)
    image = to_tensor(photo(24))
    supported = {"auto": True, "bf16": model.supports_bfloat16, "fp16": model.supports_half}[precision]
    if not supported:
        with pytest.raises(RealESRError, match=f"does not support {precision}"):
            upscale(model, image, precision=precision)
        return
    result = upscale(model, image, precision=precision)
    expected = _reference(model, image)
    assert result.image.shape == expected.shape
    assert psnr(result.image, expected, peak=1.0) > 35
    chosen = precision if precision != "auto" else ("bf16" if model.supports_bfloat16 and cpu_has_native_bf16() else
                                                    "fp32")
    assert result.precision == chosen


def test_a_gray_image_through_a_gray_model_stays_gray() -> None:
    model = spandrel_model("DRUNet-gray")
    gray = luminance(to_tensor(photo(24)))
    result = upscale(model, gray, precision="fp32").image
    with torch.inference_mode():
        torch.testing.assert_close(result, model(gray), atol=1e-5, rtol=0)


def test_channels_a_model_cannot_take_are_named() -> None:
    image = to_tensor(photo(8))
    with pytest.raises(ImageError, match=r"takes RGBA \(4-channel\) images, not RGB \(3-channel\) ones"):
        to_model_channels(image, 4)
    with pytest.raises(ImageError, match="takes 0 image channels"):
        to_model_channels(image, 0)
