"""The tiled engine: seamless, memory-safe, precision fallback, channels, sizes, progress and cancellation."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from realesr_core import ImageError, RealESRError, UpscaleCancelled, UpscaleOutOfMemory, load_model, upscale
from realesr_core.models.archs import RRDBNet, SRVGGNetCompact

from helpers import photo, psnr, randomized, to_tensor


@pytest.mark.slow  # a whole RRDBNet forward on a real photo: seconds
def test_rrdbnet_tiles_of_96_match_the_whole_image() -> None:
    """A deep RRDBNet's receptive field is far wider than the context, so tiles differ from the whole image a
    little; the cross-fades keep that far below visibility. anime_6B (6 blocks) stands in for x4plus (23 blocks,
    4x the time): `python bench/tiling.py --sizes` measures x4plus's seams."""
    model = load_model("RealESRGAN_x4plus_anime_6B")
    image = to_tensor(photo(256)[:96])  # 96 x 256: three tiles in a row
    whole = upscale(model, image, tile=256, precision="fp32")
    tiled = upscale(model, image, tile=96, precision="fp32")
    assert (whole.tile_count, tiled.tile_count) == (1, 3)
    value = psnr(tiled.image, whole.image, peak=1.0)
    print(f"anime_6B, 96-px tiles vs whole image: {value:.1f} dB")
    assert value >= 55


@pytest.mark.parametrize("border", [0, 10])
def test_single_tile_is_the_network_on_the_reflect_padded_image(compact, border: int) -> None:
    image = to_tensor(photo(40))
    result = upscale(compact, image, border=border, precision="fp32")
    assert result.tile_count == 1
    with torch.no_grad():
        padded = torch.nn.functional.pad(image, [border] * 4, mode="reflect")
        manual = compact.module(padded)[..., 4 * border : 4 * (border + 40), 4 * border : 4 * (border + 40)]
    torch.testing.assert_close(result.image, manual.clamp(0, 1), atol=1e-6, rtol=0)


@pytest.mark.parametrize("tile", [17, 24, 33, 64])
def test_tile_size_independence(compact, tile: int) -> None:
    """With context wider than the receptive field, tiles reproduce the whole image to float precision: the
    windows, the kept regions and the cross-fade weights (which must sum to one) are all right."""
    image = to_tensor(photo(70))[..., :61, :70]
    whole = upscale(compact, image, tile=200, precision="fp32").image
    tiled = upscale(compact, image, tile=tile, overlap=24, blend=8, precision="fp32")
    assert tiled.tile_count > 1
    torch.testing.assert_close(tiled.image, whole, atol=2e-5, rtol=0)


class Hooked(nn.Module):
    """A model's network with hooks: `before(x)` may raise (an allocator's out-of-memory, say), `after(x, out)` may
    change the output (NaN or black in reduced precision)."""

    def __init__(self, inner: nn.Module, before=None, after=None) -> None:
        super().__init__()
        self.inner, self.before, self.after = inner, before, after
        self.scale, self.num_in_ch, self.num_out_ch = inner.scale, inner.num_in_ch, inner.num_out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.before is not None:
            self.before(x)
        out = self.inner(x)
        return self.after(x, out) if self.after is not None else out


def hooked(model, before=None, after=None):
    from dataclasses import replace

    return replace(model, module=Hooked(model.module, before, after))


def fail_on_first(size: tuple[int, int], message: str):
    seen = []

    def before(x: torch.Tensor) -> None:
        if tuple(x.shape[-2:]) == size and not seen:
            seen.append(size)
            raise RuntimeError(message)

    return before, seen


@pytest.mark.parametrize("message", ["CUDA out of memory. Tried to allocate 2.00 GiB",
                                     "[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory",
                                     "cuDNN error: CUDNN_STATUS_ALLOC_FAILED",
                                     "GET was unable to find an engine to execute this computation",
                                     "Unable to find a valid cuDNN algorithm to run convolution",
                                     "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"])
def test_out_of_memory_splits_the_tile_and_matches_a_smaller_start(message: str) -> None:
    model = load_model(randomized(RRDBNet(num_feat=8, num_block=2, num_grow_ch=4)).state_dict())
    image = to_tensor(photo(160))
    before, failed = fail_on_first((80 + 2 * 32, 80 + 2 * 32), message)  # 2 x 2 tiles of 80, overlap 32
    recovered = upscale(hooked(model, before), image, tile=80, precision="fp32", tiles_per_forward=1)
    assert failed and recovered.oom_splits == 4
    assert recovered.tile_size == 40 and recovered.tile_count == 16
    fresh = upscale(model, image, tile=recovered.tile_size, precision="fp32", tiles_per_forward=1)
    assert torch.equal(recovered.image, fresh.image)


def test_out_of_memory_later_keeps_finished_tiles_and_stays_seamless(compact) -> None:
    calls = []

    def before(x: torch.Tensor) -> None:
        calls.append(x.shape)
        if len(calls) == 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    image = to_tensor(photo(64))
    result = upscale(hooked(compact, before), image, tile=32, overlap=24, blend=8, precision="fp32",
                     tiles_per_forward=1)
    assert result.oom_splits == 2 and result.tile_count == 2 + 8
    whole = upscale(compact, image, tile=100, precision="fp32").image
    torch.testing.assert_close(result.image, whole, atol=2e-5, rtol=0)


def test_batched_tiles_halve_before_splitting(compact) -> None:
    sizes = []

    def before(x: torch.Tensor) -> None:
        sizes.append(x.shape[0])
        if x.shape[0] > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    result = upscale(hooked(compact, before), to_tensor(photo(64)), tile=32, precision="fp32", tiles_per_forward=4)
    assert sizes[0] == 4 and result.tiles_per_forward == 2 and result.oom_splits == 0


def raise_error(message: str):
    def before(x: torch.Tensor) -> None:
        raise RuntimeError(message)

    return before


def test_out_of_memory_at_the_smallest_tile_is_a_clear_error(compact) -> None:
    with pytest.raises(UpscaleOutOfMemory, match="even with tiles of") as raised:
        upscale(hooked(compact, raise_error("CUDA out of memory")), to_tensor(photo(20)), tile=20, precision="fp32")
    assert isinstance(raised.value, torch.cuda.OutOfMemoryError)  # hosts (ComfyUI) handle it as theirs
    assert raised.value.__context__ is None  # nothing keeps the failed forward's tensors alive


def test_a_tile_size_that_ran_out_of_memory_is_not_tried_again(compact) -> None:
    """The first frame finds the tile size that fits; the other frames (and passes) start from it."""
    def before(x: torch.Tensor) -> None:
        if x.shape[-1] > 40:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    frames = torch.cat([to_tensor(photo(64, top=t)) for t in (0, 40, 80)])
    seen = []
    result = upscale(hooked(compact, before), frames, tile=32, overlap=8, blend=4, precision="fp32",
                     tiles_per_forward=1, progress=lambda done, total: seen.append((done, total)))
    assert result.oom_splits == 4 and result.tile_count == 3 * 16 and result.tile_size == 16
    assert seen[-1] == (48, 48)
    fresh = upscale(compact, frames, tile=16, overlap=8, blend=4, precision="fp32", tiles_per_forward=1)
    torch.testing.assert_close(result.image, fresh.image, atol=1e-6, rtol=0)  # the split tiles add in another order


def test_other_errors_are_not_swallowed(compact) -> None:
    with pytest.raises(RuntimeError, match="something else"):
        upscale(hooked(compact, raise_error("something else")), to_tensor(photo(20)), precision="fp32")


@pytest.mark.parametrize("damage", ["nan", "black"])
def test_bad_tile_in_reduced_precision_is_rerun_in_fp32(compact, damage: str) -> None:
    def after(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32:
            return out
        return out * float("nan") if damage == "nan" else out * 0

    image = to_tensor(photo(48))
    result = upscale(hooked(compact, after=after), image, tile=24, precision="bf16")
    # two bad tiles in a row: re-run each, then the rest of the call stays in fp32 (no tile runs twice again)
    assert result.precision == "bf16" and result.tile_count == 4 and result.fp32_reruns == 2
    assert result.switched_to_fp32
    torch.testing.assert_close(result.image, upscale(compact, image, tile=24, precision="fp32").image)


def test_one_bad_tile_is_rerun_alone(compact) -> None:
    """An isolated failure (one window overflowing) costs one re-run; the other tiles stay in reduced precision."""
    calls = []

    def after(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        calls.append(x.dtype)
        return out * float("inf") if len(calls) == 2 else out

    result = upscale(hooked(compact, after=after), to_tensor(photo(48)), tile=24, precision="bf16")
    assert result.fp32_reruns == 1 and not result.switched_to_fp32
    assert calls == [torch.bfloat16, torch.bfloat16, torch.float32, torch.bfloat16, torch.bfloat16]


def test_reduced_precision_is_close_to_fp32(compact) -> None:
    image = to_tensor(photo(32))
    bf16 = upscale(compact, image, precision="bf16")
    assert bf16.fp32_reruns == 0
    assert psnr(bf16.image, upscale(compact, image, precision="fp32").image, peak=1.0) > 35


def test_auto_precision_on_this_cpu(compact) -> None:
    from realesr_core.upscaling.device import cpu_has_native_bf16

    result = upscale(compact, to_tensor(photo(16)))
    assert result.precision == ("bf16" if cpu_has_native_bf16() else "fp32")


def test_rgba_keeps_alpha_without_dark_fringes(compact) -> None:
    rgb = torch.zeros(1, 3, 32, 32)
    rgb[:, 0] = 1.0  # red where opaque
    rgb[:, 1, :, 16:] = 1.0  # stray green colour under the transparent half
    alpha = torch.ones(1, 1, 32, 32)
    alpha[..., 16:] = 0.0
    image = torch.cat([rgb, alpha], 1)
    for mode in ("model", "resize"):
        out = upscale(compact, image, alpha=mode, precision="fp32").image
        assert out.shape == (1, 4, 128, 128)
        opaque = out[..., 16:112, :60]
        assert opaque[:, 3].min() > 0.95
        assert opaque[:, 1].max() < 0.05, "green from under the transparent half bled into the opaque edge"
        assert opaque[:, 0].min() > 0.9, "the opaque edge turned dark"
        assert out[:, 3, :, 72:].max() < 0.05


def test_gray_image_with_colour_model_comes_back_gray(compact) -> None:
    gray = to_tensor(photo(24))[:, :1]
    out = upscale(compact, gray, precision="fp32").image
    assert out.shape == (1, 1, 96, 96)
    with torch.no_grad():
        colour = compact.module(gray.expand(-1, 3, -1, -1))  # unclamped: luma is taken before the final clamp
    expected = (colour * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, True).clamp(0, 1)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("channels", [1, 4])
def test_native_one_and_four_channel_models(channels: int) -> None:
    model = load_model(randomized(SRVGGNetCompact(channels, channels, num_feat=8, num_conv=2)).state_dict())
    out = upscale(model, torch.rand(1, channels, 20, 20), tile=16)
    assert out.image.shape == (1, channels, 80, 80)


def test_sixteen_bit_precision_survives() -> None:
    """An identity network (x1, zero residual) must return 16-bit values exactly: nothing rounds to 8 bits."""
    net = SRVGGNetCompact(num_feat=8, num_conv=1, upscale=1)
    nn.init.zeros_(net.body[-1].weight)
    nn.init.zeros_(net.body[-1].bias)
    image = torch.randint(0, 65536, (1, 3, 40, 40)).float() / 65535
    out = upscale(load_model(net.state_dict()), image, tile=16, precision="fp32").image
    assert torch.equal(torch.round(out * 65535), torch.round(image * 65535))
    assert (torch.round(out * 65535) % 257 != 0).any()  # values between the 8-bit levels are there


@pytest.mark.parametrize("scale", [1, 2])
def test_odd_sizes_with_unshuffle_models(scale: int) -> None:
    model = load_model(randomized(RRDBNet(scale=scale, num_feat=8, num_block=1, num_grow_ch=4)).state_dict())
    for size in [(13, 9), (3, 31)]:
        out = upscale(model, torch.rand(1, 3, *size), tile=16, overlap=8).image
        assert out.shape == (1, 3, size[0] * scale, size[1] * scale)


def test_batch_equals_frames_one_by_one(compact) -> None:
    frames = torch.stack([to_tensor(photo(24, top=t))[0] for t in (0, 50, 100)])
    batched = upscale(compact, frames, tile=16, precision="fp32")
    assert batched.tile_count == 3 * 4
    for i in range(3):
        single = upscale(compact, frames[i : i + 1], tile=16, precision="fp32").image
        torch.testing.assert_close(batched.image[i : i + 1], single)


def test_output_sizes(compact) -> None:
    image = to_tensor(photo(30))[..., :20, :30]
    assert upscale(compact, image, outscale=2.0).image.shape[-2:] == (40, 60)
    assert upscale(compact, image, width=45).image.shape[-2:] == (30, 45)
    assert upscale(compact, image, height=50).image.shape[-2:] == (50, 75)
    assert upscale(compact, image, width=100, height=10).image.shape[-2:] == (10, 100)
    eight = upscale(compact, image, outscale=8.0)
    assert eight.passes == 2 and eight.image.shape[-2:] == (160, 240)
    with pytest.raises(RealESRError, match="either outscale or width"):
        upscale(compact, image, outscale=2.0, width=10)
    with pytest.raises(RealESRError, match="width must be 1..131072; got -5"):
        upscale(compact, image, width=-5)
    with pytest.raises(RealESRError, match="outscale must be 0.05..16; got 0"):
        upscale(compact, image, outscale=0.0)


def test_a_factor_just_above_the_scale_is_one_pass_and_a_resize(compact) -> None:
    """x4.69 with a x4 model: one pass resized (as Real-ESRGAN's --outscale), not two passes (17x the work)."""
    image = to_tensor(photo(64))
    result = upscale(compact, image, width=300, height=100)
    assert result.passes == 1 and result.image.shape[-2:] == (100, 300)
    assert upscale(compact, image[..., :16, :16], outscale=6.0).passes == 1
    assert upscale(compact, image[..., :16, :16], outscale=6.5).passes == 2


def test_downscaled_output_is_antialiased(compact) -> None:
    """x4 then down to x1 must look like the input, not like a nearest sampling of the x4 output."""
    image = to_tensor(photo(48))
    out = upscale(compact, image, outscale=1.0).image
    assert psnr(out, image, peak=1.0) > 27


def test_progress_counts_tiles_and_cancel_stops_within_a_tile(compact) -> None:
    image = to_tensor(photo(64))
    seen = []
    result = upscale(compact, image, tile=16, progress=lambda done, total: seen.append((done, total)))
    assert [d for d, _ in seen] == list(range(1, result.tile_count + 1)) and seen[-1] == (16, 16)
    seen.clear()
    with pytest.raises(UpscaleCancelled):
        upscale(compact, image, tile=16, progress=lambda d, t: seen.append(d), cancel=lambda: len(seen) >= 2)
    assert len(seen) == 2


def test_spandrel_style_descriptor(compact) -> None:
    duck = SimpleNamespace(model=compact.module, scale=4, input_channels=3, output_channels=3,
                           size_requirements=SimpleNamespace(multiple_of=1, minimum=1), supports_half=True,
                           supports_bfloat16=True)
    out = upscale(duck, to_tensor(photo(16)), precision="fp32").image
    torch.testing.assert_close(out, upscale(compact, to_tensor(photo(16)), precision="fp32").image)


@pytest.mark.parametrize(
    "image,message",
    [
        (torch.rand(3, 8, 8), "expected an image batch"),
        (torch.rand(0, 3, 8, 8), "empty"),
        (torch.full((1, 3, 4, 4), float("nan")), "NaN"),
        (torch.rand(1, 5, 4, 4), "got 5"),
        (torch.zeros(1, 3, 4, 4, dtype=torch.uint8), "float"),
    ],
)
def test_bad_input(compact, image: torch.Tensor, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        upscale(compact, image)


def test_the_callers_module_is_never_changed(tiny_srvgg: SRVGGNetCompact) -> None:
    """Memory format, dtype, device and weights of the module passed in stay as they were, whatever was asked."""
    model = load_model(tiny_srvgg.state_dict())
    before = {k: v.clone() for k, v in model.module.state_dict().items()}
    weight = model.module.body[0].weight
    for options in ({"precision": "bf16"}, {"precision": "fp32", "channels_last": True}, {"device": "meta"}):
        try:
            upscale(model, torch.rand(1, 3, 12, 12), **options)
        except (NotImplementedError, RuntimeError):
            pass  # the meta device cannot run the network; the copy made for it is what matters
        assert weight.is_contiguous() and weight.dtype == torch.float32 and weight.device.type == "cpu"
    assert all(torch.equal(v, before[k]) for k, v in model.module.state_dict().items())
