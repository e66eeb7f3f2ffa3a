"""The training-pair pool: passes batches through while filling, then trades each batch for a shuffled draw of queued
pairs (pairs stay together, nothing is lost or duplicated), replays from its state, and refuses bad batch sizes."""

from __future__ import annotations

import pytest
import torch

from realesr_core import RealESRError
from realesr_core.training.pool import TrainingPairPool


def _batch(first: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.arange(first, first + count, dtype=torch.float32)
    return ids.view(-1, 1, 1, 1).expand(-1, 3, 2, 2).clone(), ids.view(-1, 1, 1, 1).expand(-1, 3, 8, 8).clone()


def test_fills_then_exchanges_keeping_pairs_together_and_every_pair_once() -> None:
    pool = TrainingPairPool(size=6, generator=torch.Generator().manual_seed(1))
    for step in range(3):  # filling: trains on the batch itself
        low, high = _batch(2 * step, 2)
        out_low, out_high = pool.exchange(low, high)
        assert torch.equal(out_low, low) and torch.equal(out_high, high)
    trained_on = []
    for step in range(3, 8):
        out_low, out_high = pool.exchange(*_batch(2 * step, 2))
        assert torch.equal(out_low[:, 0, 0, 0], out_high[:, 0, 0, 0])  # each low stays with its own high
        trained_on += out_low[:, 0, 0, 0].tolist()
        queued = pool.low[:, 0, 0, 0].tolist() + trained_on
        assert sorted(queued) == list(range(2 * step + 2))  # nothing lost, nothing duplicated
    assert trained_on != sorted(trained_on)  # the draw is shuffled, not first in first out


def test_state_dict_replays_the_same_draws() -> None:
    pool = TrainingPairPool(size=4, generator=torch.Generator().manual_seed(3))
    for step in range(3):
        pool.exchange(*_batch(2 * step, 2))
    saved = {key: value.clone() if isinstance(value, torch.Tensor) else value for key, value in pool.state_dict().items()}
    first = [pool.exchange(*_batch(2 * step, 2))[0] for step in range(3, 6)]
    resumed = TrainingPairPool(size=4)
    resumed.load_state_dict(saved)
    second = [resumed.exchange(*_batch(2 * step, 2))[0] for step in range(3, 6)]
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


def test_bad_batch_sizes_and_shapes_get_clear_errors() -> None:
    with pytest.raises(RealESRError, match=r"\(180\) must be divisible by the batch size per process \(7\)"):
        TrainingPairPool().exchange(*_batch(0, 7))
    pool = TrainingPairPool(size=4)
    pool.exchange(*_batch(0, 2))
    with pytest.raises(RealESRError, match="patch size changed"):
        pool.exchange(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 16, 16))
