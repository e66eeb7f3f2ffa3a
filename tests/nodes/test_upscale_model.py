"""The UPSCALE_MODEL our loader outputs works where ComfyUI's own models do."""

from __future__ import annotations

import sys

import pytest

from nodes import NODE_CLASS_MAPPINGS
from nodes.upscale_model import DuckUpscaleModel, to_upscale_model

from helpers import bhwc


def test_builtin_call_pattern_on_our_loader_output() -> None:
    """ComfyUI's ImageUpscaleWithModel: .to(device), call on [1, C, h, w] float 0..1, .scale, .model."""
    (model,) = NODE_CLASS_MAPPINGS["RealESR_LoadModel"]().load("realesr-animevideov3")
    model.to("cpu")
    image = bhwc(24).movedim(-1, 1)
    out = model(image)
    assert out.shape == (1, 3, 24 * model.scale, 24 * model.scale) and 0 <= out.min() and out.max() <= 1
    assert sum(p.numel() for p in model.model.parameters()) == 621_424


def test_duck_model_without_spandrel(compact, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "spandrel", None)
    model = to_upscale_model(compact)
    assert isinstance(model, DuckUpscaleModel)
    assert model.to("cpu")(bhwc(12).movedim(-1, 1)).shape == (1, 3, 48, 48)
