"""Streaming an image larger than memory gives exactly the rows the in-memory path gives."""

from __future__ import annotations

import pytest
import torch

from realesr_core import ImageError, load_model, upscale
from realesr_core.models.archs import RRDBNet
from realesr_core.upscaling.streaming import upscale_rows

from helpers import photo, randomized, to_tensor


def streamed(model, image: torch.Tensor, **options) -> torch.Tensor:
    reads = []

    def read_rows(first: int, end: int) -> torch.Tensor:
        reads.append((first, end))
        return image[..., first:end, :]

    pieces = list(upscale_rows(model, read_rows, *image.shape[-2:], image.shape[1], **options))
    assert [first for first, _ in pieces] == sorted(first for first, _ in pieces)
    assert len(reads) == len(pieces) and all(end - first < image.shape[-2] for first, end in reads[1:-1])
    return torch.cat([rows for _, rows in pieces], 2)


@pytest.mark.parametrize("height,width,tile,border", [(61, 70, 16, 0), (40, 33, 16, 4), (50, 20, 64, 0)])
def test_rows_equal_the_in_memory_result(compact, height: int, width: int, tile: int, border: int) -> None:
    image = to_tensor(photo(80))[..., :height, :width]
    options = dict(tile=tile, overlap=8, blend=4, border=border, precision="fp32")
    assert torch.equal(streamed(compact, image, **options), upscale(compact, image, **options).image)


def test_unshuffle_models_gray_images_and_a_deep_network() -> None:
    x2 = load_model(randomized(RRDBNet(scale=2, num_feat=8, num_block=2, num_grow_ch=4)).state_dict())
    image = to_tensor(photo(64))[..., :45, :37]
    options = dict(tile=16, overlap=8, blend=4, precision="fp32")
    assert torch.equal(streamed(x2, image, **options), upscale(x2, image, **options).image)
    gray = image[:, :1]
    assert torch.equal(streamed(x2, gray, **options), upscale(x2, gray, **options).image)


def test_what_needs_the_whole_image_is_refused(compact) -> None:
    with pytest.raises(ImageError, match="model's scale"):
        next(upscale_rows(compact, lambda a, b: None, 10, 10, 3, outscale=2.0))
    with pytest.raises(ImageError, match="no transparency"):
        next(upscale_rows(compact, lambda a, b: None, 10, 10, 4))
