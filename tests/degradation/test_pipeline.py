"""The second-order pipeline: probabilities, determinism, replay, batching modes, shapes and bad input."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch

from realesr_core import ImageError, RealESRError
from realesr_core.degradation import (
    DEGRADATION_PRESETS,
    apply_parameters,
    degrade,
    get_preset,
    sample_parameters,
)

from helpers import chi_square_p, photo, to_tensor


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    return torch.stack([to_tensor(photo(96, n, 0, 0))[0] for n in ("astronaut", "coffee", "chelsea")])


def test_official_x4_shapes(photos: torch.Tensor) -> None:
    result = degrade(photos, "realesrgan_x4", seed=3)
    assert result.degraded.shape == (3, 3, 24, 24) and result.target.shape == photos.shape
    assert torch.equal(result.degraded, torch.round(result.degraded * 255) / 255)  # quantized to 8 bits
    assert degrade(photos, "realesrgan_x2", seed=3).degraded.shape == (3, 3, 48, 48)


def test_stage_frequencies_follow_the_configuration() -> None:
    params = sample_parameters(get_preset("realesrgan_x4"), 3000, 64, 64, seed=11)
    directions = Counter(p["first"]["resize"]["direction"] for p in params)
    observed = [directions[d] for d in ("up", "down", "keep")]
    assert chi_square_p(observed, [0.2, 0.7, 0.1]) > 1e-3
    assert chi_square_p(observed, [0.3, 0.4, 0.3]) < 1e-9
    directions2 = Counter(p["second"]["resize"]["direction"] for p in params)
    assert chi_square_p([directions2[d] for d in ("up", "down", "keep")], [0.3, 0.4, 0.3]) > 1e-3
    gaussian = sum(p["first"]["noise"]["type"] == "gaussian" for p in params)
    assert chi_square_p([gaussian, len(params) - gaussian], [0.5, 0.5]) > 1e-3
    gray = sum(p["first"]["noise"]["gray"] for p in params)
    assert chi_square_p([gray, len(params) - gray], [0.4, 0.6]) > 1e-3
    second_blur = sum(p["second"]["blur"] is not None for p in params)
    assert chi_square_p([second_blur, len(params) - second_blur], [0.8, 0.2]) > 1e-3
    final_sinc = sum(p["final"]["sinc"] is not None for p in params)
    assert chi_square_p([final_sinc, len(params) - final_sinc], [0.8, 0.2]) > 1e-3
    for p in params:
        resize = p["first"]["resize"]
        assert {"up": 1.0 <= resize["factor"] <= 1.5, "down": 0.15 <= resize["factor"] <= 1.0,
                "keep": resize["factor"] == 1.0}[resize["direction"]]
        noise = p["first"]["noise"]
        if noise["type"] == "gaussian":
            assert 1 <= noise["sigma"] <= 30
        else:
            assert 0.05 <= noise["scale"] <= 3
        assert 30 <= p["first"]["jpeg"]["quality"] <= 95 and 30 <= p["final"]["jpeg"]["quality"] <= 95


def test_same_seed_same_output_different_seed_differs(photos: torch.Tensor) -> None:
    a = degrade(photos, seed=5)
    b = degrade(photos, seed=5)
    c = degrade(photos, seed=6)
    assert torch.equal(a.degraded, b.degraded) and a.params == b.params
    assert not torch.equal(a.degraded[0], c.degraded[0])


def test_replayed_parameters_reproduce_exactly(photos: torch.Tensor) -> None:
    for same in (False, True):
        first = degrade(photos, seed=9, same_on_batch=same)
        replayed = apply_parameters(photos, json.loads(json.dumps(first.params)))
        assert torch.equal(first.degraded, replayed.degraded)


def test_per_image_versus_same_on_batch(photos: torch.Tensor) -> None:
    per_image = degrade(photos, seed=2)
    assert per_image.params[0] != per_image.params[1]
    shared = degrade(photos, seed=2, same_on_batch=True)
    assert shared.params[0] == shared.params[1] == shared.params[2]
    frames = photos[:1].expand(3, -1, -1, -1).contiguous()
    same = degrade(frames, seed=2, same_on_batch=True).degraded
    noise = shared.params[0]["first"]["noise"]
    if noise is not None:  # one damage, but each frame keeps its own grain
        assert not torch.equal(same[0], same[1])
    assert (same[0] - same[1]).abs().mean() < 0.05


def test_generator_instead_of_seed(photos: torch.Tensor) -> None:
    a = degrade(photos, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a.degraded, degrade(photos, seed=4).degraded)


def test_keep_size_sharpened_target_and_presets(photos: torch.Tensor) -> None:
    for name in DEGRADATION_PRESETS:
        result = degrade(photos, name, seed=1, keep_size=True, sharpen_target=True)
        assert result.degraded.shape == photos.shape, name
        assert not torch.equal(result.target, photos)
    for scale in (2, 4):
        bicubic = degrade(photos, f"bicubic_x{scale}", seed=0, quantize=False)
        size = (photos.shape[-2] // scale, photos.shape[-1] // scale)
        expected = torch.nn.functional.interpolate(photos, size=size, mode="bicubic", align_corners=False)
        assert torch.allclose(bicubic.degraded, expected.clamp(0, 1), atol=1e-6), scale


def test_overrides() -> None:
    config = get_preset("realesrgan_x4", noise_range=[5, 6], jpeg_prob=0.0)
    params = sample_parameters(config, 50, 32, 32, seed=0)
    assert all(p["first"]["jpeg"] is None for p in params)
    assert all(5 <= p["first"]["noise"]["sigma"] <= 6 for p in params if p["first"]["noise"]["type"] == "gaussian")
    with pytest.raises(RealESRError, match="unknown degradation setting"):
        get_preset("realesrgan_x4", noise_rnage=[1, 2])


@pytest.mark.parametrize("shape", [(1, 3, 203, 157), (2, 3, 12, 12), (1, 1, 40, 40), (1, 4, 40, 44)])
def test_sizes_and_channels(shape: tuple[int, ...]) -> None:
    images = torch.rand(*shape)
    result = degrade(images, seed=0)
    assert result.degraded.shape == (shape[0], shape[1], shape[2] // 4, shape[3] // 4)
    assert torch.isfinite(result.degraded).all()


def test_bad_input(photos: torch.Tensor) -> None:
    with pytest.raises(ImageError, match="NaN"):
        degrade(torch.full((1, 3, 16, 16), float("nan")))
    with pytest.raises(ImageError, match="channels"):
        degrade(torch.rand(1, 2, 16, 16))
    with pytest.raises(RealESRError, match="unknown degradation preset 'x9'"):
        degrade(photos, "x9")
    with pytest.raises(RealESRError, match="another image size"):
        apply_parameters(photos[..., :50, :50], degrade(photos, seed=0).params)


def test_override_values_are_checked() -> None:
    for bad in ({"noise_range": "abc"}, {"noise_range": [1]}, {"jpeg_prob": "often"}, {"resize_modes": ["lanczos"]},
                {"sharpen_input": 1}):
        with pytest.raises(RealESRError, match="must look like"):
            get_preset("realesrgan_x4", **bad)
