"""SRVGGNetCompact: structure, variants, hyper-parameters from shapes."""

from __future__ import annotations

import pytest
import torch

from realesr_core import load_model
from realesr_core.models.archs import SRVGGNetCompact
from realesr_core.models.registry import detect

from helpers import randomized


@pytest.mark.parametrize("upscale", [1, 2, 3, 4])
@pytest.mark.parametrize("act_type", ["prelu", "relu", "leakyrelu"])
def test_srvgg_shapes(upscale: int, act_type: str) -> None:
    net = SRVGGNetCompact(num_feat=8, num_conv=2, upscale=upscale, act_type=act_type).eval()
    assert net(torch.rand(2, 3, 10, 7)).shape == (2, 3, 10 * upscale, 7 * upscale)


def test_srvgg_official_parameter_counts() -> None:
    assert sum(p.numel() for p in SRVGGNetCompact(num_conv=32).parameters()) == 1_213_296
    assert sum(p.numel() for p in SRVGGNetCompact(num_conv=16).parameters()) == 621_424


def test_srvgg_learns_a_residual_over_nearest_upsampling() -> None:
    net = SRVGGNetCompact(num_feat=8, num_conv=1, upscale=2).eval()
    torch.nn.init.zeros_(net.body[-1].weight)
    torch.nn.init.zeros_(net.body[-1].bias)
    x = torch.rand(1, 3, 5, 5)
    assert torch.equal(net(x), torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest"))


def test_srvgg_channel_variants() -> None:
    assert SRVGGNetCompact(1, 3, num_feat=8, num_conv=1)(torch.rand(1, 1, 4, 4)).shape == (1, 3, 16, 16)
    assert SRVGGNetCompact(4, 4, num_feat=8, num_conv=1)(torch.rand(1, 4, 4, 4)).shape == (1, 4, 16, 16)
    with pytest.raises(ValueError, match="activation"):
        SRVGGNetCompact(act_type="gelu")


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=16, upscale=4),
        dict(num_in_ch=3, num_out_ch=3, num_feat=16, num_conv=5, upscale=3),
        dict(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=2),
        dict(num_in_ch=1, num_out_ch=1, num_feat=8, num_conv=2, upscale=4),
        dict(num_in_ch=4, num_out_ch=4, num_feat=8, num_conv=2, upscale=2),
        dict(num_in_ch=1, num_out_ch=3, num_feat=8, num_conv=2, upscale=4),
        dict(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=1),
    ],
)
def test_srvgg_hyperparameters(kwargs: dict) -> None:
    spec, detected = detect(SRVGGNetCompact(**kwargs).state_dict())
    assert spec.name == "SRVGGNetCompact"
    assert detected == dict(kwargs, act_type="prelu")


def test_srvgg_without_prelu_weights_warns_and_loads() -> None:
    net = randomized(SRVGGNetCompact(num_feat=8, num_conv=2, act_type="leakyrelu"))
    with pytest.warns(UserWarning, match="activation is not stored"):
        model = load_model(net.state_dict())
    assert model.hyperparameters["act_type"] == "leakyrelu"
