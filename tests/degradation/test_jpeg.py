"""The differentiable JPEG against Pillow's libjpeg on real photos."""

from __future__ import annotations

import pytest
import torch

from realesr_core.degradation import diff_jpeg, pillow_jpeg

from helpers import photo, psnr, to_tensor

PHOTOS = ("astronaut", "coffee", "chelsea")


@pytest.mark.parametrize("quality", [30, 50, 70, 90, 95])
def test_matches_libjpeg(quality: int) -> None:
    values = []
    for name in PHOTOS:
        image = to_tensor(photo(192, name, 0, 0))
        values.append(psnr(diff_jpeg(image, quality, differentiable=False), pillow_jpeg(image, quality), peak=1.0))
    print(f"quality {quality}: worst {min(values):.1f} dB against Pillow ({', '.join(f'{v:.1f}' for v in values)})")
    assert min(values) >= 33


def test_differentiable_mode_is_close_and_has_gradients() -> None:
    image = to_tensor(photo(64)).requires_grad_(True)
    out = diff_jpeg(image, 60.0, differentiable=True)
    assert psnr(out.detach(), pillow_jpeg(image.detach(), 60), peak=1.0) > 33
    out.sum().backward()
    assert image.grad is not None and torch.isfinite(image.grad).all() and image.grad.abs().sum() > 0


def test_quality_100_float_quality_and_per_image_quality() -> None:
    images = torch.stack([to_tensor(photo(40, n, 0, 0))[0] for n in PHOTOS])
    out = diff_jpeg(images, 100)
    assert torch.isfinite(out).all() and psnr(out, images, peak=1.0) > 40
    per_image = diff_jpeg(images, torch.tensor([30.0, 55.5, 90.0]), differentiable=False)
    for i, q in enumerate((30.0, 55.5, 90.0)):
        assert torch.equal(per_image[i : i + 1], diff_jpeg(images[i : i + 1], q, differentiable=False))
    assert psnr(per_image[0], images[0], peak=1.0) < psnr(per_image[2], images[2], peak=1.0)


def test_gray_and_odd_sizes() -> None:
    gray = to_tensor(photo(37))[:, :1, :, :29]
    ours = diff_jpeg(gray, 75, differentiable=False)
    assert ours.shape == gray.shape
    assert psnr(ours, pillow_jpeg(gray, 75), peak=1.0) > 33
    with pytest.raises(ValueError, match="1 or 3 channels"):
        diff_jpeg(torch.rand(1, 4, 16, 16), 50)


def test_blocks_are_the_view_permute_rearrangement() -> None:
    """einops says what the 8x8 blocking is; the result is what the view/permute chain it replaced gave."""
    from realesr_core.degradation.jpeg import _blocks, _unblocks

    planes = torch.rand(2, 24, 40)
    old = planes.view(2, 3, 8, 5, 8).permute(0, 1, 3, 2, 4)
    assert torch.equal(_blocks(planes), old)
    assert torch.equal(_unblocks(old), old.permute(0, 1, 3, 2, 4).reshape(2, 24, 40))
