"""The registry: recognising state dicts, and adding an architecture in one place."""

from __future__ import annotations

import pytest

from realesr_core import ModelLoadError, load_model


def test_unknown_model_says_what_it_found() -> None:
    import torch

    with pytest.raises(ModelLoadError, match="unrecognised model.*encoder.weight"):
        load_model({"encoder.weight": torch.zeros(3, 3)})
