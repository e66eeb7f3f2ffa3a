"""Run options: presets, TOML files and `--set` overrides become one validated TrainingConfig, and every mistake is
named before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from realesr_core.training.config import (
    PRESETS,
    ConfigError,
    TrainingConfig,
    apply_setting,
    build_config,
    load_config_file,
)

REQUIRED = {"model": "RealESRGAN_x4plus", "hr_dir": "hr", "output_dir": "out"}


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_makes_a_valid_config(name: str) -> None:
    config = build_config({"preset": name, **REQUIRED, **({"lr_dir": "lr"} if name == "finetune_pairs" else {})})
    assert config.stage in ("net", "gan") and config.steps > 0
    assert config.loss_weights.gan == (0.1 if config.stage == "gan" else 0.0)


def test_official_numbers_of_the_two_stages() -> None:
    net, gan = (build_config({"preset": name, **REQUIRED}) for name in ("realesrnet_x4plus", "realesrgan_x4plus"))
    assert (net.lr, net.steps, net.batch, net.patch, net.ema_decay) == (2e-4, 1_000_000, 12, 256, 0.999)
    assert (gan.lr, gan.discriminator_lr, gan.steps) == (1e-4, 1e-4, 400_000)
    assert (gan.loss_weights.pixel, gan.loss_weights.perceptual, gan.loss_weights.gan) == (1.0, 1.0, 0.1)
    assert gan.pool_size == 180 and gan.degrade_size == 400


def test_settings_parse_as_toml_values_and_losses_merge_over_the_stage() -> None:
    options = dict(REQUIRED, preset="realesrgan_x4plus")
    for setting in ("steps=200", "lr=5e-5", "milestones=[100, 150]", "channels_last=false", "losses.perceptual=0",
                    "losses.ldl=1", "val_dir=/data/my val"):
        apply_setting(options, setting)
    config = build_config(options)
    assert (config.steps, config.lr, config.milestones, config.channels_last) == (200, 5e-5, (100, 150), False)
    assert config.val_dir == "/data/my val"
    weights = config.loss_weights
    assert (weights.pixel, weights.perceptual, weights.ldl, weights.gan) == (1.0, 0.0, 1.0, 0.1)


@pytest.mark.parametrize(("change", "message"), [
    ({"stepz": 3}, "unknown option stepz"),
    ({"steps": "many"}, "steps should be int"),
    ({"steps": 0}, "steps must be at least 1"),
    ({"losses": {"vgg": 1.0}}, "unknown loss vgg"),
    ({"losses": {"gan": -1.0}}, "cannot be negative"),
    ({"degradation": "blurry"}, "unknown degradation 'blurry'"),
    ({"degradation": ""}, "come from lr_dir"),
    ({"precision": "int8"}, "unknown precision"),
    ({"batch": 7}, r"pool_size \(180\) must be a multiple of the batch \(7\)"),
    ({"batch": 6, "accumulate": 4}, "multiple of accumulate"),
    ({"preset": "huge"}, "unknown training preset 'huge'"),
    ({"model": ""}, "missing model"),
])
def test_mistakes_are_named(change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_config({**REQUIRED, **change})


def test_a_toml_file_with_a_losses_table_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text('preset = "finetune_x4plus"\nmodel = "RealESRGAN_x4plus"\nhr_dir = "photos"\n'
                    'output_dir = "runs/a"\nbatch = 4\n\n[losses]\nperceptual = 0\nms_ssim = 0.5\n')
    config = load_config_file(path, ["steps=10", "losses.ldl=1"])
    assert isinstance(config, TrainingConfig)
    assert (config.batch, config.steps, config.stage) == (4, 10, "gan")
    assert config.losses == {"perceptual": 0.0, "ms_ssim": 0.5, "ldl": 1.0}
    path.write_text("steps = = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config_file(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config_file(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        apply_setting({}, "steps")
