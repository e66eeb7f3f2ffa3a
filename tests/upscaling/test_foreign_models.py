"""Models from other loaders (spandrel, as ComfyUI's own loader gives them) go through the engine the way spandrel
runs them: their call function, size requirements, tiling advice and precision support."""

from __future__ import annotations

import warnings

import pytest
import torch

from realesr_core import upscale
from realesr_core.models import describe

from helpers import photo, psnr, spandrel_model, to_tensor

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
    assert describe(model).tiling == "discouraged"
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
