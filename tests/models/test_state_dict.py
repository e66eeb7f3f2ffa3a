"""Wrappers and key prefixes of training checkpoints come off, whatever the architecture."""

from __future__ import annotations

import pytest
import torch

from realesr_core import ModelLoadError
from realesr_core.models.archs import RRDBNet
from realesr_core.models.state_dict import extract_state_dict


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
    state = extract_state_dict(wrap(canonical))
    assert state.keys() == canonical.keys()
    assert all(torch.equal(state[k], v) for k, v in canonical.items())


def test_non_tensor_entries_are_refused() -> None:
    with pytest.raises(ModelLoadError, match="non-tensor"):
        extract_state_dict({"a": torch.zeros(1), "b": "text"})
    with pytest.raises(ModelLoadError, match="no tensors"):
        extract_state_dict({})
