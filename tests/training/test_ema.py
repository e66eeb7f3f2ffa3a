"""ModelEMA follows the model's parameters by decay, copies its buffers, and stays frozen."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from realesr_core.training import ModelEMA, decay_for_run


def test_update_moves_parameters_by_one_minus_decay_and_copies_buffers() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    ema = ModelEMA(model, decay=0.9)
    before = {key: value.clone() for key, value in ema.state_dict().items()}
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    model(torch.rand(2, 3, 8, 8))  # train mode: BatchNorm's running stats and counter move
    ema.update(model)
    parameters = {name for name, _ in model.named_parameters()}
    for key, value in model.state_dict().items():
        if key in parameters:
            torch.testing.assert_close(ema.state_dict()[key], 0.9 * before[key] + 0.1 * value)
        else:
            assert torch.equal(ema.state_dict()[key], value)
    assert ema.state_dict()["1.num_batches_tracked"].item() == 1
    assert not any(parameter.requires_grad for parameter in ema.module.parameters())
    assert not ema.module.training


def test_decay_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="decay"):
        ModelEMA(nn.Linear(2, 2), decay=1.0)


def test_short_runs_average_over_their_last_tenth() -> None:
    assert decay_for_run(100_000) == 0.999 and decay_for_run(10_000) == pytest.approx(0.999)
    assert decay_for_run(300) == pytest.approx(1 - 1 / 30) and decay_for_run(5) == 0.0
