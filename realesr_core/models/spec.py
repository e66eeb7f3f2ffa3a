"""What the library knows about one architecture, in one object: each module in `detect/` defines one for its
network in `archs/`.

Loading, detection, tags and descriptors read everything architecture-specific from the spec, so adding a network
means writing its network in `archs/`, its spec in `detect/` and adding one line to `registry.SPECS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import ModelLoadError

StateDict = dict[str, torch.Tensor]
Hyperparameters = dict[str, Any]


def _no_foreign_layouts(state: StateDict) -> StateDict:
    return state


def _no_size_requirement(hyperparameters: Hyperparameters) -> int:
    return 1


@dataclass(frozen=True)
class ArchitectureSpec:
    """One network family.

    build: the network's class (or a factory) taking the hyper-parameters as keywords; the module it returns has
    `scale`, `num_in_ch` and `num_out_ch` attributes. matches: whether a canonical state dict is this network (key
    conditions only, cheap). read_hyperparameters: the constructor keywords, read from key names and shapes; raises
    ModelLoadError when the keys match but the shapes make no network. canonicalize: maps this family's foreign key
    layouts onto the canonical keys and returns any other state dict unchanged. tags: short labels for loaders'
    lists. size_multiple: what input height and width must be a multiple of. expected_keys: named in the error for
    an unrecognised model. aliases: other names `get_spec` accepts (any case). scale_keyword: the constructor's
    keyword for the scale, so `scale=` works for every family in `new_model`.
    """

    name: str
    build: Callable[..., nn.Module]
    matches: Callable[[StateDict], bool]
    read_hyperparameters: Callable[[StateDict], Hyperparameters]
    expected_keys: str
    tags: Callable[[Hyperparameters], list[str]]
    canonicalize: Callable[[StateDict], StateDict] = _no_foreign_layouts
    size_multiple: Callable[[Hyperparameters], int] = _no_size_requirement
    supports_fp16: bool = True
    supports_bf16: bool = True
    aliases: tuple[str, ...] = ()
    scale_keyword: str = "scale"


def tensor_shape(state: StateDict, key: str, ndim: int) -> tuple[int, ...]:
    """The shape of `state[key]`, or a ModelLoadError saying which key is missing or has the wrong rank."""
    if key not in state:
        raise ModelLoadError(f"missing key {key!r}")
    shape = tuple(state[key].shape)
    if len(shape) != ndim:
        raise ModelLoadError(f"{key} has shape {list(shape)}, expected {ndim} dimensions")
    return shape
