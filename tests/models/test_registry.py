"""The registry: recognising state dicts, matching the official key lists, and adding an architecture in one place."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from realesr_core import ModelLoadError, load_model, save_model, upscale
from realesr_core.models import ArchitectureSpec, registry

from helpers import randomized

OFFICIAL_SHAPES = json.loads((Path(__file__).resolve().parents[1] / "data" / "state_dict_shapes.json").read_text())


def test_unknown_model_says_what_it_found() -> None:
    with pytest.raises(ModelLoadError, match="unrecognised model.*RRDBNet keys.*SRVGGNetCompact keys.*encoder.weight"):
        load_model({"encoder.weight": torch.zeros(3, 3)})


@pytest.mark.parametrize("name", [n for n in OFFICIAL_SHAPES if "Discriminator" not in n])
def test_official_key_lists_build_our_networks_key_for_key(name: str) -> None:
    """Every official generator's key list (from Real-ESRGAN's checkpoints) is recognised, and the network built
    from it has exactly those keys and shapes."""
    state = {key: torch.zeros(shape) for key, shape in OFFICIAL_SHAPES[name].items()}
    spec, hyperparameters = registry.detect(registry.canonicalize(state))
    network = spec.build(**hyperparameters)
    assert {k: list(v.shape) for k, v in network.state_dict().items()} == OFFICIAL_SHAPES[name]


class PixelShuffleNet(nn.Module):
    """A throw-away network for the test: one conv to scale^2 * C channels, then pixel shuffle."""

    def __init__(self, channels: int = 3, scale: int = 2) -> None:
        super().__init__()
        self.scale, self.num_in_ch, self.num_out_ch = scale, channels, channels
        self.head = nn.Conv2d(channels, channels * scale * scale, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.pixel_shuffle(self.head(x), self.scale)


def _read_pixel_shuffle_net(state: dict) -> dict:
    out_units, channels = state["head.weight"].shape[:2]
    return {"channels": channels, "scale": int((out_units // channels) ** 0.5)}


def _from_legacy_keys(state: dict) -> dict:
    """The foreign layout of the throw-away network: `conv.*` instead of `head.*`."""
    return {re.sub(r"^conv\.", "head.", k): v for k, v in state.items()}


THROW_AWAY = ArchitectureSpec(
    name="PixelShuffleNet",
    build=PixelShuffleNet,
    matches=lambda state: set(state) == {"head.weight", "head.bias"},
    read_hyperparameters=_read_pixel_shuffle_net,
    expected_keys="PixelShuffleNet keys (head)",
    tags=lambda hp: [f"x{hp['scale']}"],
    canonicalize=_from_legacy_keys,
)


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> ArchitectureSpec:
    monkeypatch.setattr(registry, "SPECS", dict(registry.SPECS))
    registry.register(THROW_AWAY)
    return THROW_AWAY


def test_a_new_architecture_is_one_spec_and_one_registration(registered: ArchitectureSpec, tmp_path: Path) -> None:
    network = randomized(PixelShuffleNet(channels=3, scale=2))
    model = load_model(network.state_dict())
    assert (model.architecture, model.scale, model.tags, model.hyperparameters) == (
        "PixelShuffleNet", 2, ["x2"], {"channels": 3, "scale": 2})
    legacy = {k.replace("head.", "conv."): v for k, v in network.state_dict().items()}
    image = torch.rand(1, 3, 10, 12)
    with torch.no_grad():
        assert torch.equal(load_model(legacy).module(image), network(image))
    saved = load_model(save_model(model, tmp_path / "throw_away.safetensors"))  # metadata names the architecture
    assert saved.architecture == "PixelShuffleNet"
    tiled = upscale(saved, torch.rand(1, 3, 20, 24), tile=16, overlap=0, blend=0, precision="fp32")
    assert tiled.image.shape == (1, 3, 40, 48) and tiled.tile_count == 4


def test_names_are_unique(registered: ArchitectureSpec) -> None:
    with pytest.raises(ValueError, match="already registered"):
        registry.register(THROW_AWAY)
    with pytest.raises(ModelLoadError, match="unknown architecture 'Nope'"):
        registry.get_spec("Nope")
