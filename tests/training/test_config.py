"""Run options: presets, TOML files and `--set` overrides become one validated TrainingConfig, every mistake is named
before anything runs, and the run's rules (pool from the batch, learning rate from the stage, EMA decay from the
run's length, the discriminator's warm-up) are the config's."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from realesr_core.training import (
    TRAINING_PRESETS,
    ConfigError,
    TrainingConfig,
    apply_setting,
    build_config,
    finetune_degradation,
    load_config_file,
)

REQUIRED = {"model": "RealESRGAN_x4plus", "hr_dir": "hr", "output_dir": "out"}


@pytest.mark.parametrize("name", list(TRAINING_PRESETS))
def test_every_preset_makes_a_valid_config(name: str) -> None:
    config = build_config({"preset": name, **REQUIRED, **({"lr_dir": "lr"} if name == "finetune_pairs" else {})})
    assert config.stage in ("net", "gan") and config.steps > 0
    assert config.loss_weights.gan == (0.1 if config.stage == "gan" else 0.0)


def test_official_numbers_of_the_two_stages() -> None:
    net, gan = (build_config({"preset": name, **REQUIRED}) for name in ("realesrnet_x4plus", "realesrgan_x4plus"))
    assert (net.generator_lr, net.steps, net.batch, net.patch, net.run_ema_decay) == (2e-4, 1_000_000, 12, 256, 0.999)
    assert (gan.generator_lr, gan.discriminator_lr, gan.steps) == (1e-4, 1e-4, 400_000)
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
    ({"steps": 0}, r"steps must be 1\.\.1e\+09; got 0"),
    ({"lr": 0.5}, r"lr must be 0 \(the stage's official rate: net 2e-4, gan 1e-4\) or 1e-07\.\.0\.01; got 0\.5"),
    ({"losses": {"vgg": 1.0}}, "unknown loss vgg"),
    ({"losses": {"gan": -1.0}}, "cannot be negative"),
    ({"degradation": "blurry"}, "degradation must be one of none, realesrgan_x4, .*; got 'blurry'"),
    ({"degradation": "none"}, "come from lr_dir"),
    ({"precision": "int8"}, "precision must be one of auto, fp32, bf16, fp16"),
    ({"patch": 60}, r"patch \(60\) must be a multiple of 8: the discriminator halves it three times"),
    ({"patch": 66}, r"patch \(66\) must be a multiple of the scale of the degradation preset 'realesrgan_x4' \(4\)"),
    ({"patch": 128, "losses": {"ms_ssim": 1.0}}, "MS-SSIM loss needs a patch of at least 176 px"),
    ({"patch": 512}, r"patch \(512\) cannot be larger than degrade_size \(400\)"),
    ({"degrade_size": 402}, r"degrade_size \(402\) must be a multiple of the scale \(4\)"),
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


def test_the_pool_follows_the_batch_and_is_left_out_where_it_has_nothing_to_mix() -> None:
    assert build_config({**REQUIRED, "batch": 4}).run_pool_size() == 180
    eight = build_config({**REQUIRED, "batch": 8})
    assert eight.run_pool_size() == 176  # 180 / 8 = 22.5: the nearest multiple
    assert "training-pair pool of 176 pairs: the nearest multiple of the batch (8)" in " ".join(eight.notes())
    bicubic = build_config({**REQUIRED, "batch": 8, "degradation": "bicubic_x4"})
    assert bicubic.run_pool_size() == 0 and "nothing random to mix" in " ".join(bicubic.notes())
    assert eight.run_pool_size(paired=True) == 0 and build_config({**REQUIRED, "batch": 500}).run_pool_size() == 500


def test_the_run_rules_for_learning_rate_ema_and_warmup() -> None:
    fine = build_config(REQUIRED)  # the defaults are the official fine-tune
    assert (fine.stage, fine.generator_lr, fine.steps, fine.batch, fine.patch) == ("gan", 1e-4, 5000, 4, 256)
    assert build_config({**REQUIRED, "stage": "net"}).generator_lr == 2e-4
    assert build_config({**REQUIRED, "stage": "net", "lr": 5e-5}).generator_lr == 5e-5
    assert fine.run_ema_decay == pytest.approx(0.998)  # 5000 steps: the EMA averages over the last tenth
    assert build_config({**REQUIRED, "steps": 300}).run_ema_decay == pytest.approx(1 - 10 / 300)
    assert build_config({**REQUIRED, "steps": 50_000}).run_ema_decay == 0.999
    assert fine.run_discriminator_warmup == fine.discriminator_warmup  # a fresh D warms up
    assert build_config({**REQUIRED, "steps": 300}).run_discriminator_warmup == 30  # at most a tenth of the run
    assert build_config({**REQUIRED, "discriminator": "netD.pth"}).run_discriminator_warmup == 0
    assert build_config({**REQUIRED, "stage": "net"}).run_discriminator_warmup == 0
    options = fine.step_options()
    assert (options.pool_size, options.ema_decay) == (180, pytest.approx(0.998))


def test_a_fine_tune_picks_the_degradation_of_the_models_scale() -> None:
    assert [finetune_degradation(scale, False) for scale in (4, 2)] == ["realesrgan_x4", "realesrgan_x2"]
    assert finetune_degradation(4, True) == "none"


def test_every_option_has_help_and_the_toml_keys_are_the_fields() -> None:
    from realesr_core.option_fields import described_fields

    described = described_fields(TrainingConfig)
    assert all(field.facts.help for field in described.values())
    plain = {"model", "hr_dir", "output_dir", "losses", "milestones"}  # no widget: positional or TOML-only
    assert set(described) | plain == {f.name for f in dataclasses.fields(TrainingConfig)}
