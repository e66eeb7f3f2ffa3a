"""The exponential moving average of a generator, which Real-ESRGAN trains with (decay 0.999) and ships: the EMA
weights are the ones saved as `params_ema`, and LDL's loss compares against its output."""

from __future__ import annotations

import copy

import torch
from torch import nn

from .config import OFFICIAL_EMA_DECAY


class ModelEMA:
    """A frozen copy of `model` whose parameters follow it, ema = decay·ema + (1-decay)·model, as the official step
    does; buffers (BatchNorm statistics, counters: Real-ESRGAN's generators have none) are copied as they are."""

    def __init__(self, model: nn.Module, decay: float = OFFICIAL_EMA_DECAY) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for ours, theirs in zip(self.module.parameters(), model.parameters(), strict=True):
            ours.lerp_(theirs.detach(), 1.0 - self.decay)
        for ours, theirs in zip(self.module.buffers(), model.buffers(), strict=True):
            ours.copy_(theirs)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()
