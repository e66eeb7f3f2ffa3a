"""Every node: a well-formed INPUT_TYPES, and a real run on real tensors with the declared outputs."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
import torch

import nodes
from nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
from nodes.upscale_model import DuckUpscaleModel, unwrap, wrap
from realesr_core import load_model

from conftest import photo, to_tensor

TYPES = {"IMAGE", "MASK", "UPSCALE_MODEL", "INT", "FLOAT", "STRING", "BOOLEAN"}


def bhwc(size: int = 32, name: str = "astronaut") -> torch.Tensor:
    return to_tensor(photo(size, name, 0, 0)).movedim(1, -1)


@pytest.mark.parametrize("node_id", sorted(NODE_CLASS_MAPPINGS))
def test_input_types_are_well_formed(node_id: str) -> None:
    cls = NODE_CLASS_MAPPINGS[node_id]
    assert node_id.startswith("RealESR_") and node_id in NODE_DISPLAY_NAME_MAPPINGS
    assert cls.DESCRIPTION and cls.CATEGORY in ("loaders", "image/upscaling", "image/degradation")
    assert callable(getattr(cls(), cls.FUNCTION))
    assert all(t in TYPES for t in cls.RETURN_TYPES)
    spec = cls.INPUT_TYPES()
    assert set(spec) <= {"required", "optional", "hidden"} and spec["required"]
    for section in ("required", "optional"):
        for name, (kind, options) in spec.get(section, {}).items():
            assert options.get("tooltip"), f"{node_id}.{name} has no tooltip"
            if isinstance(kind, list):
                assert kind and options.get("default", kind[0]) in kind
                continue
            assert kind in TYPES, f"{node_id}.{name}: {kind}"
            if "default" in options and kind in ("INT", "FLOAT"):
                assert options.get("min", -float("inf")) <= options["default"] <= options.get("max", float("inf"))


def test_loader_lists_bundled_models_and_returns_a_working_model() -> None:
    names = NODE_CLASS_MAPPINGS["RealESR_LoadModel"].INPUT_TYPES()["required"]["model_name"][0]
    assert "RealESRGAN_x4plus" in names and "realesr-animevideov3" in names
    (model,) = NODE_CLASS_MAPPINGS["RealESR_LoadModel"]().load("realesr-animevideov3")
    assert model.scale == 4 and isinstance(model.model, torch.nn.Module)


def test_builtin_call_pattern_on_our_loader_output() -> None:
    """ComfyUI's ImageUpscaleWithModel: .to(device), call on [1, C, h, w] float 0..1, .scale, .model."""
    (model,) = NODE_CLASS_MAPPINGS["RealESR_LoadModel"]().load("realesr-animevideov3")
    model.to("cpu")
    image = bhwc(24).movedim(-1, 1)
    out = model(image)
    assert out.shape == (1, 3, 24 * model.scale, 24 * model.scale) and 0 <= out.min() and out.max() <= 1
    assert sum(p.numel() for p in model.model.parameters()) == 621_424


def _upscale(model, image, **overrides):
    options = dict(size_mode="model scale", factor=2.0, size=64, tile=0, overlap=32, precision="fp32",
                   alpha_mode="resize")
    options.update(overrides)
    return NODE_CLASS_MAPPINGS["RealESR_Upscale"]().upscale(model, image, **options)


def test_upscale_node_sizes_and_mask() -> None:
    model = wrap(load_model("realesr-animevideov3"))
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


def test_upscale_node_accepts_a_spandrel_style_model() -> None:
    ours = load_model("realesr-animevideov3")
    foreign = types.SimpleNamespace(model=ours.module, scale=4, input_channels=3, output_channels=3,
                                    size_requirements=types.SimpleNamespace(multiple_of=1, minimum=0),
                                    supports_half=True, supports_bfloat16=True)
    out, _ = _upscale(foreign, bhwc(16))
    expected, _ = _upscale(wrap(ours), bhwc(16))
    torch.testing.assert_close(out, expected)


def test_real_spandrel_interop() -> None:
    spandrel = pytest.importorskip("spandrel")
    (model,) = NODE_CLASS_MAPPINGS["RealESR_LoadModel"]().load("realesr-animevideov3")
    assert isinstance(model, spandrel.ImageModelDescriptor)
    builtin = spandrel.ModelLoader().load_from_state_dict(load_model("realesr-animevideov3").state_dict())
    out, _ = _upscale(builtin, bhwc(16))
    expected, _ = _upscale(model, bhwc(16))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_validation_messages() -> None:
    upscale = NODE_CLASS_MAPPINGS["RealESR_Upscale"]
    assert upscale.VALIDATE_INPUTS(tile=0, overlap=32) is True
    assert "at least 32" in upscale.VALIDATE_INPUTS(tile=8, overlap=32)
    save = NODE_CLASS_MAPPINGS["RealESR_SaveModel"]
    assert "relative name" in save.VALIDATE_INPUTS(filename="../../etc/x")
    degrade = NODE_CLASS_MAPPINGS["RealESR_Degrade"]
    assert degrade.VALIDATE_INPUTS(overrides='{"noise_range": [1, 5]}') is True
    assert "unknown degradation setting" in degrade.VALIDATE_INPUTS(overrides='{"noise": 1}')
    assert "not valid JSON" in degrade.VALIDATE_INPUTS(overrides="{not json")
    assert "must look like" in degrade.VALIDATE_INPUTS(overrides='{"noise_range": 3}')


def test_blend_and_save(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    a = wrap(load_model("realesr-animevideov3"))
    b = wrap(load_model("realesr-animevideov3-x2"))
    with pytest.raises(Exception, match="different networks"):
        NODE_CLASS_MAPPINGS["RealESR_ModelBlend"]().blend(a, b, 0.5)
    (blended,) = NODE_CLASS_MAPPINGS["RealESR_ModelBlend"]().blend(a, a, 0.3)
    assert unwrap(blended).hyperparameters["num_conv"] == 16
    saver = NODE_CLASS_MAPPINGS["RealESR_SaveModel"]()
    first = Path(saver.save(blended, "mine/blend")["ui"]["text"][0])
    second = Path(saver.save(blended, "mine/blend")["ui"]["text"][0])
    assert first.name == "blend.safetensors" and second.name == "blend_001.safetensors"
    assert load_model(second).scale == 4


@pytest.fixture
def fake_comfy(monkeypatch: pytest.MonkeyPatch):
    """Just enough of ComfyUI to check the upscale node's use of it: device, memory, progress bar with cancel."""
    calls = {"free": 0, "updates": [], "cancel_after": None}

    class Interrupted(Exception):
        pass

    class ProgressBar:
        def __init__(self, total):
            self.total = total

        def update_absolute(self, value, total=None, preview=None):
            if calls["cancel_after"] is not None and len(calls["updates"]) >= calls["cancel_after"]:
                raise Interrupted("cancelled by the user")
            calls["updates"].append((value, total))

    comfy = types.ModuleType("comfy")
    mm = types.ModuleType("comfy.model_management")
    mm.get_torch_device = lambda: torch.device("cpu")
    mm.intermediate_device = lambda: torch.device("cpu")
    mm.unet_offload_device = lambda: torch.device("cpu")
    mm.free_memory = lambda amount, device: calls.__setitem__("free", calls["free"] + 1)
    utils = types.ModuleType("comfy.utils")
    utils.ProgressBar = ProgressBar
    comfy.model_management, comfy.utils = mm, utils
    for name, module in (("comfy", comfy), ("comfy.model_management", mm), ("comfy.utils", utils)):
        monkeypatch.setitem(sys.modules, name, module)
    calls["Interrupted"] = Interrupted
    return calls


def test_progress_per_tile_and_cancel(fake_comfy) -> None:
    model = wrap(load_model("realesr-animevideov3"))
    _upscale(model, bhwc(64), tile=32)
    assert fake_comfy["free"] == 1
    assert [v for v, _ in fake_comfy["updates"]] == [1, 2, 3, 4] and fake_comfy["updates"][-1][1] == 4
    fake_comfy["updates"].clear()
    fake_comfy["cancel_after"] = 1
    with pytest.raises(fake_comfy["Interrupted"]):
        _upscale(model, bhwc(64), tile=32)
    assert len(fake_comfy["updates"]) == 1


def test_degrade_node() -> None:
    image = torch.cat([bhwc(64), bhwc(64, "coffee")])
    node = NODE_CLASS_MAPPINGS["RealESR_Degrade"]()
    degraded, target, params = node.degrade(image, "realesrgan_x4", "downscale", 5, "per image", True, False)
    assert degraded.shape == (2, 16, 16, 3) and target.shape == image.shape
    drawn = json.loads(params)
    assert len(drawn) == 2 and drawn[0] != drawn[1]
    kept, _, shared = node.degrade(image, "realesrgan_x2", "keep size", 5, "same on batch", False, True,
                                   '{"jpeg_range": [90, 95]}')
    assert kept.shape == image.shape and json.loads(shared)[0] == json.loads(shared)[1]


@pytest.mark.parametrize("node_id,arguments", [
    ("RealESR_Blur", dict(kernel="random", kernel_size=21, sigma_x=1.0, sigma_y=2.0, rotation=30, beta=1, cutoff=1, seed=1)),
    ("RealESR_Blur", dict(kernel="plateau_aniso", kernel_size=13, sigma_x=1.0, sigma_y=2.0, rotation=30, beta=1.5,
                          cutoff=1, seed=1)),
    ("RealESR_Blur", dict(kernel="sinc", kernel_size=11, sigma_x=1.0, sigma_y=1.0, rotation=0, beta=1, cutoff=1.2, seed=1)),
    ("RealESR_Noise", dict(noise="gaussian", color="gray", sigma=10.0, poisson_scale=1.0, seed=3)),
    ("RealESR_Noise", dict(noise="poisson", color="color", sigma=10.0, poisson_scale=2.0, seed=3)),
    ("RealESR_JPEG", dict(quality=40.0, method="torch")),
    ("RealESR_JPEG", dict(quality=40.0, method="libjpeg")),
    ("RealESR_Resize", dict(factor=0.5, mode="bicubic")),
    ("RealESR_SincFilter", dict(kernel_size=15, cutoff=1.0)),
    ("RealESR_USMSharpen", dict(radius=51, weight=0.5, threshold=10.0)),
])
def test_operation_nodes(node_id: str, arguments: dict) -> None:
    cls = NODE_CLASS_MAPPINGS[node_id]
    for image in (torch.cat([bhwc(40), bhwc(40, "chelsea")]), torch.cat([bhwc(40), torch.ones(1, 40, 40, 1)], -1)):
        (out,) = getattr(cls(), cls.FUNCTION)(image, **arguments)
        factor = arguments.get("factor", 1.0)
        assert out.shape == (2 if image.shape[0] == 2 else 1, round(40 * factor), round(40 * factor), image.shape[-1])
        assert torch.isfinite(out).all() and 0 <= out.min() and out.max() <= 1
        assert not torch.equal(out[..., :3], image[..., :3]) or factor != 1.0
        if image.shape[-1] == 4:
            assert torch.allclose(out[..., 3], torch.ones_like(out[..., 3]))


def test_duck_model_without_spandrel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "spandrel", None)
    model = wrap(load_model("realesr-animevideov3"))
    assert isinstance(model, DuckUpscaleModel)
    assert model.to("cpu")(bhwc(12).movedim(-1, 1)).shape == (1, 3, 48, 48)


def test_root_package_imports_nothing_heavy() -> None:
    root = Path(nodes.__file__).resolve().parents[1] / "__init__.py"
    text = root.read_text()
    assert "import torch" not in text and "NODE_CLASS_MAPPINGS" in text


@pytest.mark.parametrize("node_id,arguments", [
    ("RealESR_Blur", dict(kernel="iso", kernel_size=7, sigma_x=1.0, sigma_y=1.0, rotation=0, beta=1, cutoff=1, seed=0)),
    ("RealESR_JPEG", dict(quality=50.0, method="torch")),
    ("RealESR_USMSharpen", dict(radius=51, weight=0.5, threshold=10.0)),
])
def test_operation_nodes_reject_nan_and_empty_images(node_id: str, arguments: dict) -> None:
    from realesr_core import ImageError

    cls = NODE_CLASS_MAPPINGS[node_id]
    run = getattr(cls(), cls.FUNCTION)
    with pytest.raises(ImageError, match="NaN"):
        run(torch.full((1, 16, 16, 3), float("nan")), **arguments)
    with pytest.raises(ImageError, match="empty"):
        run(torch.zeros(0, 16, 16, 3), **arguments)


def test_upscale_node_rejects_a_nan_image() -> None:
    from realesr_core import ImageError

    with pytest.raises(ImageError, match="NaN"):
        _upscale(wrap(load_model("realesr-animevideov3")), torch.full((1, 8, 8, 3), float("nan")))
