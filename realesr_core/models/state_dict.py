"""Checkpoint filter, first half: whatever a model file holds becomes one flat dict of tensors.

Trainers nest the weights (`params_ema`, `state_dict`, ...) and prefix the keys (`module.`, `netG.`, ...); both are
undone here for every architecture. The second half, foreign key layouts of one family, is that family's spec's
`canonicalize` (see `registry.canonicalize`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..errors import ModelLoadError
from .spec import StateDict

# Training checkpoints nest the weights; the first key present wins (EMA weights are the ones to use).
WRAPPER_KEYS = ("params_ema", "params-ema", "params", "model_state_dict", "state_dict", "model", "net", "net_g")
# Prefixes left by DataParallel, torch.compile and trainers that name their generator.
KEY_PREFIXES = ("module.", "_orig_mod.", "netG.", "net_g.", "generator.", "model.")


def extract_state_dict(checkpoint: Any) -> StateDict:
    """Finds the tensor dict inside a checkpoint and strips common key prefixes."""
    current = checkpoint
    for _ in range(8):
        if not isinstance(current, Mapping):
            raise ModelLoadError(f"expected a dict of tensors, found {type(current).__name__}")
        if current and all(isinstance(v, torch.Tensor) for v in current.values()):
            return _strip_prefixes({str(k): v for k, v in current.items()})
        inner = next((current[k] for k in WRAPPER_KEYS if isinstance(current.get(k), Mapping)), None)
        if inner is None:
            nested = [k for k, v in current.items() if isinstance(v, Mapping)]
            if len(nested) == 1:
                inner = current[nested[0]]
        if inner is None:
            return _reject_mixed(current)
        current = inner
    raise ModelLoadError("checkpoint is nested more than 8 levels deep; expected a dict of tensors")


def _reject_mixed(mapping: Mapping) -> StateDict:
    if not mapping:
        raise ModelLoadError("the checkpoint holds no tensors (an empty dict)")
    bad = [f"{k!r} ({type(v).__name__})" for k, v in mapping.items() if not isinstance(v, torch.Tensor)][:5]
    raise ModelLoadError(
        f"expected a dict of tensors (or one nested under {', '.join(WRAPPER_KEYS)}), "
        f"found non-tensor entries: {', '.join(bad)}"
    )


def _strip_prefixes(state: StateDict) -> StateDict:
    changed = True
    while changed:
        changed = False
        for prefix in KEY_PREFIXES:
            if not all(k.startswith(prefix) for k in state):
                continue
            stripped = {k[len(prefix) :]: v for k, v in state.items()}
            if prefix == "model." and any(k.split(".", 1)[0].isdigit() for k in stripped):
                continue  # `model.0.weight` is the old ESRGAN layout itself, not a prefix
            state, changed = stripped, True
    return state
