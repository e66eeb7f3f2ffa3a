"""Degradation nodes on real tensors."""

from __future__ import annotations

import json

import pytest
import torch

from nodes import NODE_CLASS_MAPPINGS

from helpers import bhwc


def test_validation_messages() -> None:
    degrade = NODE_CLASS_MAPPINGS["RealESR_Degrade"]
    assert degrade.VALIDATE_INPUTS(overrides='{"noise_range": [1, 5]}') is True
    assert "unknown degradation setting" in degrade.VALIDATE_INPUTS(overrides='{"noise": 1}')
    assert "not valid JSON" in degrade.VALIDATE_INPUTS(overrides="{not json")
    assert "must look like" in degrade.VALIDATE_INPUTS(overrides='{"noise_range": 3}')


def test_degrade_node() -> None:
    image = torch.cat([bhwc(64), bhwc(64, "coffee")])
    node = NODE_CLASS_MAPPINGS["RealESR_Degrade"]()
    degraded, target, params = node.degrade(image, "realesrgan_x4", "downscale", 5, "per image", True, False)
    assert degraded.shape == (2, 16, 16, 3) and target.shape == image.shape
    drawn = json.loads(params)
    assert len(drawn) == 2 and drawn[0] != drawn[1]
    kept, _, shared = node.degrade(image, "realesrgan_x2", "keep size", 5, "same on batch", False, True,
                                   '{"jpeg_range": [90, 95]}')
    assert kept.shape == image.shape and json.loads(shared)[0] == json.loads(shared)[1]


@pytest.mark.parametrize("node_id,arguments", [
    ("RealESR_Blur", dict(kernel="random", kernel_size=21, sigma_x=1.0, sigma_y=2.0, rotation=30, beta=1, cutoff=1, seed=1)),
    ("RealESR_Blur", dict(kernel="plateau_aniso", kernel_size=13, sigma_x=1.0, sigma_y=2.0, rotation=30, beta=1.5,
                          cutoff=1, seed=1)),
    ("RealESR_Blur", dict(kernel="sinc", kernel_size=11, sigma_x=1.0, sigma_y=1.0, rotation=0, beta=1, cutoff=1.2, seed=1)),
    ("RealESR_Noise", dict(noise="gaussian", color="gray", sigma=10.0, poisson_scale=1.0, seed=3)),
    ("RealESR_Noise", dict(noise="poisson", color="color", sigma=10.0, poisson_scale=2.0, seed=3)),
    ("RealESR_JPEG", dict(quality=40.0, method="torch")),
    ("RealESR_JPEG", dict(quality=40.0, method="libjpeg")),
    ("RealESR_Resize", dict(factor=0.5, mode="bicubic")),
    ("RealESR_SincFilter", dict(kernel_size=15, cutoff=1.0)),
    ("RealESR_USMSharpen", dict(radius=51, weight=0.5, threshold=10.0)),
])
def test_operation_nodes(node_id: str, arguments: dict) -> None:
    cls = NODE_CLASS_MAPPINGS[node_id]
    for image in (torch.cat([bhwc(40), bhwc(40, "chelsea")]), torch.cat([bhwc(40), torch.ones(1, 40, 40, 1)], -1)):
        (out,) = getattr(cls(), cls.FUNCTION)(image, **arguments)
        factor = arguments.get("factor", 1.0)
        assert out.shape == (2 if image.shape[0] == 2 else 1, round(40 * factor), round(40 * factor), image.shape[-1])
        assert torch.isfinite(out).all() and 0 <= out.min() and out.max() <= 1
        assert not torch.equal(out[..., :3], image[..., :3]) or factor != 1.0
        if image.shape[-1] == 4:
            assert torch.allclose(out[..., 3], torch.ones_like(out[..., 3]))


@pytest.mark.parametrize("node_id,arguments", [
    ("RealESR_Blur", dict(kernel="iso", kernel_size=7, sigma_x=1.0, sigma_y=1.0, rotation=0, beta=1, cutoff=1, seed=0)),
    ("RealESR_JPEG", dict(quality=50.0, method="torch")),
    ("RealESR_USMSharpen", dict(radius=51, weight=0.5, threshold=10.0)),
])
def test_operation_nodes_reject_nan_and_empty_images(node_id: str, arguments: dict) -> None:
    from realesr_core import ImageError

    cls = NODE_CLASS_MAPPINGS[node_id]
    run = getattr(cls(), cls.FUNCTION)
    with pytest.raises(ImageError, match="NaN"):
        run(torch.full((1, 16, 16, 3), float("nan")), **arguments)
    with pytest.raises(ImageError, match="empty"):
        run(torch.zeros(0, 16, 16, 3), **arguments)
