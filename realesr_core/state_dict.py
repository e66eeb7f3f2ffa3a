"""Checkpoint filter: turns whatever a model file holds into one flat state dict in the canonical key layout.

Canonical layouts are BasicSR's: `conv_first`, `body.N.rdbK.convJ`, `conv_body`, `conv_upN`, `conv_hr`, `conv_last`
for RRDBNet and `body.N` for SRVGGNetCompact. Foreign layouts (old ESRGAN `model.N`, ESRGAN-repo `RRDB_trunk`) are
mapped onto them here, so architecture detection only ever sees one layout.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from .errors import ModelLoadError

StateDict = dict[str, torch.Tensor]

# Training checkpoints nest the weights; the first key present wins (EMA weights are the ones to use).
WRAPPER_KEYS = ("params_ema", "params-ema", "params", "model_state_dict", "state_dict", "model", "net", "net_g")
# Prefixes left by DataParallel, torch.compile and trainers that name their generator.
KEY_PREFIXES = ("module.", "_orig_mod.", "netG.", "net_g.", "generator.", "model.")


def unwrap(checkpoint: Any) -> StateDict:
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


def canonicalize(state: StateDict) -> StateDict:
    """Maps foreign key layouts onto the canonical one; canonical input comes back unchanged."""
    if any(".conv1x1." in k for k in state):
        raise ModelLoadError("this is an ESRGAN+ model (conv1x1 in the dense blocks), which is not supported")
    if "model.0.weight" in state:
        return _from_old_esrgan(state)
    if any(k.startswith("RRDB_trunk.") for k in state):
        return _from_rrdb_trunk(state)
    return state


_OLD_RDB = re.compile(r"model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)$")
_OLD_TRUNK = re.compile(r"model\.1\.sub\.(\d+)\.(weight|bias)$")
_OLD_TOP = re.compile(r"model\.(\d+)\.(weight|bias)$")


def _from_old_esrgan(state: StateDict) -> StateDict:
    """Old ESRGAN: a flat Sequential; upsample stages take 3 indices (Upsample, conv, LeakyReLU) from index 3."""
    out: StateDict = {}
    trunk: dict[int, StateDict] = {}
    top: dict[int, StateDict] = {}
    for key, value in state.items():
        if m := _OLD_RDB.match(key):
            out[f"body.{m[1]}.rdb{m[2]}.conv{m[3]}.{m[4]}"] = value
        elif m := _OLD_TRUNK.match(key):
            trunk.setdefault(int(m[1]), {})[m[2]] = value
        elif m := _OLD_TOP.match(key):
            top.setdefault(int(m[1]), {})[m[2]] = value
        else:
            raise ModelLoadError(f"unexpected key {key!r} in an old-ESRGAN (model.N) state dict")
    if len(trunk) != 1:
        raise ModelLoadError(f"old-ESRGAN state dict should have one trunk conv in model.1.sub, found {len(trunk)}")
    (trunk_index, trunk_params), = trunk.items()
    blocks = {int(k.split(".")[1]) for k in out}
    if blocks != set(range(trunk_index)):
        raise ModelLoadError(f"old-ESRGAN trunk conv is model.1.sub.{trunk_index} but the blocks found are {sorted(blocks)}")
    indices = sorted(top)
    if not indices or indices[0] != 0 or len(indices) < 3:
        raise ModelLoadError(f"old-ESRGAN state dict needs model.0, upsample, HR and last convs; found indices {indices}")
    num_upsample = len(indices) - 3
    expected = [0] + [3 * (i + 1) for i in range(num_upsample)] + [3 * num_upsample + 2, 3 * num_upsample + 4]
    if indices != expected:
        raise ModelLoadError(f"old-ESRGAN conv indices {indices} do not match any upsampler (expected {expected})")
    names = ["conv_first"] + [f"conv_up{i + 1}" for i in range(num_upsample)] + ["conv_hr", "conv_last"]
    for name, index in zip(names, indices):
        out.update({f"{name}.{p}": v for p, v in top[index].items()})
    out.update({f"conv_body.{p}": v for p, v in trunk_params.items()})
    return out


_TRUNK_RENAMES = (
    (re.compile(r"RRDB_trunk\.(\d+)\.RDB(\d)\.conv(\d)\."), r"body.\1.rdb\2.conv\3."),
    (re.compile(r"trunk_conv\."), "conv_body."),
    (re.compile(r"upconv(\d)\."), r"conv_up\1."),
    (re.compile(r"HRconv\."), "conv_hr."),
)


def _from_rrdb_trunk(state: StateDict) -> StateDict:
    """ESRGAN-repo new layout (BSRGAN, RealSR): the same network under other names."""
    out: StateDict = {}
    for key, value in state.items():
        for pattern, replacement in _TRUNK_RENAMES:
            key = pattern.sub(replacement, key, count=1) if pattern.match(key) else key
        out[key] = value
    return out
