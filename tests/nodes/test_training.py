"""The fine-tuning nodes without ComfyUI (lists in, as INPUT_IS_LIST hands them over, under inference mode as ComfyUI
runs nodes): a trained model and a loss map come out and the input model is untouched; Cancel, through the progress
bar or between steps, returns nothing and leaves no files; pairs; the dataset folder node; queue-time checks."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nodes import NODE_CLASS_MAPPINGS, training
from nodes.upscale_model import realesr_descriptor, to_upscale_model
from realesr_core import RealESRError, upscale
from realesr_core.models import new_model

from helpers import bhwc, photo

FINE_TUNE = NODE_CLASS_MAPPINGS["RealESR_FineTune"]
LOAD_IMAGES = NODE_CLASS_MAPPINGS["RealESR_LoadTrainingImages"]
LOSS_GRAPH = NODE_CLASS_MAPPINGS["RealESR_LossGraph"]


@pytest.fixture
def comfy_folders(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """ComfyUI's folder_paths with its temp and input directories in the test's folder; small degradations."""
    for name in ("temp", "input"):
        (tmp_path / name).mkdir()
    module = types.ModuleType("folder_paths")
    module.get_temp_directory = lambda: str(tmp_path / "temp")
    module.get_input_directory = lambda: str(tmp_path / "input")
    module.get_input_subfolders = lambda: sorted(str(p.relative_to(tmp_path / "input")) for p in
                                                 (tmp_path / "input").rglob("*") if p.is_dir())
    monkeypatch.setitem(sys.modules, "folder_paths", module)
    monkeypatch.setitem(training.IN_COMFYUI, "degrade_size", 48)  # the official 400² costs seconds a step on a CPU
    return tmp_path


@pytest.fixture
def tiny_x2():
    """A small fresh x2 Compact network as ComfyUI holds an UPSCALE_MODEL: made in inference mode."""
    with torch.inference_mode():
        return to_upscale_model(new_model("srvgg", num_feat=8, num_conv=2, scale=2))


def _fine_tune(model, images, **overrides):
    options = dict(stage="net", steps=3, batch=2, patch=32, learning_rate=1e-3, degradation="bicubic_x2",
                   perceptual_weight=0.0, precision="fp32", seed=0)
    options.update(overrides)
    listed = {k: v if k in ("validation_images", "low_res_images") else [v] for k, v in options.items()}
    with torch.inference_mode():  # as ComfyUI runs every node
        return FINE_TUNE().fine_tune([model], images, **listed)


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in realesr_descriptor(model).module.state_dict().items()}


def test_fine_tune_returns_a_trained_model_and_every_steps_losses(tiny_x2, comfy_folders: Path) -> None:
    before = _weights(tiny_x2)
    model, losses = _fine_tune(tiny_x2, [bhwc(64), bhwc(48, "coffee")], validation_images=[bhwc(40, "chelsea")])
    assert set(losses) == {"loss", "pixel"} and len(losses["loss"]) == 3 and losses["loss"] == losses["pixel"]
    after = _weights(model)
    assert any(not torch.equal(after[k], before[k]) for k in before), "the weights did not change"
    assert all(torch.equal(v, _weights(tiny_x2)[k]) for k, v in before.items()), "the input model changed"
    assert model.scale == 2 and realesr_descriptor(model).architecture == "SRVGGNetCompact"
    assert upscale(realesr_descriptor(model), bhwc(16).movedim(-1, 1)).image.shape == (1, 3, 32, 32)
    assert not any((comfy_folders / "temp").iterdir()), "the run's folder was left behind"


def test_the_gan_stage_trains_offline_by_default(tiny_x2, comfy_folders: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(comfy_folders / "no-torch-home"))  # no VGG19 weights here
    defaults = {name: spec[1]["default"] for name, spec in FINE_TUNE.INPUT_TYPES()["required"].items()
                if "default" in spec[1]}
    assert defaults["stage"] == "gan" and defaults["perceptual_weight"] == 0
    _, losses = _fine_tune(tiny_x2, [bhwc(64)], stage="gan", steps=2)
    assert set(losses) == {"loss", "pixel", "gan", "d_real", "d_fake"} and len(losses["gan"]) == 2


@pytest.mark.parametrize("how", ["progress bar", "between steps"])
def test_cancel_returns_nothing_and_leaves_no_files(tiny_x2, comfy_folders: Path, fake_comfy, how: str) -> None:
    if how == "progress bar":
        fake_comfy["cancel_after"] = 2  # the bar's hook raises on the third update
    else:
        fake_comfy["interrupt_after_checks"] = 2  # the run reads the flag before each step and stops
    with pytest.raises(fake_comfy["Interrupted"]):
        _fine_tune(tiny_x2, [bhwc(64)], steps=6)
    assert [done for done, _ in fake_comfy["updates"]] == [1, 2]
    assert not any((comfy_folders / "temp").iterdir())


def test_progress_moves_once_per_step(tiny_x2, comfy_folders: Path, fake_comfy) -> None:
    _fine_tune(tiny_x2, [bhwc(64)], steps=3)
    assert fake_comfy["updates"] == [(1, 3), (2, 3), (3, 3)]


def test_pairs_train_on_the_given_low_res_images_and_bad_ones_are_named(tiny_x2, comfy_folders: Path) -> None:
    high = bhwc(64)
    low = torch.nn.functional.interpolate(high.movedim(-1, 1), scale_factor=0.5, mode="area").movedim(1, -1)
    _, losses = _fine_tune(tiny_x2, [high], low_res_images=[low], steps=2)
    assert len(losses["loss"]) == 2
    with pytest.raises(RealESRError, match="low-resolution image 1 is 16x16 but its partner is 64x64"):
        _fine_tune(tiny_x2, [high], low_res_images=[low[:, :16, :16]], steps=2)
    assert not any((comfy_folders / "temp").iterdir())


def test_a_batch_counts_as_its_images_and_too_small_ones_are_named(tiny_x2, comfy_folders: Path) -> None:
    with pytest.raises(RealESRError, match="training image 3 of 3 is 24x24, smaller than the 32-px patch"):
        _fine_tune(tiny_x2, [torch.cat([bhwc(64), bhwc(64, "coffee")]), bhwc(24)])
    with pytest.raises(RealESRError, match="makes x4 inputs but the model is x2"):
        _fine_tune(tiny_x2, [bhwc(64)], degradation="bicubic_x4")


@pytest.mark.parametrize(("change", "message"), [  # the library's own messages: the node builds the run's config
    ({"steps": 0}, r"steps must be 1\.\.1e\+09; got 0"),
    ({"batch": 0}, r"batch must be 1\.\.1024; got 0"),
    ({"patch": 30}, r"patch \(30\) must be a multiple of the scale of the degradation preset 'realesrgan_x4' \(4\)"),
    ({"patch": 36, "stage": "gan"}, r"patch \(36\) must be a multiple of 8: the discriminator"),
    ({"patch": 512}, r"patch \(512\) cannot be larger than degrade_size \(400\)"),
    ({"degradation": "bicubic_x3"}, "degradation must be one of .*; got 'bicubic_x3'"),
    ({"learning_rate": -1.0}, r"lr must be 0 \(the stage's official rate"),
    ({"stage": "gan", "perceptual_weight": 1.0}, r"vgg19-dcbb9e9d.pth.*Or set perceptual_weight to 0"),
])
def test_mistakes_are_refused_at_queue_time(change: dict, message: str, monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no VGG19 weights here
    inputs = dict(steps=500, batch=4, patch=128, learning_rate=1e-4, degradation="realesrgan_x4", stage="net",
                  perceptual_weight=0.0)
    assert FINE_TUNE.VALIDATE_INPUTS(**inputs) is True
    assert FINE_TUNE.VALIDATE_INPUTS(**{k: [v] for k, v in inputs.items()}) is True  # as INPUT_IS_LIST hands them
    result = FINE_TUNE.VALIDATE_INPUTS(**{**inputs, **change})
    assert isinstance(result, str)
    assert re.search(message, result), result


def test_perceptual_weight_is_accepted_where_the_vgg19_weights_are(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth").write_bytes(b"")
    assert FINE_TUNE.VALIDATE_INPUTS(steps=1, batch=1, patch=64, learning_rate=1e-4, degradation="realesrgan_x4",
                                     stage="gan", perceptual_weight=1.0) is True


def test_load_training_images_reads_a_folder_of_the_input_directory(comfy_folders: Path) -> None:
    folder = comfy_folders / "input" / "photos"
    (folder / "more").mkdir(parents=True)
    Image.fromarray(photo(48)).save(folder / "a.png")
    Image.fromarray((photo(40, "coffee").astype(np.uint16) * 257)[..., 0]).save(folder / "more" / "b16.png")
    (folder / "notes.txt").write_text("not an image")
    assert LOAD_IMAGES.INPUT_TYPES()["required"]["folder"][0] == ["photos", "photos/more"]
    assert LOAD_IMAGES.VALIDATE_INPUTS("photos") is True
    assert "no folder in ComfyUI's input directory" in LOAD_IMAGES.VALIDATE_INPUTS("elsewhere")
    (images,) = LOAD_IMAGES().load("photos")
    assert [tuple(image.shape) for image in images] == [(1, 48, 48, 3), (1, 40, 40, 3)]
    assert torch.equal(images[0][0], torch.from_numpy(photo(48)).float() / 255)
    before = LOAD_IMAGES.IS_CHANGED("photos")
    Image.fromarray(photo(48)).save(folder / "c.png")
    assert LOAD_IMAGES.IS_CHANGED("photos") != before


def test_loss_graph_draws_the_chosen_curves() -> None:
    losses = {"loss": [0.5, 0.25, 0.125], "pixel": [0.25, 0.2, 0.1]}
    (graph,) = LOSS_GRAPH().draw(losses, "", 400, 240)
    assert graph.shape == (1, 240, 400, 3)
    (only_total,) = LOSS_GRAPH().draw(losses, " loss ", 400, 240)
    assert not torch.equal(graph, only_total)
    with pytest.raises(ValueError, match="no curve gan; it has loss, pixel"):
        LOSS_GRAPH().draw(losses, "loss, gan", 400, 240)


def test_the_inputs_are_the_configs_fields() -> None:
    """Bounds, choices and help come from TrainingConfig's fields (the node's own defaults aside)."""
    from realesr_core.option_fields import described_fields
    from realesr_core.training import TrainingConfig

    fields = described_fields(TrainingConfig)
    required = FINE_TUNE.INPUT_TYPES()["required"]
    assert required["stage"][0] == list(fields["stage"].facts.choices)
    assert required["precision"][0] == list(fields["precision"].facts.choices)
    assert "none" not in required["degradation"][0] and "realesrgan_x2" in required["degradation"][0]
    rate = required["learning_rate"][1]
    assert (rate["min"], rate["max"], rate["default"]) == (0, 1e-2, 0.0)  # 0: the stage's official rate
    assert rate["tooltip"].startswith(fields["lr"].facts.help)
    assert required["patch"][1]["max"] == 400 and required["steps"][1]["default"] == 500
