"""Whole runs on real photo files with small fresh networks: outputs, metrics and validation, exact resume after a
stop, Ctrl+C or an error, and every bad input refused before the first step."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from realesr_core import RealESRError
from realesr_core.models import load_model
from realesr_core.training import (
    ConfigError,
    NonFiniteLossError,
    TrainingImages,
    TrainingRun,
    build_config,
    find_training_images,
    load_generator,
    load_rgb,
    train,
)

from helpers import photo

FRESH_X2 = "new:srvgg:num_feat=8,num_conv=2,scale=2"


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """Three training photos (one in a subfolder, one a 16-bit PNG) and a held-out one in `val/`."""
    (tmp_path / "hr" / "more").mkdir(parents=True)
    (tmp_path / "val").mkdir()
    Image.fromarray(photo(96, "astronaut")).save(tmp_path / "hr" / "astronaut.png")
    Image.fromarray(photo(112, "chelsea", 50, 100)).save(tmp_path / "hr" / "more" / "cat.jpg", quality=95)
    sixteen = (photo(96, "rocket", 200, 200).astype(np.uint16) * 257)
    Image.fromarray(sixteen[..., 0]).save(tmp_path / "hr" / "rocket16.png")
    Image.fromarray(photo(64, "coffee", 100, 200)).save(tmp_path / "val" / "coffee.png")
    return tmp_path


def _config(root: Path, output: str = "out", **changes: object):
    options = dict(model=FRESH_X2, hr_dir=str(root / "hr"), output_dir=str(root / output), degradation="realesrgan_x2",
                   stage="gan", losses={"perceptual": 0.0}, discriminator_feat=8, patch=32, degrade_size=48, batch=2,
                   pool_size=4, steps=8, lr=1e-3, log_every=2, checkpoint_every=4, workers=0, precision="fp32")
    options.update(changes)
    return build_config(options)


def _weights(folder: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {name: load_file(folder / f"{name}.safetensors") for name in ("model", "generator", "discriminator")}


def _assert_same_weights(a: Path, b: Path) -> None:
    for name, tensors in _weights(a).items():
        other = _weights(b)[name]
        assert all(torch.equal(tensor, other[key]) for key, tensor in tensors.items()), name


def test_a_run_writes_the_model_metrics_samples_and_state(photos: Path) -> None:
    config = _config(photos, val_dir=str(photos / "val"), val_every=4, samples=1)
    result = train(config)
    out = photos / "out"
    assert (result.steps, result.stopped, result.model_path) == (8, "finished", out / "model.safetensors")
    model = load_model(out / "model.safetensors")
    assert model.scale == 2 and model.architecture == "SRVGGNetCompact" and model.name == "SRVGGNetCompact-finetuned"
    assert set(load_file(out / "discriminator.safetensors")) >= {"conv0.weight", "conv1.weight_orig"}
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    setup, rows = rows[0], rows[1:]
    assert setup["step"] == 0 and "fresh discriminator, no warm-up" in setup["setup"]
    assert [row["step"] for row in rows] == [2, 4, 6, 8]
    assert {"pixel", "gan", "d_real", "d_fake", "d_real_logit", "d_fake_logit", "lr", "it_per_s"} <= set(rows[0])
    basicsr = {"l_g_pix": "pixel", "l_g_gan": "gan", "l_d_real": "d_real", "l_d_fake": "d_fake",
               "out_d_real": "d_real_logit", "out_d_fake": "d_fake_logit"}  # BasicSR's names too, for its log tools
    assert all(row[theirs] == row[ours] for row in rows for theirs, ours in basicsr.items())
    assert "validation" in rows[1] and "validation" in rows[3] and "validation" not in rows[0]
    assert 10 < rows[3]["validation"]["psnr"] < 60 and 0 < rows[3]["validation"]["ssim"] <= 1
    assert result.validation == rows[3]["validation"]
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["0000004_coffee.png", "0000008_coffee.png"]
    assert Image.open(out / "samples" / "0000008_coffee.png").size == (64, 64)
    assert sorted(p.name for p in (out / "state").iterdir()) == ["rank0.pt"]


def test_the_saved_model_loads_in_spandrel(photos: Path) -> None:
    spandrel = pytest.importorskip("spandrel")
    train(_config(photos, steps=2))
    loaded = spandrel.ModelLoader().load_from_file(photos / "out" / "model.safetensors")
    assert loaded.scale == 2 and loaded.architecture.id == "Compact"


def test_a_stopped_run_resumes_bit_identical_to_an_uninterrupted_one(photos: Path) -> None:
    train(_config(photos, "whole"))
    calls = iter(range(100))
    stopped = train(_config(photos, "parts"), should_stop=lambda: next(calls) == 3)
    assert (stopped.steps, stopped.stopped) == (3, "interrupted")
    resumed = train(_config(photos, "parts"), resume=True)
    assert resumed.steps == 8
    _assert_same_weights(photos / "whole", photos / "parts")
    rows = [json.loads(line) for line in (photos / "parts" / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows if "setup" not in row] == [2, 4, 6, 8]  # no step logged twice
    assert [row["step"] for row in rows if "setup" in row] == [0, 3]  # each start says what the rules chose


def test_ctrl_c_finishes_the_step_and_saves(photos: Path) -> None:
    train(_config(photos, "whole", steps=6))

    def press_ctrl_c(done: int, total: int, values: dict) -> None:
        if done == 2:
            os.kill(os.getpid(), signal.SIGINT)

    before = signal.getsignal(signal.SIGINT)  # the default, or SIG_IGN in a job started in the background
    result = train(_config(photos, "parts", steps=6), progress=press_ctrl_c)
    assert (result.steps, result.stopped) == (2, "interrupted")  # after step 2, whose progress call it interrupted
    assert signal.getsignal(signal.SIGINT) is before  # the handler is put back
    train(_config(photos, "parts", steps=6), resume=True)
    _assert_same_weights(photos / "whole", photos / "parts")


def test_an_error_mid_run_keeps_the_work_done(photos: Path) -> None:
    def fail(done: int, total: int, values: dict) -> None:
        if done == 5:
            raise RuntimeError("disk unplugged")

    with pytest.raises(RuntimeError, match="disk unplugged"):
        train(_config(photos), progress=fail)
    state = torch.load(photos / "out" / "state" / "rank0.pt", weights_only=True)
    assert state["step"] == 5
    assert train(_config(photos), resume=True).steps == 8


def test_non_finite_losses_stop_the_run_and_keep_the_last_good_checkpoint(photos: Path) -> None:
    train(_config(photos, steps=4))  # a good checkpoint at step 4
    before = load_file(photos / "out" / "model.safetensors")
    broken = load_generator("new:srvgg:num_feat=8,num_conv=2,scale=2")
    broken.network.body[-1].bias.data.fill_(float("nan"))
    run = TrainingRun(_config(photos, steps=30), resume=True, model=broken)
    run.step.generator.body[-1].bias.data.fill_(float("nan"))  # the resumed weights go bad
    with pytest.raises(NonFiniteLossError, match="the pixel loss was not finite 10 steps in a row"):
        run.run()
    after = load_file(photos / "out" / "model.safetensors")
    assert all(torch.equal(tensor, after[key]) for key, tensor in before.items())
    assert torch.load(photos / "out" / "state" / "rank0.pt", weights_only=True)["step"] == 4


@pytest.mark.parametrize(("change", "message"), [
    ({"hr_dir": "nowhere"}, "training image folder .*nowhere does not exist"),
    ({"hr_dir": "val", "patch": 80, "degrade_size": 80}, "no usable training image"),
    ({"patch": 33}, r"patch \(33\) must be a multiple of the scale of the degradation preset 'realesrgan_x2'"),
    ({"patch": 36}, r"patch \(36\) must be a multiple of 8: the discriminator halves it three times"),
    ({"model": str(Path(__file__)), "degradation": "realesrgan_x4"}, "unknown model file type .py"),
    ({"degradation": "realesrgan_x4"}, "makes x4 inputs but the model is x2"),
    ({"patch": 64}, r"patch \(64\) cannot be larger than degrade_size \(48\)"),
    ({"model": "new:srvgg:num_feat=8,bogus=1"}, "cannot be built"),
    ({"model": "new:transformer:"}, "unknown architecture 'transformer'"),
    ({"losses": {}}, "--loss perceptual=0"),
    ({"lr_dir": "val", "degradation": "none"}, "has no low-resolution partner"),
    ({"discriminator": "missing.pth"}, "missing.pth is not a file"),
])
def test_bad_input_is_refused_before_training(photos: Path, monkeypatch: pytest.MonkeyPatch, change: dict,
                                             message: str) -> None:
    monkeypatch.setenv("TORCH_HOME", str(photos / "no-torch-home"))  # no VGG19 weights here
    change = {key: str(photos / value) if key in ("hr_dir", "lr_dir") else value for key, value in change.items()}
    with pytest.raises(Exception, match=message):
        train(_config(photos, **change))
    assert not (photos / "out" / "state").exists()


def test_an_existing_run_needs_resume_and_a_resume_needs_the_same_run(photos: Path) -> None:
    with pytest.raises(ConfigError, match="nothing to resume"):
        train(_config(photos), resume=True)
    train(_config(photos, steps=2))
    with pytest.raises(ConfigError, match="already holds a run"):
        train(_config(photos, steps=4))
    with pytest.raises(ConfigError, match=r"not the run .*batch: 2 -> 4"):
        train(_config(photos, steps=4, batch=4), resume=True)


def test_images_in_memory_train_exactly_as_the_same_images_in_folders(photos: Path) -> None:
    """ComfyUI hands images over as tensors: the run on them is the run on the files they were read from."""
    config = _config(photos, steps=2, val_dir=str(photos / "val"), val_every=2)
    on_files = train(config)
    images = TrainingImages([load_rgb(path) for path in find_training_images(photos / "hr", 1)],
                            validation_high=[load_rgb(photos / "val" / "coffee.png")])
    in_memory = train(config.replace(hr_dir="", val_dir="", output_dir=str(photos / "memory")), images=images)
    _assert_same_weights(photos / "out", photos / "memory")
    assert in_memory.validation == on_files.validation


def test_image_pairs_in_memory_train_without_folders(photos: Path) -> None:
    high = [load_rgb(path) for path in find_training_images(photos / "hr", 1)]
    low = [torch.nn.functional.interpolate(image[None], scale_factor=0.5, mode="area")[0] for image in high]
    config = _config(photos, steps=2, pool_size=0).replace(hr_dir="")
    result = train(config, images=TrainingImages(high, low, validation_high=high[:1], validation_low=low[:1]))
    assert result.stopped == "finished" and 10 < result.validation["psnr"] < 60
    with pytest.raises(ConfigError, match="images in memory replace the folders"):
        TrainingRun(_config(photos, output="other"), images=TrainingImages(high))
    with pytest.raises(RealESRError, match="2 high-resolution images but 3 low-resolution"):
        TrainingRun(config.replace(output_dir=str(photos / "other")), images=TrainingImages(high[:2], low))


def test_tensorboard_gets_the_same_scalars_when_it_is_installed(photos: Path) -> None:
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    train(_config(photos, steps=4, val_dir=str(photos / "val"), val_every=4))
    events = event_accumulator.EventAccumulator(str(photos / "out" / "tensorboard"))
    events.Reload()
    assert {"pixel", "gan", "d_real_logit", "lr", "validation/psnr", "losses/l_g_pix", "losses/l_d_fake",
            "out_d_real"} <= set(events.Tags()["scalars"])
    rows = [json.loads(line) for line in (photos / "out" / "metrics.jsonl").read_text().splitlines()][1:]
    logged = events.Scalars("pixel")
    assert [event.step for event in logged] == [row["step"] for row in rows]
    assert [event.value for event in logged] == pytest.approx([row["pixel"] for row in rows], rel=1e-6)


def test_an_error_before_the_first_step_leaves_no_run_behind(photos: Path) -> None:
    def unplugged() -> bool:
        raise RuntimeError("disk unplugged")

    with pytest.raises(RuntimeError, match="disk unplugged"):
        train(_config(photos), should_stop=unplugged)
    assert not (photos / "out" / "state").exists()
    assert train(_config(photos, steps=2)).steps == 2  # the same command runs again


def test_a_truncated_image_is_skipped_when_read_and_the_run_still_replays(photos: Path) -> None:
    """Its header reads, so the scan keeps it; its first read warns and takes the next image instead, the same one
    every time, so a stopped and resumed run equals an uninterrupted one."""
    whole = (photos / "hr" / "astronaut.png").read_bytes()
    (photos / "hr" / "truncated.png").write_bytes(whole[: len(whole) // 2])
    with pytest.warns(UserWarning, match=r"skipped an unreadable training image: .*truncated\.png"):
        train(_config(photos, "whole", steps=6))
    calls = iter(range(100))
    with pytest.warns(UserWarning, match="truncated.png"):
        train(_config(photos, "parts", steps=6), should_stop=lambda: next(calls) == 3)
    with pytest.warns(UserWarning, match="truncated.png"):
        train(_config(photos, "parts", steps=6), resume=True)
    _assert_same_weights(photos / "whole", photos / "parts")


def test_a_fresh_discriminator_warms_up_and_a_trained_one_is_taken_as_it_is(photos: Path) -> None:
    train(_config(photos, "first", steps=20, log_every=1, discriminator_warmup=5))  # at most 20 // 10 = 2 steps
    rows = [json.loads(line) for line in (photos / "first" / "metrics.jsonl").read_text().splitlines()]
    assert "fresh discriminator, trained alone (G frozen) for the first 2 steps" in rows[0]["setup"]
    assert [row["step"] for row in rows if row.get("d_warmup")] == [1, 2]
    assert "pixel" not in rows[1] and "pixel" in rows[3]
    trained = photos / "first" / "discriminator.safetensors"
    run = TrainingRun(_config(photos, "second", discriminator=str(trained), discriminator_feat=64))
    assert run.step.options.discriminator_warmup == 0 and f"discriminator from {trained}" in run.notes
    start = load_file(trained)
    assert all(torch.equal(tensor, run.step.discriminator.state_dict()[key]) for key, tensor in start.items())
    official = photos / "netD.pth"  # the official files' layout: the weights under "params"
    torch.save({"params": start}, official)
    assert TrainingRun(_config(photos, "third", discriminator=str(official))).step.discriminator is not None
    with pytest.raises(ConfigError, match="the discriminator to start from .*not a UNetDiscriminatorSN"):
        TrainingRun(_config(photos, "fourth", discriminator=str(photos / "first" / "model.safetensors")))
