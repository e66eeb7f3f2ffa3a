"""Every key layout and wrapper converts to the same canonical state dict and gives identical outputs."""

import json
import re
from pathlib import Path

import pytest
import torch

from realesr_core import ModelLoadError, load_model
from realesr_core.archs import RRDBNet
from realesr_core.state_dict import canonicalize, unwrap

from conftest import randomized

SPEC = Path(__file__).resolve().parents[2] / "shared" / "spec"


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
    spec_file = SPEC / "old_esrgan_keys_x4plus.json"
    if not spec_file.exists():
        pytest.skip("shared/spec is not beside this checkout")
    old = {k: torch.zeros(shape) for k, shape in json.loads(spec_file.read_text()).items()}
    expected = {k: tuple(v.shape) for k, v in RRDBNet().state_dict().items()}
    assert {k: tuple(v.shape) for k, v in canonicalize(old).items()} == expected


def test_rrdb_trunk_layout(tiny_rrdbnet: RRDBNet) -> None:
    canonical = tiny_rrdbnet.state_dict()
    converted = canonicalize(to_rrdb_trunk(canonical))
    assert converted.keys() == canonical.keys()
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(load_model(to_rrdb_trunk(canonical)).module(x), tiny_rrdbnet(x))


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: {"params_ema": sd, "params": {k: v * 0 for k, v in sd.items()}},
        lambda sd: {"params": sd},
        lambda sd: {"state_dict": sd, "epoch": 3},
        lambda sd: {"model": sd},
        lambda sd: {"net": sd},
        lambda sd: {"whatever": sd},
        lambda sd: {f"module.{k}": v for k, v in sd.items()},
        lambda sd: {"params_ema": {f"module._orig_mod.{k}": v for k, v in sd.items()}},
        lambda sd: {f"model.{k}": v for k, v in sd.items()},
    ],
    ids=["params_ema-first", "params", "state_dict", "model", "net", "single-key", "module.", "nested", "model."],
)
def test_wrappers_and_prefixes(tiny_rrdbnet: RRDBNet, wrap) -> None:
    canonical = tiny_rrdbnet.state_dict()
    state = canonicalize(unwrap(wrap(canonical)))
    assert state.keys() == canonical.keys()
    assert all(torch.equal(state[k], v) for k, v in canonical.items())


def test_old_layout_prefix_is_not_stripped(tiny_rrdbnet: RRDBNet) -> None:
    old = to_old_esrgan(tiny_rrdbnet.state_dict(), 2)
    assert unwrap(old).keys() == old.keys()


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


def test_non_tensor_entries_are_refused() -> None:
    with pytest.raises(ModelLoadError, match="non-tensor"):
        unwrap({"a": torch.zeros(1), "b": "text"})
    with pytest.raises(ModelLoadError, match="no tensors"):
        unwrap({})
