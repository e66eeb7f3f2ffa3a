"""A network followed by a fixed output resize."""

from __future__ import annotations

import pytest
import torch

from realesr_core.models.archs import SRVGGNetCompact
from realesr_core.models.rescaled import OutputRescaled


def test_output_rescaled_gives_integer_scale() -> None:
    net = OutputRescaled(SRVGGNetCompact(num_feat=8, num_conv=1), 0.75).eval()
    assert net.scale == 3
    assert net(torch.rand(1, 3, 7, 9)).shape == (1, 3, 21, 27)
    with pytest.raises(ValueError, match="not an integer scale"):
        OutputRescaled(SRVGGNetCompact(num_feat=8, num_conv=1), 0.6)
