"""`realesr finetune` and `realesr train` end to end on real photo files: a run, its resume and an upscale with its
model; every bad input refused before the first step in the command line's words; the generated options."""

from pathlib import Path

import pytest
from PIL import Image

from realesr_core.cli import main
from realesr_core.models import zoo

from helpers import photo


def _training_photos(folder: Path) -> Path:
    folder.mkdir()
    for name in ("astronaut", "chelsea", "coffee"):
        Image.fromarray(photo(96, name, 100, 150)).save(folder / f"{name}.png")
    return folder


@pytest.mark.slow  # a run, its resume and an upscale: seconds
def test_finetune_a_bundled_model_then_upscale_with_it(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    hr = _training_photos(tmp_path / "hr")
    quick = ["--steps", "3", "--batch", "2", "--patch", "64", "--precision", "fp32", "--set", "workers=0",
             "--set", "degrade_size=64", "--set", "pool_size=4"]
    assert main(["finetune", "realesr-animevideov3", str(hr), "-o", str(tmp_path / "run"), "--loss",
                 "perceptual=0", *quick]) == 0
    assert f"trained 3 steps -> {tmp_path / 'run' / 'model.safetensors'}" in capsys.readouterr().out
    assert main(["upscale", str(hr / "coffee.png"), "-m", str(tmp_path / "run" / "model.safetensors"),
                 "-o", str(tmp_path / "up.png")]) == 0
    assert Image.open(tmp_path / "up.png").size == (384, 384)
    assert main(["finetune", "realesr-animevideov3", str(hr), "-o", str(tmp_path / "run"), "--loss",
                 "perceptual=0", *quick, "--steps", "4", "--resume"]) == 0
    assert "trained 4 steps" in capsys.readouterr().out


def test_finetune_refuses_bad_input_before_training(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    hr = _training_photos(tmp_path / "hr")
    cases = [
        (["realesr-animevideov3-x2", str(hr)], "To train without it: --loss perceptual=0"),
        (["new:srvgg:num_feat=8,scale=2", str(hr), "--stage", "net", "--degradation", "realesrgan_x4"],
         "makes x4 inputs but the model is x2"),
        (["realesr-animevideov3-x2", str(tmp_path / "none")], "does not exist"),
        (["new:srvgg:num_feat=8,scale=2", str(hr), "--stage", "net", "--lr-dir", str(tmp_path)],
         "has no low-resolution partner"),
        (["realesr-animevideov3-x2", str(hr), "--stage", "net", "--set", "colour=red"], "unknown option colour"),
        (["realesr-animevideov3-x2", str(hr), "--stage", "net", "--loss", "vgg=1"], "unknown loss vgg"),
    ]
    for arguments, message in cases:
        assert main(["finetune", *arguments, "-o", str(tmp_path / "run"), "--patch", "64"]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "run" / "state").exists()


def test_train_from_a_toml_file_with_overrides(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    hr = _training_photos(tmp_path / "hr")
    config = tmp_path / "run.toml"
    config.write_text(f'preset = "bicubic_x2"\nmodel = "new:srvgg:num_feat=8,num_conv=2,scale=2"\nhr_dir = "{hr}"\n'
                      f'output_dir = "{tmp_path / "out"}"\nbatch = 2\npatch = 32\nworkers = 0\nprecision = "fp32"\n'
                      f'\n[losses]\ncharbonnier = 1.0\n')
    assert main(["train", str(config), "--set", "steps=2", "--set", "degrade_size=64"]) == 0
    assert "trained 2 steps" in capsys.readouterr().out
    assert main(["train", str(config), "--set", "steps=two"]) == 2
    assert "steps should be int, got 'two'" in capsys.readouterr().err


def test_a_file_that_is_no_model_and_a_patch_the_discriminator_cannot_take_are_named(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    hr = _training_photos(tmp_path / "hr")
    for text, said in (("hello world\n", "is not a readable PyTorch checkpoint"),  # once a KeyError: 101
                       ("not a model", "was refused: it is no pickle of tensors and plain containers")):
        (tmp_path / "notes.pth").write_text(text)
        assert main(["finetune", str(tmp_path / "notes.pth"), str(hr), "-o", str(tmp_path / "run")]) == 2
        err = capsys.readouterr().err
        assert f"MODEL {tmp_path / 'notes.pth'}: notes.pth {said}" in err, err
        assert "MODEL is a bundled name, a model file" in err and "weights_only" not in err
    if "RealESRGAN_x2plus" not in zoo.bundled_models()[0]:  # no package ships it: its official file's path
        assert main(["finetune", "RealESRGAN_x2plus", str(hr), "-o", str(tmp_path / "run")]) == 2
        err = capsys.readouterr().err
        assert "MODEL RealESRGAN_x2plus: its weights are not installed here; give the path of the official " \
               "RealESRGAN_x2plus.pth (67,061,725 bytes) as MODEL" in err and "upscale_models" not in err
    assert main(["finetune", "realesr-animevideov3", str(hr), "-o", str(tmp_path / "run"), "--patch", "60"]) == 2
    assert "the patch (60) must be a multiple of 8: the discriminator halves it three times" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_bicubic_fine_tune_needs_no_pool_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    hr = _training_photos(tmp_path / "hr")
    assert main(["finetune", "new:srvgg:num_feat=8,num_conv=2,scale=2", str(hr), "-o", str(tmp_path / "run"),
                 "--stage", "net", "--degradation", "bicubic_x2", "--batch", "8", "--steps", "1", "--patch", "32",
                 "--set", "workers=0", "--set", "degrade_size=64"]) == 0
    out = capsys.readouterr().out
    assert "training-pair pool of 0 pairs: the degradation has nothing random to mix" in out
    assert "learning rate 0.0002" in out and "trained 1 steps" in out


def test_the_fine_tunes_options_come_from_the_config_fields(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["finetune", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    for said in ("--d-lr", "--discriminator ", "--discriminator-warmup", "1 - 10 / steps",
                 "the stage's official rate: net 2e-4, gan 1e-4", "default: realesrgan_x<the model's scale>"):
        assert said in shown, said
    with pytest.raises(SystemExit):
        main(["finetune", "x", "y", "-o", "z", "--steps", "0"])
    assert "argument --steps: steps must be 1..1e+09; got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    shown = capsys.readouterr().out
    assert "discriminator_passes = 'official'" in shown and "degradation_draws = 'batch'" in shown


def test_pairs_for_a_resized_model_say_which_scale_it_trains_at(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    """realesr-animevideov3-x2 is a x4 network resized to x2: x2 pairs are refused with why, before any step."""
    for folder, side in (("hr", 64), ("lr", 32)):
        (tmp_path / folder).mkdir()
        Image.fromarray(photo(64)).resize((side, side)).save(tmp_path / folder / "a.png")
    assert main(["finetune", "realesr-animevideov3-x2", str(tmp_path / "hr"), "--lr-dir", str(tmp_path / "lr"),
                 "-o", str(tmp_path / "run"), "--patch", "32"]) == 2
    assert ("must be exactly 16x16 (realesr-animevideov3-x2 is a x4 network whose output is resized to x2: it "
            "trains on x4 pairs)") in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
