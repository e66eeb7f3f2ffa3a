"""Shared image-batch operations: checks, padding, gray."""

from __future__ import annotations

import torch

from realesr_core.imaging import pad_reflect, pad_to_multiple


def test_pad_reflect_on_tiny_images() -> None:
    x = torch.arange(6.0).reshape(1, 1, 2, 3)
    padded = pad_reflect(x, 4, 4, 4, 4)
    assert padded.shape == (1, 1, 10, 11)
    assert torch.equal(padded[..., 4:6, 4:7], x)


def test_pad_reflect_is_reflect_101_where_it_can() -> None:
    x = torch.rand(1, 3, 12, 12)
    assert torch.equal(pad_reflect(x, 3, 5, 2, 4), torch.nn.functional.pad(x, [2, 4, 3, 5], mode="reflect"))


def test_pad_to_multiple() -> None:
    assert [pad_to_multiple(n, 4) for n in (4, 5, 6, 7)] == [0, 3, 2, 1]
