"""Our step against Real-ESRGAN's own (BasicSR 1.4.2 + realesrgan 0.3.0, in the reference venv that
tools/basicsr_reference.py builds from the registry on first use, about a minute): from the same weights and batches,
`RealESRGANModel.feed_data` + `optimize_parameters` and our TrainingStep end with the same G, EMA and D, to fp32
rounding, over steps that include BasicSR's own D warm-up (`net_d_init_iters`). The yardstick of fp32 rounding is our
own step run on channels-last tensors (other convolution kernels, the same sums): BasicSR's weights are no further
from ours than those. D's spectral norm makes the order of its forwards part of the result: the official order (three
D forwards) matches, the shared fake forward does not (measured: D's update 1.2e-7 from BasicSR's in the official
order, 13% in the shared one)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from realesr_core.models.archs import SRVGGNetCompact
from realesr_core.models.archs.discriminator import UNetDiscriminatorSN
from realesr_core.training import PerceptualLoss, StepOptions, TrainingStep, vgg19_features
from realesr_core.training.metrics import with_basicsr_names

from helpers import photo, to_tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import basicsr_reference  # noqa: E402

pytestmark = pytest.mark.slow
COMPACT = dict(num_feat=16, num_conv=4, upscale=4)
D_FEAT = 16
WARMUP = 1  # BasicSR's net_d_init_iters: its iteration 1 (our step 0) trains D alone
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Fresh weights, three paired batches, and what BasicSR's step makes of them."""
    torch.manual_seed(0)
    generator, discriminator = SRVGGNetCompact(**COMPACT), UNetDiscriminatorSN(num_feat=D_FEAT)
    from torchvision.models import vgg19

    vgg = vgg19(weights=None).state_dict()
    batches = []
    for index in range(3):
        gt = torch.cat([to_tensor(photo(64, name, 40 * index, 60)) for name in PHOTOS[index:index + 2]])
        lq = (F.interpolate(gt, scale_factor=0.25, mode="bicubic", antialias=True).clamp(0, 1) * 255).round() / 255
        batches.append((lq, gt))
    folder = tmp_path_factory.mktemp("basicsr")
    (folder / "experiments" / "pretrained_models").mkdir(parents=True)
    torch.save(vgg, folder / "experiments" / "pretrained_models" / "vgg19-dcbb9e9d.pth")
    given = {"network_g": {"type": "SRVGGNetCompact", "num_in_ch": 3, "num_out_ch": 3, "act_type": "prelu",
                           **COMPACT},
             "g": generator.state_dict(), "d": discriminator.state_dict(), "d_feat": D_FEAT, "batches": batches,
             "train": {"net_d_init_iters": WARMUP}}
    torch.save(given, folder / "in.pt")
    done = basicsr_reference.run_driver(["replay", str(folder / "in.pt"), str(folder / "out.pt")], folder)
    assert done.returncode == 0, done.stdout + done.stderr
    return {**given, "vgg": vgg, "out": torch.load(folder / "out.pt", weights_only=True)}


def _ours(reference: dict, passes: str, channels_last: bool = False) -> tuple[TrainingStep, list[dict]]:
    generator, discriminator = SRVGGNetCompact(**COMPACT), UNetDiscriminatorSN(num_feat=D_FEAT)
    generator.load_state_dict(reference["g"])
    discriminator.load_state_dict(reference["d"])
    options = StepOptions(stage="gan", degradation="none", patch=64, lr=1e-4, precision="fp32",
                          channels_last=channels_last, discriminator_passes=passes, discriminator_warmup=WARMUP)
    step = TrainingStep(generator, options, discriminator=discriminator,
                        perceptual=PerceptualLoss(vgg19_features(reference["vgg"])))
    logs = [step(gt, index, low=lq) for index, (lq, gt) in enumerate(reference["batches"])]
    return step, logs


def _update_gap(ours: dict, theirs: dict, start: dict) -> float:
    """|ours - theirs| over |theirs - start|, across every trained tensor: 0 when the updates are the same."""
    keys = [key for key in theirs if theirs[key].is_floating_point() and not torch.equal(theirs[key], start[key])]
    gap = sum(float((ours[key] - theirs[key]).norm() ** 2) for key in keys) ** 0.5
    update = sum(float((theirs[key] - start[key]).norm() ** 2) for key in keys) ** 0.5
    return gap / update


def _largest_difference(ours: dict, theirs: dict) -> float:
    return max(float((ours[key] - theirs[key]).abs().max()) for key in theirs if theirs[key].is_floating_point())


def _networks(step: TrainingStep) -> dict[str, dict]:
    return {"g": step.generator.state_dict(), "g_ema": step.ema.module.state_dict(),
            "d": step.discriminator.state_dict()}


def test_the_official_order_replays_basicsrs_step(reference: dict) -> None:
    step, logs = _ours(reference, "official")
    out = reference["out"]
    rounding = _networks(_ours(reference, "official", channels_last=True)[0])
    for name, ours in _networks(step).items():
        assert _largest_difference(ours, out[name]) <= 2 * _largest_difference(ours, rounding[name]) + 1e-7, name
    assert _update_gap(step.discriminator.state_dict(), out["d"], reference["d"]) < 1e-5
    for key in ("conv1.weight_u", "conv5.weight_v"):  # spectral norm's vectors took as many power iterations
        torch.testing.assert_close(step.discriminator.state_dict()[key], out["d"][key], rtol=1e-4, atol=1e-6)
    for ours, theirs in zip(logs, out["logs"], strict=True):
        named = with_basicsr_names(ours)
        assert {name: named[name] for name in theirs} == pytest.approx(theirs, rel=1e-4, abs=1e-6)
        assert set(theirs) == set(named) & set(theirs) and ("pixel" in ours) == ("l_g_pix" in theirs)
    assert "l_g_pix" not in out["logs"][0] and "l_g_pix" in out["logs"][1]  # the warm-up step trained D alone


def test_the_shared_fake_forward_is_not_the_official_step(reference: dict) -> None:
    step, _ = _ours(reference, "shared")
    assert _update_gap(step.discriminator.state_dict(), reference["out"]["d"], reference["d"]) > 5e-2
