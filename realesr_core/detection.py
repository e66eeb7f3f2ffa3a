"""Which architecture a canonical state dict belongs to, and its hyper-parameters, read from key names and shapes.

This is the one place that guesses. Files written by `save_model` carry their hyper-parameters and skip it.
"""

from __future__ import annotations

import math
import re
import warnings
from typing import Any

from .errors import ModelLoadError
from .state_dict import StateDict


def detect(state: StateDict) -> tuple[str, dict[str, Any]]:
    """Returns (architecture name, constructor keyword arguments)."""
    if "conv_first.weight" in state and "body.0.rdb1.conv1.weight" in state:
        return "RRDBNet", _rrdbnet_hyperparameters(state)
    if "body.0.weight" in state and all(re.fullmatch(r"body\.\d+\.(weight|bias)", k) for k in state):
        return "SRVGGNetCompact", _srvgg_hyperparameters(state)
    sample = ", ".join(sorted(state)[:6])
    raise ModelLoadError(
        "unrecognised model: expected RRDBNet keys (conv_first, body.N.rdbK.convJ / model.N / RRDB_trunk) "
        f"or SRVGGNetCompact keys (body.N); found {len(state)} keys such as {sample}"
    )


def _shape(state: StateDict, key: str, ndim: int) -> tuple[int, ...]:
    if key not in state:
        raise ModelLoadError(f"missing key {key!r}")
    shape = tuple(state[key].shape)
    if len(shape) != ndim:
        raise ModelLoadError(f"{key} has shape {list(shape)}, expected {ndim} dimensions")
    return shape


def _rrdbnet_hyperparameters(state: StateDict) -> dict[str, Any]:
    num_feat, in_ch_unshuffled = _shape(state, "conv_first.weight", 4)[:2]
    num_out_ch = _shape(state, "conv_last.weight", 4)[0]
    num_grow_ch = _shape(state, "body.0.rdb1.conv1.weight", 4)[0]
    num_block = len({k.split(".")[1] for k in state if k.startswith("body.")})
    num_upsample = len({k.split(".")[0] for k in state if re.match(r"conv_up\d+\.", k)})
    # x2 / x1 models pixel-unshuffle their input, which shows as 4x / 16x input channels on conv_first.
    unshuffle = 1
    for factor in (4, 2):
        if in_ch_unshuffled == num_out_ch * factor**2 and 2**num_upsample >= factor:
            unshuffle = factor
            break
    if num_upsample == 0 or 2**num_upsample < unshuffle:
        unshuffle = 1
    return {
        "num_in_ch": in_ch_unshuffled // unshuffle**2,
        "num_out_ch": num_out_ch,
        "scale": 2**num_upsample // unshuffle,
        "num_feat": num_feat,
        "num_block": num_block,
        "num_grow_ch": num_grow_ch,
        "unshuffle": unshuffle,
    }


def _srvgg_hyperparameters(state: StateDict) -> dict[str, Any]:
    conv_indices = sorted({int(k.split(".")[1]) for k in state if k.endswith(".bias")})
    last = conv_indices[-1]
    if last % 2 or last < 2:
        raise ModelLoadError(f"SRVGGNetCompact's last conv should have an even index >= 2, found body.{last}")
    num_feat, num_in_ch = _shape(state, "body.0.weight", 4)[:2]
    out_units = _shape(state, f"body.{last}.weight", 4)[0]
    for channels in dict.fromkeys((num_in_ch, 3, 4, 1)):
        upscale = math.isqrt(out_units // channels)
        if out_units % channels == 0 and upscale * upscale * channels == out_units:
            break
    else:
        raise ModelLoadError(f"SRVGGNetCompact's last conv has {out_units} outputs: not channels x scale^2")
    if "body.1.weight" in state:
        act_type = "prelu"
    else:
        act_type = "leakyrelu"
        warnings.warn(
            "SRVGGNetCompact without PReLU weights: the activation is not stored in the file; assuming LeakyReLU(0.1)",
            stacklevel=3,
        )
    return {
        "num_in_ch": num_in_ch,
        "num_out_ch": channels,
        "num_feat": num_feat,
        "num_conv": (last - 2) // 2,
        "upscale": upscale,
        "act_type": act_type,
    }
