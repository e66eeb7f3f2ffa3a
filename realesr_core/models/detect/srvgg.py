"""SRVGGNetCompact state dicts: recognised by their keys, hyperparameters read from the shapes."""

from __future__ import annotations

import math
import re
import warnings

from ...errors import ModelLoadError
from ..archs.srvgg import SRVGGNetCompact
from ..spec import ArchitectureSpec, Hyperparameters, StateDict, tensor_shape


def matches(state: StateDict) -> bool:
    return "body.0.weight" in state and all(re.fullmatch(r"body\.\d+\.(weight|bias)", k) for k in state)


def read_hyperparameters(state: StateDict) -> Hyperparameters:
    conv_indices = sorted({int(k.split(".")[1]) for k in state if k.endswith(".bias")})
    last = conv_indices[-1]
    if last % 2 or last < 2:
        raise ModelLoadError(f"SRVGGNetCompact's last conv should have an even index >= 2, found body.{last}")
    num_feat, num_in_ch = tensor_shape(state, "body.0.weight", 4)[:2]
    out_units = tensor_shape(state, f"body.{last}.weight", 4)[0]
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


SPEC = ArchitectureSpec(
    name="SRVGGNetCompact",
    build=SRVGGNetCompact,
    matches=matches,
    read_hyperparameters=read_hyperparameters,
    expected_keys="SRVGGNetCompact keys (body.N)",
    tags=lambda hp: [f"{hp['num_feat']}nf", f"{hp['num_conv']}nc", hp["act_type"]],
    aliases=("srvgg", "compact"),
    scale_keyword="upscale",
)
