"""Real-ESRGAN's training-pair pool. One batch of synthetic degradations shares too little (one resize direction, one
JPEG range), so pairs wait in a per-process queue and each step trains on a random draw from many past batches."""

from __future__ import annotations

import torch

from ..errors import RealESRError


class TrainingPairPool:
    """A queue of `size` low/high-resolution pairs, on the batch's device. While it fills, a batch is enqueued and
    trained on as it is; once full, the queue is shuffled, its first `batch` pairs are trained on and the new batch
    takes their place (the official `_dequeue_and_enqueue`). The shuffle draws from `generator`, so runs replay."""

    def __init__(self, size: int = 180, generator: torch.Generator | None = None) -> None:
        if size < 1:
            raise RealESRError(f"the training-pair pool needs a size of at least 1, got {size}")
        self.size = size
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.low: torch.Tensor | None = None
        self.high: torch.Tensor | None = None
        self.filled = 0

    def exchange(self, low: torch.Tensor, high: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The pairs to train on this step, given this step's freshly degraded pairs."""
        batch = low.shape[0]
        if self.size % batch:
            raise RealESRError(f"the training-pair pool size ({self.size}) must be divisible by the batch size per "
                               f"process ({batch}): pick a batch that divides it, or another pool size")
        if self.low is None or self.high is None:
            self.low = low.new_empty((self.size, *low.shape[1:]))
            self.high = high.new_empty((self.size, *high.shape[1:]))
        elif self.low.shape[1:] != low.shape[1:] or self.high.shape[1:] != high.shape[1:]:
            raise RealESRError(f"pairs of shape {tuple(low.shape[1:])}/{tuple(high.shape[1:])} do not fit a pool of "
                               f"{tuple(self.low.shape[1:])}/{tuple(self.high.shape[1:])}: the patch size changed")
        if self.filled < self.size:
            self.low[self.filled:self.filled + batch] = low
            self.high[self.filled:self.filled + batch] = high
            self.filled += batch
            return low, high
        order = torch.randperm(self.size, generator=self.generator).to(self.low.device)
        self.low, self.high = self.low[order], self.high[order]
        drawn_low, drawn_high = self.low[:batch].clone(), self.high[:batch].clone()
        self.low[:batch], self.high[:batch] = low, high
        return drawn_low, drawn_high

    def state_dict(self) -> dict:
        """Everything an exact resume needs: the queued pairs, how full it is and the shuffle's RNG."""
        return {"low": self.low, "high": self.high, "filled": self.filled, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.low, self.high, self.filled = state["low"], state["high"], int(state["filled"])
        self.generator.set_state(state["generator"])
