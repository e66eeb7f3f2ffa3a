"""Shared image-batch operations: checks, padding, gray."""

from __future__ import annotations

import pytest
import torch

from realesr_core import ImageError
from realesr_core.image_tensors import check_images, luminance, pad_reflect, pad_to_multiple


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


@pytest.mark.parametrize(
    "images,channels,message",
    [
        ("not a tensor", (1, 3), "expected an image tensor, got str"),
        (torch.rand(3, 8, 8), (1, 3), "expected an image batch"),
        (torch.rand(0, 3, 8, 8), (1, 3), "empty"),
        (torch.zeros(1, 3, 4, 4, dtype=torch.uint8), (1, 3), "float"),
        (torch.full((1, 3, 4, 4), float("inf")), (1, 3), "NaN or infinite"),
        (torch.rand(1, 2, 4, 4), (1, 3, 4), r"expected 1 \(gray\), 3 \(RGB\), 4 \(RGBA\) channels, got 2"),
    ],
)
def test_check_images_says_what_was_wrong(images, channels: tuple[int, ...], message: str) -> None:
    with pytest.raises(ImageError, match=message):
        check_images(images, channels)


def test_luminance_weights() -> None:
    rgb = torch.rand(2, 3, 5, 5)
    expected = 0.299 * rgb[:, :1] + 0.587 * rgb[:, 1:2] + 0.114 * rgb[:, 2:]
    torch.testing.assert_close(luminance(rgb), expected)
    gray = torch.rand(1, 1, 4, 4).expand(-1, 3, -1, -1)
    torch.testing.assert_close(luminance(gray, (0.2989, 0.587, 0.114)), gray[:, :1] * 0.9999)
