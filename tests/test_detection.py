"""Hyper-parameters come from shapes alone, including those spandrel assumes (num_grow_ch)."""

import pytest

from realesr_core import ModelLoadError, load_model
from realesr_core.archs import RRDBNet, SRVGGNetCompact
from realesr_core.detection import detect

from conftest import randomized


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(num_in_ch=3, num_out_ch=3, scale=4, num_feat=16, num_block=2, num_grow_ch=8),
        dict(num_in_ch=3, num_out_ch=3, scale=2, num_feat=8, num_block=1, num_grow_ch=16),
        dict(num_in_ch=3, num_out_ch=3, scale=1, num_feat=8, num_block=3, num_grow_ch=4),
        dict(num_in_ch=3, num_out_ch=3, scale=8, num_feat=8, num_block=1, num_grow_ch=4),
        dict(num_in_ch=1, num_out_ch=1, scale=4, num_feat=8, num_block=1, num_grow_ch=4),
        dict(num_in_ch=1, num_out_ch=1, scale=2, num_feat=8, num_block=1, num_grow_ch=4),
        dict(num_in_ch=4, num_out_ch=4, scale=4, num_feat=8, num_block=1, num_grow_ch=4),
        dict(num_in_ch=1, num_out_ch=3, scale=4, num_feat=8, num_block=1, num_grow_ch=4),
        dict(num_in_ch=3, num_out_ch=3, scale=2, num_feat=8, num_block=1, num_grow_ch=4, unshuffle=1),
    ],
)
def test_rrdbnet_hyperparameters(kwargs: dict) -> None:
    net = RRDBNet(**kwargs)
    architecture, detected = detect(net.state_dict())
    assert architecture == "RRDBNet"
    expected = dict(kwargs, unshuffle=kwargs.get("unshuffle", net.unshuffle))
    assert detected == expected


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
    architecture, detected = detect(SRVGGNetCompact(**kwargs).state_dict())
    assert architecture == "SRVGGNetCompact"
    assert detected == dict(kwargs, act_type="prelu")


def test_srvgg_without_prelu_weights_warns_and_loads() -> None:
    net = randomized(SRVGGNetCompact(num_feat=8, num_conv=2, act_type="leakyrelu"))
    with pytest.warns(UserWarning, match="activation is not stored"):
        model = load_model(net.state_dict())
    assert model.hyperparameters["act_type"] == "leakyrelu"


def test_unknown_model_says_what_it_found() -> None:
    import torch

    with pytest.raises(ModelLoadError, match="unrecognised model.*encoder.weight"):
        load_model({"encoder.weight": torch.zeros(3, 3)})


def test_descriptor_facts() -> None:
    model = load_model(RRDBNet(scale=2, num_feat=8, num_block=1, num_grow_ch=4).state_dict())
    assert (model.architecture, model.scale, model.in_channels, model.out_channels) == ("RRDBNet", 2, 3, 3)
    assert model.size_multiple == 2 and "unshuffle" in model.tags
    assert model.supports_bf16 and model.supports_fp16
    assert model.source == "state dict"
    assert load_model(RRDBNet(scale=1, num_feat=8, num_block=1, num_grow_ch=4).state_dict()).size_multiple == 4
