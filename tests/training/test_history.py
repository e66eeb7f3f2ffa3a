"""The loss history a host keeps during a run (ComfyUI's LOSS_MAP) and the graph drawn from it."""

from __future__ import annotations

import math

import pytest
import torch

from realesr_core.training.history import COLOURS, LossHistory, loss_graph


def test_history_keeps_each_steps_losses_with_the_generators_total() -> None:
    history = LossHistory()
    history(1, 3, {"pixel": 0.25, "gan": 0.5, "lr": 1e-4, "d_real": 0.7, "d_fake": 0.6, "d_real_logit": 2.0})
    history(2, 3, {})  # a skipped step (non-finite loss) logs nothing
    history(3, 3, {"pixel": 0.125, "gan": 0.25, "lr": 1e-4, "d_real": 0.5, "d_fake": 0.4, "d_fake_logit": -1.0})
    assert history.values == {"loss": [0.75, 0.375], "pixel": [0.25, 0.125], "gan": [0.5, 0.25],
                              "d_real": [0.7, 0.5], "d_fake": [0.6, 0.4]}
    assert list(history.values)[0] == "loss"


def _has_colour(image: torch.Tensor, colour: str) -> bool:
    rgb = torch.tensor([int(colour[i:i + 2], 16) for i in (1, 3, 5)]) / 255
    return bool(((image - rgb).abs().amax(-1) < 1e-3).any())


def test_graph_draws_every_curve_in_its_colour_even_through_gaps() -> None:
    graph = loss_graph({"loss": [1.0, 0.5, math.nan, 0.25], "pixel": [0.5, 0.5, 0.5, 0.5]}, 400, 240)
    assert graph.shape == (240, 400, 3) and graph.dtype == torch.float32
    assert graph[0, 0].tolist() == [1.0, 1.0, 1.0]
    assert _has_colour(graph, COLOURS[0]) and _has_colour(graph, COLOURS[1])
    assert not _has_colour(loss_graph({"loss": [2.0, 1.0]}, 400, 240), COLOURS[1])


def test_a_flat_curve_and_a_single_step_draw_and_nothing_is_refused() -> None:
    assert loss_graph({"loss": [0.3]}).shape == (480, 800, 3)
    assert loss_graph({"loss": [0.3, 0.3, 0.3]}).shape == (480, 800, 3)
    with pytest.raises(ValueError, match="no values to draw"):
        loss_graph({"loss": []})
