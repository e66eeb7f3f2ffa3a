"""RRDBNet state dicts: recognised by their keys, hyperparameters read from the shapes, and the foreign layouts
(old ESRGAN `model.N`, ESRGAN-repo `RRDB_trunk`) mapped onto BasicSR's keys."""

from __future__ import annotations

import re

from ...errors import ModelLoadError
from ..archs.rrdbnet import RRDBNet, default_unshuffle
from ..spec import ArchitectureSpec, Hyperparameters, StateDict, tensor_shape


def matches(state: StateDict) -> bool:
    return "conv_first.weight" in state and "body.0.rdb1.conv1.weight" in state


def read_hyperparameters(state: StateDict) -> Hyperparameters:
    num_feat, in_ch_unshuffled = tensor_shape(state, "conv_first.weight", 4)[:2]
    num_out_ch = tensor_shape(state, "conv_last.weight", 4)[0]
    num_grow_ch = tensor_shape(state, "body.0.rdb1.conv1.weight", 4)[0]
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


def canonicalize(state: StateDict) -> StateDict:
    """Old ESRGAN and ESRGAN-repo layouts mapped onto BasicSR's keys; anything else comes back unchanged."""
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
    for name, index in zip(names, indices, strict=True):
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


def tags(hp: Hyperparameters) -> list[str]:
    return [f"{hp['num_feat']}nf", f"{hp['num_block']}nb", f"{hp['num_grow_ch']}gc"] + (
        ["unshuffle"] if hp["unshuffle"] > 1 else [])


SPEC = ArchitectureSpec(
    name="RRDBNet",
    build=RRDBNet,
    matches=matches,
    read_hyperparameters=read_hyperparameters,
    expected_keys="RRDBNet keys (conv_first, body.N.rdbK.convJ / model.N / RRDB_trunk)",
    tags=tags,
    canonicalize=canonicalize,
    size_multiple=lambda hp: hp.get("unshuffle") or default_unshuffle(hp.get("scale", 4)),
    aliases=("rrdb", "esrgan"),
)
