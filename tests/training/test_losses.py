"""Losses: values, the perceptual loss against torchvision's VGG19 layer by layer (random weights: the ImageNet ones
are not to be had here), and a clear error when VGG19's weights are missing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from realesr_core import RealESRError
from realesr_core.training.losses import (
    MS_SSIM_WEIGHTS,
    VGG_LAYERS,
    PerceptualLoss,
    artifact_map,
    charbonnier_loss,
    gan_loss,
    l1_loss,
    ldl_loss,
    ms_ssim_loss,
    ssim_terms,
    vgg19_features,
    vgg19_weights_path,
)

torchvision = pytest.importorskip("torchvision")


@pytest.fixture(scope="module")
def random_vgg() -> dict:
    torch.manual_seed(0)
    return torchvision.models.vgg19(weights=None).state_dict()


@pytest.fixture(scope="module")
def features(random_vgg: dict) -> torch.nn.Sequential:
    return vgg19_features(random_vgg)


def test_pixel_losses() -> None:
    a, b = torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 0.5)
    assert l1_loss(a, b).item() == pytest.approx(0.5)
    assert charbonnier_loss(a, b).item() == pytest.approx(0.5)
    assert charbonnier_loss(a, a).item() == pytest.approx(1e-6)  # sqrt(eps): smooth at zero


@pytest.mark.slow  # VGG19 built twice: seconds
def test_perceptual_features_are_torchvisions_pre_relu_outputs(random_vgg: dict, features) -> None:
    loss = PerceptualLoss(features)
    image = torch.rand(1, 3, 32, 32)
    reference = torchvision.models.vgg19(weights=None)
    reference.load_state_dict(random_vgg)
    x = (image - loss.mean) / loss.std
    expected = {}
    for index, layer in enumerate(reference.features):
        x = layer(x)
        if isinstance(layer, torch.nn.Conv2d):
            expected[index] = x.clone()
    maps = loss.feature_maps(image)
    assert set(maps) == set(VGG_LAYERS)
    for name, (index, _) in VGG_LAYERS.items():
        assert isinstance(reference.features[index], torch.nn.Conv2d)
        torch.testing.assert_close(maps[name], expected[index])


def test_perceptual_loss_trains_the_output_not_vgg_and_runs_in_fp32(features) -> None:
    loss = PerceptualLoss(features, style_weight=1.0).train()
    target = torch.rand(2, 3, 24, 24)
    assert loss(target, target).item() == 0
    output = target.clone().add_(0.1 * torch.rand_like(target)).requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(output, target)
    assert value.dtype == torch.float32 and value.item() > 0
    value.backward()
    assert output.grad is not None and all(p.grad is None for p in loss.features.parameters())
    assert not loss.features.training


def test_missing_vgg_weights_say_where_to_put_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  random_vgg: dict) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(RealESRError, match=r"vgg19-dcbb9e9d\.pth.*hub/checkpoints.*need no pretrained network"):
        vgg19_weights_path()
    with pytest.raises(RealESRError, match="does not exist"):
        vgg19_weights_path(tmp_path / "missing.pth")
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    only_features = {k: v for k, v in random_vgg.items() if k.startswith("features.")}  # all the loss reads
    torch.save(only_features, tmp_path / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth")
    assert len(vgg19_features()) == 35  # found in torchvision's cache, truncated after conv5_4


def test_gan_losses() -> None:
    logits = torch.tensor([[2.0, -1.0]])
    real = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
    assert gan_loss(logits, True).item() == pytest.approx(real.item())
    assert gan_loss(logits, True, "lsgan").item() == pytest.approx(((2 - 1) ** 2 + (-1 - 1) ** 2) / 2)
    assert gan_loss(logits, True, "hinge").item() == pytest.approx((0 + 2) / 2)
    assert gan_loss(logits, False, "hinge").item() == pytest.approx((3 + 0) / 2)
    assert gan_loss(logits, True, "hinge", for_discriminator=False).item() == pytest.approx(-0.5)
    with pytest.raises(RealESRError, match="GAN loss must be one of"):
        gan_loss(logits, True, "wasserstein")


def _local_variance_by_loop(residual: torch.Tensor, window: int) -> torch.Tensor:
    pad = window // 2
    padded = torch.nn.functional.pad(residual, (pad, pad, pad, pad), mode="reflect")
    out = torch.empty_like(residual)
    for y in range(residual.shape[-2]):
        for x in range(residual.shape[-1]):
            out[..., y, x] = padded[..., y:y + window, x:x + window].flatten(-2).var(dim=-1)
    return out


def test_artifact_map_is_local_variance_times_image_weight_and_zero_where_ema_is_worse() -> None:
    torch.manual_seed(0)
    target = torch.rand(2, 3, 9, 11)
    output = target + 0.2 * torch.randn_like(target)
    ema_output = target + 0.2 * torch.randn_like(target)
    weight = artifact_map(output, target, ema_output, window=5)
    residual = (target - output).abs().sum(1, keepdim=True)
    expected = residual.var(dim=(1, 2, 3), keepdim=True) ** 0.2 * _local_variance_by_loop(residual, 5)
    better_than_ema = residual < (target - ema_output).abs().sum(1, keepdim=True)
    expected[better_than_ema] = 0
    assert weight.shape == (2, 1, 9, 11)
    assert 0 < better_than_ema.sum() < better_than_ema.numel()
    torch.testing.assert_close(weight, expected)


def test_ldl_loss_pushes_only_where_output_is_worse_than_ema() -> None:
    torch.manual_seed(1)
    target = torch.rand(1, 3, 16, 16)
    output = (target + 0.3 * torch.randn_like(target)).requires_grad_(True)
    assert ldl_loss(output, target, ema_output=target).item() > 0  # a perfect EMA: every error counts
    perfect = ldl_loss(target.clone().requires_grad_(True), target, ema_output=output.detach())
    assert perfect.item() == 0
    ldl_loss(output, target, ema_output=target).backward()
    assert output.grad is not None and output.grad.abs().sum() > 0


def test_ssim_agrees_with_scikit_image() -> None:
    metrics = pytest.importorskip("skimage.metrics")
    data = pytest.importorskip("skimage.data")
    target = torch.from_numpy(data.astronaut()[100:164, 120:190]).permute(2, 0, 1)[None].double() / 255
    output = (target + 0.05 * torch.randn_like(target)).clamp(0, 1)
    ssim, _ = ssim_terms(output, target)
    reference = metrics.structural_similarity(
        output[0].permute(1, 2, 0).numpy(), target[0].permute(1, 2, 0).numpy(), channel_axis=2, data_range=1.0,
        gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert ssim.mean().item() == pytest.approx(reference, abs=1e-9)


def test_ms_ssim_loss_combines_five_scales_and_trains() -> None:
    torch.manual_seed(2)
    target = torch.rand(2, 3, 176, 180)
    assert ms_ssim_loss(target, target).item() == pytest.approx(0.0, abs=1e-6)
    output = (target + 0.1 * torch.randn_like(target)).requires_grad_(True)
    loss = ms_ssim_loss(output, target)
    x, y, expected = output.detach(), target, torch.ones(2, 3)
    for scale, weight in enumerate(MS_SSIM_WEIGHTS):
        ssim, contrast_structure = ssim_terms(x, y)
        expected = expected * (ssim if scale == 4 else contrast_structure).clamp_min(1e-6) ** weight
        x, y = torch.nn.functional.avg_pool2d(x, 2), torch.nn.functional.avg_pool2d(y, 2)
    assert loss.item() == pytest.approx(1 - expected.mean().item(), rel=1e-5)
    assert 0 < loss.item() < 1
    loss.backward()
    assert torch.isfinite(output.grad).all() and output.grad.abs().sum() > 0
    with pytest.raises(RealESRError, match="at least 176 px"):
        ms_ssim_loss(target[..., :64, :64], target[..., :64, :64])
