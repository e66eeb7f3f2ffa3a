import pytest
import torch

from realesr_core import ImageError, load_model
from realesr_core.archs import RRDBNet
from realesr_core.inference import upscale_whole
from realesr_core.padding import pad_reflect

from conftest import randomized


@pytest.mark.parametrize("scale", [1, 2])
@pytest.mark.parametrize("size", [(7, 9), (1, 1), (13, 2)])
def test_unshuffle_models_take_any_size(scale: int, size: tuple[int, int]) -> None:
    model = load_model(randomized(RRDBNet(scale=scale, num_feat=8, num_block=1, num_grow_ch=4)).state_dict())
    out = upscale_whole(model, torch.rand(2, 3, *size))
    assert out.shape == (2, 3, size[0] * scale, size[1] * scale)


def test_border_context_matches_manual_reflect() -> None:
    model = load_model(randomized(RRDBNet(num_feat=8, num_block=1, num_grow_ch=4)).state_dict())
    x = torch.rand(1, 3, 20, 20)
    with torch.no_grad():
        manual = model.module(torch.nn.functional.pad(x, [10] * 4, mode="reflect"))[..., 40:-40, 40:-40]
    assert torch.equal(upscale_whole(model, x), manual)


def test_pad_reflect_on_tiny_images() -> None:
    x = torch.arange(6.0).reshape(1, 1, 2, 3)
    padded = pad_reflect(x, 4, 4, 4, 4)
    assert padded.shape == (1, 1, 10, 11)
    assert torch.equal(padded[..., 4:6, 4:7], x)


@pytest.mark.parametrize(
    "image,message",
    [
        (torch.rand(3, 8, 8), "expected an image batch"),
        (torch.rand(1, 3, 0, 8), "empty"),
        (torch.full((1, 3, 4, 4), float("nan")), "NaN"),
        (torch.zeros(1, 3, 4, 4, dtype=torch.uint8), "float"),
        (torch.rand(1, 2, 4, 4), "takes 3 channels"),
    ],
)
def test_bad_images(image: torch.Tensor, message: str) -> None:
    model = load_model(randomized(RRDBNet(num_feat=8, num_block=1, num_grow_ch=4)).state_dict())
    with pytest.raises(ImageError, match=message):
        upscale_whole(model, image)
