"""Filtering, resizing, noise statistics and USM."""

from __future__ import annotations

import pytest
import torch

from realesr_core.degradation import (
    build_kernel,
    filter2d,
    gaussian_noise,
    poisson_noise,
    resize,
    usm_sharpen,
)


def test_filter2d_per_image_kernels_in_one_call() -> None:
    images = torch.rand(3, 3, 30, 30)
    kernels = torch.stack([build_kernel({"type": "iso", "size": 7, "sigma_x": s, "sigma_y": s, "theta": 0.0})
                           for s in (0.5, 1.0, 2.0)])
    together = filter2d(images, kernels)
    for i in range(3):
        assert torch.allclose(together[i : i + 1], filter2d(images[i : i + 1], kernels[i]), atol=1e-6)
    assert torch.allclose(filter2d(images, build_kernel(None)), images, atol=1e-6)


def test_filter2d_tiny_image_smaller_than_the_kernel() -> None:
    out = filter2d(torch.rand(1, 3, 4, 5), build_kernel({"type": "sinc", "size": 21, "cutoff": 1.0}))
    assert out.shape == (1, 3, 4, 5) and torch.isfinite(out).all()


def test_gaussian_noise_standard_deviation() -> None:
    flat = torch.full((2, 3, 200, 200), 0.5)
    noisy = gaussian_noise(flat, [20.0, 5.0], [False, True], torch.Generator().manual_seed(0))
    for i, sigma in enumerate((20.0, 5.0)):
        measured = (noisy[i] - 0.5).std().item() * 255
        assert abs(measured - sigma) / sigma < 0.03
    assert torch.equal(noisy[1, 0], noisy[1, 1])  # gray noise: the same in every channel
    assert not torch.equal(noisy[0, 0], noisy[0, 1])


def test_poisson_noise_variance_grows_with_intensity() -> None:
    """Two levels -> v = 2; the noise Poisson(2q)/2 - q has variance q/2, times scale^2."""
    image = torch.zeros(1, 3, 200, 200)
    image[..., :100] = 0.2
    image[..., 100:] = 0.8
    scale = 0.05
    noisy = poisson_noise(image, [scale], [False], torch.Generator().manual_seed(1))
    for region, level in ((slice(0, 100), 0.2), (slice(100, 200), 0.8)):
        variance = (noisy[..., region] - level).var().item()
        expected = scale**2 * level / 2
        assert abs(variance - expected) / expected < 0.1


def test_resize_modes_and_bad_mode() -> None:
    for mode in ("area", "bilinear", "bicubic"):
        assert resize(torch.rand(2, 3, 17, 23), (8, 11), mode).shape == (2, 3, 8, 11)
    with pytest.raises(ValueError, match="resize mode"):
        resize(torch.rand(1, 3, 8, 8), (4, 4), "nearest")


def test_usm_sharpens_edges_only() -> None:
    image = torch.full((1, 3, 80, 80), 0.3)
    image[..., 40:] = 0.7
    sharp = usm_sharpen(image)
    assert sharp[..., 38].mean() < 0.3 - 0.02 and sharp[..., 41].mean() > 0.7 + 0.02  # overshoot at the edge
    assert torch.allclose(sharp[..., :5], image[..., :5], atol=1e-3)  # flat areas untouched


def test_separable_filter_equals_the_2d_kernel() -> None:
    from realesr_core.degradation.ops import filter2d_separable

    gauss = torch.exp(-torch.linspace(-3, 3, 13) ** 2)
    gauss = gauss / gauss.sum()
    images = torch.rand(2, 3, 30, 41)
    torch.testing.assert_close(filter2d_separable(images, gauss), filter2d(images, gauss[:, None] * gauss[None, :]),
                               atol=1e-6, rtol=0)


def test_grouped_filters_equal_the_reshape_chains_they_replaced() -> None:
    """filter2d and its separable form rearrange images into the channels of one grouped conv with einops; the
    results equal those of the reshape / view chains used before."""
    import torch.nn.functional as F

    from realesr_core.degradation.ops import filter2d_separable
    from realesr_core.image_tensors import pad_reflect

    images, kernels = torch.rand(3, 3, 17, 23), torch.rand(3, 7, 7)
    padded = pad_reflect(images, 3, 3, 3, 3)
    weight = kernels.repeat_interleave(3, 0)[:, None]
    old = F.conv2d(padded.reshape(1, 9, *padded.shape[-2:]), weight, groups=9).view(3, 3, 17, 23)
    assert torch.equal(filter2d(images, kernels), old)
    kernel = torch.rand(5)
    padded = pad_reflect(images, 2, 2, 2, 2).reshape(9, 1, 21, 27)
    rows = F.conv2d(padded, kernel.view(1, 1, 1, 5))
    assert torch.equal(filter2d_separable(images, kernel), F.conv2d(rows, kernel.view(1, 1, 5, 1)).view(3, 3, 17, 23))


@pytest.mark.parametrize("size", [9, 13, 21])
def test_filters_of_one_image_by_fft_give_the_direct_sums(size: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Large 2-D filters over few planes (one or two images) are FFT products on the CPU (fast); they agree with the
    direct grouped convolution, also on an image smaller than the kernel and on sizes whose transforms get padded."""
    from realesr_core.degradation import ops

    generator = torch.Generator().manual_seed(size)
    for shape in ((2, 3, 41, 37), (1, 1, 5, 6)):
        images, kernels = torch.rand(shape, generator=generator), torch.rand(shape[0], size, size, generator=generator)
        kernels /= kernels.sum((1, 2), keepdim=True)
        by_fft = filter2d(images, kernels)
        monkeypatch.setattr(ops, "FFT_MIN_KERNEL", 1 << 30)
        direct = filter2d(images, kernels)
        monkeypatch.undo()
        assert by_fft.shape == direct.shape and by_fft.is_contiguous()
        assert not torch.equal(by_fft, direct)  # it did take the other path
        torch.testing.assert_close(by_fft, direct, atol=2e-6, rtol=0)
