"""The training step: a fresh network learns (beats bicubic on a held-out photo), the GAN stage steps G and D and
moves D's real and fake logits apart, non-finite losses are skipped by name and stop training after ten in a row,
and bad setups are refused."""

from __future__ import annotations

import copy
import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from realesr_core import RealESRError
from realesr_core.degradation import ops
from realesr_core.models.archs import SRVGGNetCompact
from realesr_core.models.archs.discriminator import UNetDiscriminatorSN
from realesr_core.training import NonFiniteLossError, StepOptions, TrainingStep

from helpers import photo, psnr, to_tensor


def _options(**options: object) -> StepOptions:
    """The step's options: the net stage without a D warm-up, in fp32 on contiguous tensors, unless a test asks
    otherwise (exact comparisons, and faster than bf16 autocast for networks this small on the CPU)."""
    defaults = {"stage": "net", "discriminator_warmup": 0, "precision": "fp32", "channels_last": False}
    return StepOptions(**{**defaults, **options})


TRAINING_PHOTOS = ("astronaut", "chelsea", "rocket", "immunohistochemistry")
TEXTURES = ("grass", "gravel", "brick")  # fine grain that no x4 model can restore from a 16x smaller input


def _batches(patch: int, batch: int, seed: int = 0, names: tuple[str, ...] = TRAINING_PHOTOS):
    from skimage import data

    pictures = [getattr(data, name)() for name in names]
    images = [to_tensor(picture[..., :3].copy() if picture.ndim == 3 else np.repeat(picture[..., None], 3, 2))[0]
              for picture in pictures]
    generator = torch.Generator().manual_seed(seed)
    while True:
        crops = []
        for _ in range(batch):
            image = images[int(torch.randint(len(images), (1,), generator=generator))]
            top = int(torch.randint(image.shape[1] - patch, (1,), generator=generator))
            left = int(torch.randint(image.shape[2] - patch, (1,), generator=generator))
            crops.append(image[:, top:top + patch, left:left + patch])
        yield torch.stack(crops)


@pytest.mark.slow  # 3,000 steps, about 100 CPU-seconds on one thread: fewer or smaller do not clear the bar
def test_a_fresh_compact_network_learns_to_beat_bicubic_on_a_held_out_photo() -> None:
    """Measured on one thread: +0.2 dB over bicubic after 1,000 steps, +0.5 after 1,750, +1.2 after 3,000; a net of
    16 features and 4 convolutions or a 32-px patch reaches +0.2 after 1,500 steps, and lr 2e-3 learns no faster."""
    torch.manual_seed(0)
    step = TrainingStep(SRVGGNetCompact(num_feat=32, num_conv=8, upscale=2),
                        _options(degradation="bicubic_x2", patch=64, lr=1e-3, ema_decay=0.99, pool_size=16))
    for index, ground_truths in zip(range(3000), _batches(patch=64, batch=4), strict=False):
        step(ground_truths, index)
    held_out = to_tensor(photo(256, "coffee", 0, 0))
    low = F.interpolate(held_out, scale_factor=0.5, mode="bicubic", align_corners=False).clamp(0, 1)
    low = (low * 255).round() / 255
    bicubic = F.interpolate(low, scale_factor=2, mode="bicubic", align_corners=False).clamp(0, 1)
    with torch.no_grad():
        learned = step.ema.module(low).clamp(0, 1)
    inner = (..., slice(8, -8), slice(8, -8))
    assert psnr(learned[inner], held_out[inner], 1.0) >= psnr(bicubic[inner], held_out[inner], 1.0) + 0.5


def test_the_gan_stage_steps_both_networks_and_g_gradient_leaves_d_weights_alone(compact) -> None:
    torch.manual_seed(0)
    generator = copy.deepcopy(compact.module).float()
    discriminator = UNetDiscriminatorSN(num_feat=16)
    step = TrainingStep(generator, _options(losses={"gan": 0.1}, patch=64, pool_size=2, seed=1),
                        discriminator=discriminator)
    g_before, d_before = copy.deepcopy(generator.state_dict()), copy.deepcopy(discriminator.state_dict())
    ground_truths = next(_batches(patch=64, batch=2))
    logged = step(ground_truths, 0)
    assert set(logged) == {"pixel", "gan", "lr", "d_real", "d_fake", "d_real_logit", "d_fake_logit"}
    assert all(math.isfinite(value) for value in logged.values())
    assert not torch.equal(g_before["body.0.weight"], generator.state_dict()["body.0.weight"])
    assert not torch.equal(d_before["conv0.weight"], discriminator.state_dict()["conv0.weight"])
    backward_passes_into_d = []
    discriminator.conv0.weight.register_hook(lambda grad: backward_passes_into_d.append(grad))
    step(ground_truths, 1)
    assert len(backward_passes_into_d) == 2  # real and fake, separately; G's gradient through D reaches none


@pytest.mark.slow  # 160 steps of a bundled model against a fresh D
def test_a_gan_stage_run_on_a_bundled_model_moves_d_real_and_fake_logits_apart(compact) -> None:
    """D learns to tell real textures from the bundled model's x4 reconstructions of them: its mean logits start
    together and end apart, real above fake in every one of the last steps. G trains too, at a low learning rate:
    at the official 1e-4 a pretrained G shifts its textures faster than a freshly started, spectrally normalised D
    separates them (D alone, or with G at 1e-6, separates within about 100 steps; with G at 1e-4, after far more
    steps than a test can take)."""
    torch.manual_seed(0)
    generator = copy.deepcopy(compact.module).float()
    before = generator.body[0].weight.detach().clone()
    options = _options(losses={"gan": 0.1}, patch=64, lr=1e-6, discriminator_lr=1e-4, pool_size=8)
    step = TrainingStep(generator, options, discriminator=UNetDiscriminatorSN(num_feat=16))
    gaps = []
    for index, ground_truths in zip(range(160), _batches(patch=64, batch=4, names=TEXTURES), strict=False):
        logged = step(ground_truths, index)
        gaps.append(logged["d_real_logit"] - logged["d_fake_logit"])
    first, last = gaps[:25], gaps[-25:]
    assert abs(sum(first) / len(first)) < 0.02
    assert sum(last) / len(last) > 0.15 and min(last) > 0
    assert not torch.equal(before, generator.body[0].weight)  # G stepped as well


def test_non_finite_losses_are_skipped_by_name_and_stop_after_ten(tiny_srvgg) -> None:
    with torch.no_grad():
        tiny_srvgg.body[0].weight[0, 0, 0, 0] = float("nan")
    before = copy.deepcopy(tiny_srvgg.state_dict())
    step = TrainingStep(tiny_srvgg, _options(degradation="bicubic_x4", patch=32, pool_size=2))
    ground_truths = to_tensor(photo(32)).repeat(2, 1, 1, 1)
    for index in range(9):
        assert step(ground_truths, index) == {"skipped": "pixel"}
    assert all(torch.allclose(value, tiny_srvgg.state_dict()[key], equal_nan=True) for key, value in before.items())
    with pytest.raises(NonFiniteLossError, match="pixel loss was not finite 10 steps in a row"):
        step(ground_truths, 9)


def test_inconsistent_setups_are_refused(tiny_srvgg) -> None:
    with pytest.raises(RealESRError, match="needs a discriminator"):
        TrainingStep(tiny_srvgg, _options(losses={"gan": 0.1}))
    with pytest.raises(RealESRError, match="perceptual weight above 0"):
        TrainingStep(tiny_srvgg, _options(stage="gan"), discriminator=UNetDiscriminatorSN(num_feat=8))


def test_resuming_from_the_state_is_bit_identical_to_an_uninterrupted_run(compact) -> None:
    def fresh_step() -> TrainingStep:
        torch.manual_seed(0)
        return TrainingStep(copy.deepcopy(compact.module).float(),
                            _options(losses={"gan": 0.1}, patch=32, pool_size=4, seed=5),
                            discriminator=UNetDiscriminatorSN(num_feat=8))

    batches = [batch for _, batch in zip(range(6), _batches(patch=32, batch=2, seed=3), strict=False)]
    uninterrupted = fresh_step()
    for index, ground_truths in enumerate(batches):
        uninterrupted(ground_truths, index)
    first_half = fresh_step()
    for index, ground_truths in enumerate(batches[:3]):
        first_half(ground_truths, index)
    saved = io.BytesIO()
    torch.save(first_half.state_dict(), saved)
    saved.seek(0)
    resumed = fresh_step()
    torch.manual_seed(123)  # nothing may depend on the global RNG
    resumed.load_state_dict(torch.load(saved, weights_only=True))
    for index, ground_truths in enumerate(batches[3:], start=3):
        resumed(ground_truths, index)
    for name, ours, theirs in (("generator", resumed.generator, uninterrupted.generator),
                               ("ema", resumed.ema.module, uninterrupted.ema.module),
                               ("discriminator", resumed.discriminator, uninterrupted.discriminator)):
        for key, value in theirs.state_dict().items():
            assert torch.equal(ours.state_dict()[key], value), (name, key)
    with pytest.raises(RealESRError, match="with a discriminator; resume it with the same stage"):
        TrainingStep(copy.deepcopy(compact.module).float(), _options()).load_state_dict(first_half.state_dict())


def test_multistep_schedule_halves_both_learning_rates_at_each_milestone(tiny_srvgg) -> None:
    options = _options(degradation="bicubic_x4", losses={"gan": 0.1}, patch=32, lr=2e-4, discriminator_lr=1e-4,
                          pool_size=2, milestones=(2, 3))
    step = TrainingStep(tiny_srvgg, options, discriminator=UNetDiscriminatorSN(num_feat=8))
    ground_truths = to_tensor(photo(32)).repeat(2, 1, 1, 1)
    learning_rates = [step(ground_truths, index)["lr"] for index in range(4)]
    assert learning_rates == pytest.approx([2e-4, 2e-4, 1e-4, 5e-5])
    assert step.discriminator_optimizer.param_groups[0]["lr"] == pytest.approx(2.5e-5)


def test_paired_steps_train_on_the_given_inputs_without_the_pool(tiny_srvgg) -> None:
    high = to_tensor(photo(64)).repeat(2, 1, 1, 1)
    low = F.interpolate(high, scale_factor=0.25, mode="area")
    step = TrainingStep(tiny_srvgg, _options(degradation="none", patch=64, pool_size=2))
    with torch.no_grad():
        expected = F.l1_loss(tiny_srvgg(low), ops.on_colour(high, ops.usm_sharpen)).item()
    assert step(high, 0, low=low)["pixel"] == pytest.approx(expected, rel=1e-5)
    assert step.pool.filled == 0
    with pytest.raises(RealESRError, match="give it `low` inputs"):
        step(high, 1)


def test_bad_batches_are_clear_errors_before_any_update(tiny_srvgg) -> None:
    step = TrainingStep(tiny_srvgg, _options(degradation="none", patch=64, pool_size=2))
    before = copy.deepcopy(tiny_srvgg.state_dict())
    high = to_tensor(photo(64)).repeat(2, 1, 1, 1)
    with pytest.raises(RealESRError, match=r"made \[2, 3, 128, 128\] from inputs \[2, 3, 32, 32\], but the targets"):
        step(high, 0, low=F.interpolate(high, scale_factor=0.5, mode="area"))  # a x2 pair for a x4 network
    # a NaN batch is not read on the host before the step (a device wait every step): its loss names it, no update
    assert step(high, 0, low=torch.full((2, 3, 16, 16), float("nan"))) == {"skipped": "pixel"}
    with pytest.raises(RealESRError, match="empty"):
        step(high[:0], 0, low=high[:0, :, :16, :16])
    with pytest.raises(RealESRError, match=r"expected 3 \(RGB\) channels, got 4"):
        TrainingStep(tiny_srvgg, _options(degradation="bicubic_x4", patch=32, pool_size=2))(torch.rand(2, 4, 32, 32), 0)
    assert all(torch.equal(value, tiny_srvgg.state_dict()[key]) for key, value in before.items())


def _paired_step(network: torch.nn.Module, **options: object) -> TrainingStep:
    torch.manual_seed(0)
    return TrainingStep(copy.deepcopy(network), _options(**{**PAIRED, "losses": {"gan": 0.1}, **options}),
                        discriminator=UNetDiscriminatorSN(num_feat=8))


PAIRED = dict(degradation="none", patch=64, lr=1e-3)


def _paired_batch() -> tuple[torch.Tensor, torch.Tensor]:
    high = torch.cat([to_tensor(photo(64, name)) for name in ("astronaut", "chelsea", "coffee", "rocket")])
    return high, F.interpolate(high, scale_factor=0.25, mode="area")


def test_accumulated_micro_batches_give_the_whole_batch_update(tiny_srvgg) -> None:
    """Exact for G's losses; D's spectral norm takes one power iteration per micro-batch, so the GAN stage is close
    rather than equal (as in every trainer that accumulates)."""
    high, low = _paired_batch()
    whole, split = (TrainingStep(copy.deepcopy(tiny_srvgg), _options(**PAIRED, accumulate=count)) for count in (1, 2))
    logged_whole, logged_split = whole(high, 0, low=low), split(high, 0, low=low)
    assert logged_split["pixel"] == pytest.approx(logged_whole["pixel"], rel=1e-5)
    ours, theirs = (step.optimizer.state_dict()["state"] for step in (split, whole))
    for index, moments in theirs.items():  # Adam's first moment is 0.1 x the first gradient
        torch.testing.assert_close(ours[index]["exp_avg"], moments["exp_avg"], rtol=1e-4, atol=1e-9)
    assert _paired_step(tiny_srvgg, accumulate=2)(high, 0, low=low)["d_fake"] > 0
    with pytest.raises(RealESRError, match="multiple of accumulate"):
        _paired_step(tiny_srvgg, accumulate=3)(high, 0, low=low)


def test_gradient_clipping_bounds_the_update(tiny_srvgg) -> None:
    high, low = _paired_batch()
    free, clipped = _paired_step(tiny_srvgg), _paired_step(tiny_srvgg, grad_clip=1e-6)
    free(high, 0, low=low)
    clipped(high, 0, low=low)
    start = tiny_srvgg.state_dict()
    moved = {name: max((step.generator.state_dict()[k] - v).abs().max().item() for k, v in start.items())
             for name, step in (("free", free), ("clipped", clipped))}
    # Adam's first step moves every weight by about lr whatever the gradient's size, unless clipping made it ~0
    assert moved["free"] == pytest.approx(1e-3, rel=0.05) and moved["clipped"] < moved["free"]


def test_bf16_autocast_and_channels_last_train_finite_and_close_to_fp32(tiny_srvgg) -> None:
    high, low = _paired_batch()
    fp32, bf16 = _paired_step(tiny_srvgg), _paired_step(tiny_srvgg, precision="bf16", channels_last=True)
    for index in range(3):
        expected, logged = fp32(high, index, low=low), bf16(high, index, low=low)
        assert all(math.isfinite(value) for value in logged.values())
        assert logged["pixel"] == pytest.approx(expected["pixel"], rel=0.05)
    assert bf16.generator.body[0].weight.dtype == torch.float32  # autocast: the weights stay fp32
    assert bf16.generator.body[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_the_discriminator_warms_up_alone_with_g_frozen(tiny_srvgg) -> None:
    high, low = _paired_batch()
    step = _paired_step(tiny_srvgg, discriminator_warmup=2)
    g_start, d_start = copy.deepcopy(step.generator.state_dict()), copy.deepcopy(step.discriminator.state_dict())
    warming = [step(high, index, low=low) for index in range(2)]
    assert all(set(logged) == {"lr", "d_real", "d_real_logit", "d_fake", "d_fake_logit"} for logged in warming)
    assert all(torch.equal(value, step.generator.state_dict()[key]) for key, value in g_start.items())
    assert all(torch.equal(value, step.ema.module.state_dict()[key]) for key, value in g_start.items())
    assert not torch.equal(d_start["conv0.weight"], step.discriminator.conv0.weight)
    assert {"pixel", "gan"} <= set(step(high, 2, low=low))  # then G trains, its GAN loss included
    assert not torch.equal(g_start["body.0.weight"], step.generator.body[0].weight)


def test_official_and_shared_discriminator_passes(tiny_srvgg) -> None:
    """The official step runs D three times (G's GAN loss with D frozen, real, fake); the shared one takes the fake
    logits from G's forward, so spectral norm's power iteration advances twice a step instead of three times and
    each pass meets another sigma: D learns differently (tests/training/test_basicsr_reference.py has by how much)."""
    high, low = _paired_batch()
    official, shared = _paired_step(tiny_srvgg), _paired_step(tiny_srvgg, discriminator_passes="shared")
    forwards = []
    official.discriminator.conv0.register_forward_hook(lambda *_: forwards.append("official"))
    shared.discriminator.conv0.register_forward_hook(lambda *_: forwards.append("shared"))
    for index in range(2):
        official(high, index, low=low)
        shared(high, index, low=low)
    assert forwards.count("official") == 6 and forwards.count("shared") == 4
    assert not torch.allclose(official.discriminator.conv0.weight, shared.discriminator.conv0.weight, atol=1e-7)


def test_the_net_stage_sharpens_whole_ground_truths_before_cropping_them(tiny_srvgg) -> None:
    """As RealESRNet: the 400² (here 64²) ground truths are sharpened, degraded and cropped, and the targets are the
    crops of the sharpened images; the GAN stage (RealESRGAN) sharpens its crops after the pool."""
    ground_truths = torch.cat([to_tensor(photo(64, name)) for name in ("astronaut", "chelsea")])
    net = TrainingStep(copy.deepcopy(tiny_srvgg), _options(patch=32, pool_size=0))
    gan = TrainingStep(copy.deepcopy(tiny_srvgg), _options(patch=32, pool_size=0, losses={"gan": 0.1}),
                       discriminator=UNetDiscriminatorSN(num_feat=8))
    (net_low, _, net_target), (gan_low, clean, gan_target) = (step._synthesise(ground_truths, 0) for step in (net, gan))
    assert torch.equal(net_low, gan_low)  # the same degradation and crop either way
    sharpened = ops.on_colour(ground_truths, ops.usm_sharpen)
    top, left = next((top, left) for top in range(33) for left in range(33)
                     if torch.equal(clean, ground_truths[..., top:top + 32, left:left + 32]))
    assert torch.equal(net_target, sharpened[..., top:top + 32, left:left + 32])
    assert torch.equal(gan_target, ops.on_colour(clean, ops.usm_sharpen))
    assert not torch.allclose(net_target, gan_target, atol=1e-3)  # the crop's edges see what lies beyond them


def test_official_draws_share_the_batch_choices_and_keep_per_image_ones() -> None:
    from realesr_core.degradation.pipeline import get_preset, sample_parameters

    config = get_preset("realesrgan_x4")
    split = sample_parameters(config, 8, 64, 64, seed=3, batch_draws=True)
    per_image = sample_parameters(config, 8, 64, 64, seed=3)
    for key in ("resize", "noise"):
        assert len({str(p["first"][key]["direction" if key == "resize" else "type"]) for p in split}) == 1
    assert len({p["final"]["order"] for p in split}) == 1 and len({p["final"]["resize_mode"] for p in split}) == 1
    assert len({p["second"]["blur"] is None for p in split}) == 1
    assert len({str(p["first"]["blur"]) for p in split}) == 8  # kernels stay per image
    assert len({p["first"]["jpeg"]["quality"] for p in split}) == 8
    many = sample_parameters(config, 64, 64, 64, seed=3)
    assert len({p["first"]["resize"]["factor"] for p in many}) > 1 and per_image[0] == sample_parameters(
        config, 1, 64, 64, seed=3)[0]
