"""The UPSCALE_MODEL our loader outputs works where ComfyUI's own models do."""

from __future__ import annotations

import sys

import pytest

from nodes import NODE_CLASS_MAPPINGS
from nodes.upscale_model import DuckUpscaleModel, engine_model, to_upscale_model

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


def test_a_model_nobody_holds_is_freed() -> None:
    """The facts kept for our networks must not keep them alive: ComfyUI drops a model whose node output left its
    cache, and logs a leak when the network outlives its UPSCALE_MODEL."""
    import gc
    import weakref

    from realesr_core.models import new_model

    model = to_upscale_model(new_model("srvgg", num_feat=8, num_conv=2, scale=2))
    network = weakref.ref(model.model)
    assert engine_model(model).module is model.model and engine_model(model).scale == 2
    del model
    gc.collect()
    assert network() is None
