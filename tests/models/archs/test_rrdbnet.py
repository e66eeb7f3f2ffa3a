"""RRDBNet: structure, exact inference in strips, hyper-parameters from shapes, every foreign key layout."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from realesr_core import ModelLoadError, load_model
from realesr_core.models.archs import RRDBNet
from realesr_core.models.detect.rrdbnet import canonicalize
from realesr_core.models.registry import detect
from realesr_core.models.state_dict import extract_state_dict

from helpers import randomized


@pytest.mark.parametrize("scale", [1, 2, 4, 8])
@pytest.mark.parametrize("channels", [(3, 3), (1, 1), (4, 4), (1, 3)])
def test_rrdbnet_shapes(scale: int, channels: tuple[int, int]) -> None:
    net = RRDBNet(channels[0], channels[1], scale=scale, num_feat=8, num_block=1, num_grow_ch=4).eval()
    out = net(torch.rand(2, channels[0], 12, 16))
    assert out.shape == (2, channels[1], 12 * scale, 16 * scale)


def test_rrdbnet_follows_basicsr_structure() -> None:
    """x2 and x1 are pixel-unshuffle + x4 trunk; x8 adds a third upsampler; native x2 (unshuffle=1) has one."""
    assert RRDBNet(scale=2, num_block=1).conv_first.in_channels == 12
    assert RRDBNet(scale=1, num_block=1).conv_first.in_channels == 48
    assert hasattr(RRDBNet(scale=8, num_block=1), "conv_up3")
    native = RRDBNet(scale=2, num_block=1, unshuffle=1)
    assert native.num_upsample == 1 and native.conv_first.in_channels == 3
    with pytest.raises(ValueError, match="cannot make scale 3"):
        RRDBNet(scale=3)


def test_rrdbnet_official_parameter_count() -> None:
    assert sum(p.numel() for p in RRDBNet().parameters()) == 16_697_987
    assert sum(p.numel() for p in RRDBNet(scale=2).parameters()) == 16_703_171
    assert sum(p.numel() for p in RRDBNet(num_block=6).parameters()) == 4_467_779


def test_rrdbnet_grow_channels_and_width() -> None:
    net = RRDBNet(num_feat=32, num_block=2, num_grow_ch=16).eval()
    assert net.body[0].rdb1.conv5.in_channels == 32 + 4 * 16
    assert net(torch.rand(1, 3, 8, 8)).shape == (1, 3, 32, 32)


@pytest.mark.parametrize("scale,unshuffle", [(4, 1), (8, 1), (2, 2), (2, 1)])
def test_rrdbnet_inference_in_strips_is_exact(monkeypatch: pytest.MonkeyPatch, scale: int, unshuffle: int) -> None:
    """Inference computes the last stage in row strips to save memory; it must equal the one-piece pass."""
    import realesr_core.models.archs.rrdbnet as rrdbnet

    net = RRDBNet(scale=scale, num_feat=8, num_block=1, num_grow_ch=4, unshuffle=unshuffle).eval()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.1)
    x = torch.rand(2, 3, 34, 18)
    one_piece = net(x).detach()  # grad mode: no strips
    monkeypatch.setattr(rrdbnet, "STRIP_ELEMENTS", 8 * 2 * 2 * 18 * 5)  # strips of a few rows
    with torch.no_grad():
        assert torch.equal(net(x), one_piece)


@pytest.mark.parametrize("min_rows", [1, 4, 7])
@pytest.mark.parametrize("height", [1, 6, 23])
def test_dense_blocks_in_cache_sized_strips_are_exact(monkeypatch: pytest.MonkeyPatch, min_rows: int,
                                                      height: int) -> None:
    """CPU inference runs each dense block in row strips (halo recomputed); it must equal the one-piece pass."""
    import realesr_core.models.archs.rrdbnet as rrdbnet

    net = RRDBNet(scale=4, num_feat=8, num_block=2, num_grow_ch=4).eval()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.1)
    x = torch.rand(2, 3, height, 13)
    one_piece = net(x).detach()  # grad mode: no strips
    monkeypatch.setattr(rrdbnet, "CPU_STRIP_BYTES", 1)
    monkeypatch.setattr(rrdbnet, "MIN_STRIP_ROWS", min_rows)
    with torch.no_grad():
        rows = net.body[0].rdb1._strip_rows(torch.zeros(2, 8, height, 13))
        assert rows <= min_rows  # strips do run where the map is taller
        assert torch.equal(net(x), one_piece)


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
    spec, detected = detect(net.state_dict())
    assert spec.name == "RRDBNet"
    expected = dict(kwargs, unshuffle=kwargs.get("unshuffle", net.unshuffle))
    assert detected == expected


DATA = Path(__file__).resolve().parents[2] / "data"


def to_old_esrgan(state: dict, num_upsample: int) -> dict:
    """Writes a canonical RRDBNet state dict in the old ESRGAN `model.N` layout (the inverse of the loader's map)."""
    num_block = len({k.split(".")[1] for k in state if k.startswith("body.")})
    old = {}
    for key, value in state.items():
        name, param = key.rsplit(".", 1)
        if m := re.fullmatch(r"body\.(\d+)\.rdb(\d)\.conv(\d)", name):
            old[f"model.1.sub.{m[1]}.RDB{m[2]}.conv{m[3]}.0.{param}"] = value
        elif name == "conv_first":
            old[f"model.0.{param}"] = value
        elif name == "conv_body":
            old[f"model.1.sub.{num_block}.{param}"] = value
        elif m := re.fullmatch(r"conv_up(\d)", name):
            old[f"model.{3 * int(m[1])}.{param}"] = value
        elif name == "conv_hr":
            old[f"model.{3 * num_upsample + 2}.{param}"] = value
        elif name == "conv_last":
            old[f"model.{3 * num_upsample + 4}.{param}"] = value
    return old


def to_rrdb_trunk(state: dict) -> dict:
    renames = [(r"body\.(\d+)\.rdb(\d)\.conv(\d)\.", r"RRDB_trunk.\1.RDB\2.conv\3."), (r"conv_body\.", "trunk_conv."),
               (r"conv_up(\d)\.", r"upconv\1."), (r"conv_hr\.", "HRconv.")]
    out = {}
    for key, value in state.items():
        for pattern, replacement in renames:
            key = re.sub("^" + pattern, replacement, key)
        out[key] = value
    return out


@pytest.mark.parametrize("scale,unshuffle", [(1, 1), (2, 1), (4, 1), (8, 1), (2, 2), (1, 4)])
def test_old_esrgan_layout(scale: int, unshuffle: int) -> None:
    net = randomized(RRDBNet(scale=scale, num_feat=8, num_block=2, num_grow_ch=4, unshuffle=unshuffle))
    canonical = net.state_dict()
    old = to_old_esrgan(canonical, net.num_upsample)
    assert canonicalize(old).keys() == canonical.keys()
    assert all(torch.equal(canonicalize(old)[k], v) for k, v in canonical.items())
    x = torch.rand(1, 3, 8, 12)
    with torch.no_grad():
        assert torch.equal(load_model(old).module(x), net(x))
    assert load_model(old).scale == scale


def test_old_esrgan_keys_of_x4plus_match_the_spec() -> None:
    """The official x4plus old-layout key list (from the spec) converts to exactly RRDBNet's keys and shapes."""
    listed = json.loads((DATA / "old_esrgan_keys_x4plus.json").read_text())
    old = {k: torch.zeros(shape) for k, shape in listed.items()}
    expected = {k: tuple(v.shape) for k, v in RRDBNet().state_dict().items()}
    assert {k: tuple(v.shape) for k, v in canonicalize(old).items()} == expected


def test_rrdb_trunk_layout(tiny_rrdbnet: RRDBNet) -> None:
    canonical = tiny_rrdbnet.state_dict()
    converted = canonicalize(to_rrdb_trunk(canonical))
    assert converted.keys() == canonical.keys()
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(load_model(to_rrdb_trunk(canonical)).module(x), tiny_rrdbnet(x))


def test_esrgan_plus_is_refused(tiny_rrdbnet: RRDBNet) -> None:
    old = to_old_esrgan(tiny_rrdbnet.state_dict(), 2)
    old["model.1.sub.0.RDB1.conv1x1.weight"] = torch.zeros(4, 8, 1, 1)
    with pytest.raises(ModelLoadError, match="ESRGAN\\+"):
        load_model(old)


def test_old_layout_with_bad_indices(tiny_rrdbnet: RRDBNet) -> None:
    old = to_old_esrgan(tiny_rrdbnet.state_dict(), 2)
    old["model.7.weight"] = old.pop("model.6.weight")
    old["model.7.bias"] = old.pop("model.6.bias")
    with pytest.raises(ModelLoadError, match="do not match any upsampler"):
        load_model(old)


def test_old_layout_prefix_is_not_stripped(tiny_rrdbnet: RRDBNet) -> None:
    old = to_old_esrgan(tiny_rrdbnet.state_dict(), 2)
    assert extract_state_dict(old).keys() == old.keys()
