"""UNetDiscriminatorSN: the official key list, a logit per pixel, spectral norm at work, official files load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from realesr_core import ModelLoadError
from realesr_core.models import load_discriminator
from realesr_core.models.archs.discriminator import UNetDiscriminatorSN

from helpers import randomized

OFFICIAL = json.loads((Path(__file__).resolve().parents[2] / "data" / "state_dict_shapes.json").read_text())
NET_D = next(shapes for name, shapes in OFFICIAL.items() if "Discriminator" in name)


def test_keys_and_shapes_are_the_official_ones() -> None:
    network = UNetDiscriminatorSN()
    assert {k: list(v.shape) for k, v in network.state_dict().items()} == NET_D
    assert sum(p.numel() for p in network.parameters()) == 4_376_897


@pytest.mark.parametrize("num_in_ch,num_feat,skip", [(3, 16, True), (1, 8, False), (4, 8, True)])
def test_a_logit_per_pixel(num_in_ch: int, num_feat: int, skip: bool) -> None:
    network = UNetDiscriminatorSN(num_in_ch, num_feat, skip)
    out = network(torch.rand(2, num_in_ch, 32, 24))
    assert out.shape == (2, 1, 32, 24)
    out.mean().backward()
    assert network.conv1.weight_orig.grad is not None and network.conv0.weight.grad is not None
    with pytest.raises(ValueError, match="multiples of 8"):
        network(torch.rand(1, num_in_ch, 30, 24))


def test_spectral_norm_bounds_the_layers() -> None:
    """Each power iteration in training mode sharpens the estimate; the normalised weight's top singular value is
    about one."""
    network = UNetDiscriminatorSN(num_feat=8).train()
    for _ in range(30):
        network(torch.rand(1, 3, 16, 16))
    weight = network.conv2.weight.detach().flatten(1)
    assert torch.linalg.matrix_norm(weight, ord=2) == pytest.approx(1.0, abs=0.05)


def test_official_files_load_through_the_safe_loader(tmp_path: Path) -> None:
    network = randomized(UNetDiscriminatorSN(num_feat=16))
    torch.save({"params": network.state_dict()}, tmp_path / "net_d.pth")  # the official files' wrapper
    loaded = load_discriminator(tmp_path / "net_d.pth")
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), network.eval()(x))
    with pytest.raises(ModelLoadError, match="not a UNetDiscriminatorSN"):
        load_discriminator({"conv_first.weight": torch.zeros(1)})
    broken = dict(network.state_dict())
    broken["conv3.weight_v"] = torch.zeros(5)
    with pytest.raises(ModelLoadError, match="wrong shapes .*conv3.weight_v"):
        load_discriminator(broken)


def test_the_logits_are_conv9s_own_convolution_values_and_gradients() -> None:
    """The last layer runs as nine 1x1 taps summed in place (faster on the CPU); it is conv9, forward and backward."""
    network = randomized(UNetDiscriminatorSN(num_feat=8))
    features = torch.rand(2, 8, 16, 24, requires_grad=True)
    ours = network._logits(features)
    reference = network.conv9(features)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=0)
    grad = torch.rand_like(reference)
    ours_grads = torch.autograd.grad(ours, [features, network.conv9.weight, network.conv9.bias], grad)
    reference_grads = torch.autograd.grad(reference, [features, network.conv9.weight, network.conv9.bias], grad)
    for mine, theirs in zip(ours_grads, reference_grads, strict=True):
        torch.testing.assert_close(mine, theirs, atol=1e-4, rtol=1e-5)
