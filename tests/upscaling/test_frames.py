"""The frame path as a GPU runs it, shown where a CPU can show it: host passes per frame, where resizing and
clipping happen, which stream the copies are ordered on, whole frames batched, fp32 fall-backs, compile graphs."""

from __future__ import annotations

import contextlib
import copy
import math
import warnings
from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from realesr_core import load_model, upscale
from realesr_core.models.archs import RRDBNet, SRVGGNetCompact
from realesr_core.upscaling import device as device_rules
from realesr_core.upscaling import frames as frames_module
from realesr_core.upscaling.tile_runner import FP32_ONLY

from helpers import photo, randomized, to_tensor


class FullSizePasses(TorchDispatchMode):
    """The operations outside the network's forward that write at least `numel` elements: passes over a whole
    output frame (allocations, which touch nothing, are not counted)."""

    def __init__(self, numel: int, module: nn.Module) -> None:
        super().__init__()
        self.numel, self.passes, self.inside = numel, [], False
        self.hooks = [module.register_forward_pre_hook(lambda *a: setattr(self, "inside", True)),
                      module.register_forward_hook(lambda *a: setattr(self, "inside", False))]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        name = func.__name__
        written = kwargs.get("out", args[0] if name.split(".")[0].endswith("_") else result)
        big = isinstance(written, torch.Tensor) and written.numel() >= self.numel
        viewed = big and written is result and any(isinstance(a, torch.Tensor) and a.untyped_storage().data_ptr() ==
                                           result.untyped_storage().data_ptr() for a in args)
        if big and not self.inside and not viewed and not name.startswith("empty"):
            self.passes.append(name)
        return result

    def __exit__(self, *exc):
        for hook in self.hooks:
            hook.remove()
        return super().__exit__(*exc)


@pytest.fixture
def tiny_compact():
    return load_model(randomized(SRVGGNetCompact(num_feat=8, num_conv=2, upscale=4)).state_dict())


def test_one_pass_over_the_output_per_frame(tiny_compact) -> None:
    """A frame that is one window is clipped and written into the output in one pass (before: allocate and zero
    a frame buffer, copy the tile in, clip it, copy it into the batch: four)."""
    frames = torch.rand(3, 3, 24, 32)
    with FullSizePasses(3 * 96 * 128, tiny_compact.module) as counted:
        result = upscale(tiny_compact, frames, precision="fp32")
    assert counted.passes == ["clamp.out"] * 3, counted.passes
    expected = torch.cat([upscale(tiny_compact, f[None], precision="fp32").image for f in frames])
    torch.testing.assert_close(result.image, expected)


def test_resize_and_clip_run_on_the_compute_device(tiny_compact) -> None:
    """With the output on another device (here "meta" stands for the host of a GPU run), everything up to the
    finished frame happens on the compute device and each frame crosses over once."""
    crossings = []

    class Crossings(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if any(isinstance(a, torch.Tensor) and a.device.type == "meta" for a in args):
                crossings.append(func.__name__)
            return func(*args, **(kwargs or {}))

    with Crossings():
        result = upscale(tiny_compact, torch.rand(2, 3, 20, 20), outscale=2.0, output_device="meta")
    assert result.image.device.type == "meta" and result.image.shape == (2, 3, 40, 40)
    # one copy a frame: no resize or clamp over there
    assert [c for c in crossings if c != "slice.Tensor"] == ["copy_.default"] * 2, crossings


def test_whole_frames_share_a_forward(tiny_compact) -> None:
    """Small frames that are one window each go through several to a forward, with the same result."""
    forwards = []
    hook = tiny_compact.module.register_forward_hook(lambda m, i, o: forwards.append(i[0].shape[0]))
    frames = torch.rand(5, 3, 16, 16)
    try:
        batched = upscale(tiny_compact, frames, precision="fp32", tiles_per_forward=4)
    finally:
        hook.remove()
    assert forwards == [4, 1]
    alone = torch.cat([upscale(tiny_compact, f[None], precision="fp32").image for f in frames])
    torch.testing.assert_close(batched.image, alone)


def test_copies_are_ordered_on_the_compute_devices_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    """With --device cuda:1 and cuda:0 current, every event and stream belongs to cuda:1 (an event recorded on the
    current device's stream would let the host read pinned buffers before cuda:1's copies finish)."""
    asked = []

    class FakeStream:
        def __init__(self, device=None) -> None:
            self.device = torch.device(device if device is not None else "cuda:0")

        def wait_event(self, event) -> None:
            asked.append(("wait", self.device))

    class FakeEvent:
        def record(self, stream=None) -> None:
            asked.append(("record", stream.device if stream is not None else torch.device("cuda:0")))

        def synchronize(self) -> None:
            pass

    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: FakeStream(device))
    monkeypatch.setattr(torch.cuda, "Stream", FakeStream)
    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(torch.cuda, "stream", lambda stream: contextlib.nullcontext())
    monkeypatch.setattr(torch.Tensor, "record_stream", lambda self, stream: asked.append(("keep", stream.device)))
    monkeypatch.setattr(frames_module.FramePipeline, "_pinned_like", lambda self, frames: torch.empty_like(frames))
    output = torch.zeros(2, 3, 8, 8)
    pipeline = frames_module.FramePipeline(torch.rand(2, 3, 2, 2), output, torch.device("cuda", 1))
    pipeline.cuda = True
    finished = torch.rand(1, 3, 8, 8)
    pipeline.deliver(0, finished)
    pipeline.deliver(1, finished * 0.5)
    pipeline.finish()
    assert asked and all(device == torch.device("cuda", 1) for _, device in asked), asked
    torch.testing.assert_close(output, torch.cat([finished, finished * 0.5]))


@pytest.mark.parametrize(("capability", "expected"), [((9, 0), torch.bfloat16), ((8, 0), torch.bfloat16),
                                                      ((7, 5), torch.float16), ((7, 0), torch.float16),
                                                      ((6, 1), torch.float32)])
def test_training_precision_asks_the_training_device(monkeypatch: pytest.MonkeyPatch, capability, expected) -> None:
    """bf16 only where the card has it natively (is_bf16_supported() counts emulation: True on a T4)."""
    asked = []
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: asked.append(device) or capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA Test")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert device_rules.training_dtype(torch.device("cuda", 1)) == expected
    assert asked and all(device == torch.device("cuda", 1) for device in asked)


def test_rrdbnet_last_stage_in_strips_only_on_a_cpu() -> None:
    """On a CPU the last stage runs in cache-sized strips; elsewhere (here "meta") in a few memory-sized ones."""
    net = RRDBNet(num_feat=16, num_block=1, num_grow_ch=8).eval()
    calls = {}
    net.conv_last.register_forward_hook(lambda m, i, o: calls.__setitem__("n", calls.get("n", 0) + 1))
    with torch.inference_mode():
        net.to("meta")(torch.empty(1, 3, 512, 512, device="meta"))
    assert calls["n"] <= 4


class FailsInReducedPrecision(nn.Module):
    """A network that mixes dtypes inside (as some of another loader's do): it raises unless run in fp32."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3 * 4, 3, padding=1)
        self.fixed = torch.ones(1)  # not a buffer: stays fp32 when the module is cast

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.float32:
            raise RuntimeError("expected m1 and m2 to have the same dtype, but got: float != c10::BFloat16")
        return nn.functional.pixel_shuffle(self.conv(x), 2) * self.fixed


def test_a_forward_that_raises_in_reduced_precision_runs_in_fp32_from_then_on() -> None:
    from realesr_core.models.descriptor import ModelDescriptor

    module = FailsInReducedPrecision()
    model = ModelDescriptor(module=module, architecture="Test", hyperparameters={}, scale=2, in_channels=3,
                            out_channels=3, size_multiple=1, supports_fp16=True, supports_bf16=True, source="test",
                            channels_last=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = upscale(model, torch.rand(1, 3, 16, 16), precision="bf16")
    assert result.switched_to_fp32 and result.image.shape == (1, 3, 32, 32)
    assert sum("running it in fp32 from now on" in str(w.message) for w in caught) == 1
    assert module in FP32_ONLY
    assert upscale(model, torch.rand(1, 3, 16, 16)).precision == "fp32"  # auto remembers


def test_high_bit_output_keeps_its_low_bits() -> None:
    """fp16 keeps ~11 significant bits: run in fp16, the last layer would quantise a 16-bit result; for a 16-bit
    output it runs in fp32 (and always in bf16, which keeps 8)."""
    model = load_model(randomized(SRVGGNetCompact(num_feat=16, num_conv=2, upscale=2)).state_dict())
    image = to_tensor(photo(32))
    reference = upscale(model, image, precision="fp32").image

    def error(precision: str, bits: int) -> float:
        return float((upscale(model, image, precision=precision, output_bits=bits).image - reference).abs().mean())

    assert error("fp16", 16) < 0.9 * error("fp16", 8)
    assert error("bf16", 8) == error("bf16", 16)


@pytest.mark.slow
def test_compile_uses_one_window_shape_for_every_image_size(tiny_compact) -> None:
    """Three image sizes, one compiled window shape (pad the batch and the windows); the compiled copy is freed
    with the call; the result equals the eager one inside the image."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    for height, width in ((40, 56), (72, 40), (130, 150)):
        image = torch.rand(1, 3, height, width)
        compiled = upscale(tiny_compact, image, precision="fp32", compile=True, tile=128, overlap=8)
        eager = upscale(tiny_compact, image, precision="fp32", tile=128, overlap=8)
        assert compiled.image.shape == eager.image.shape
        assert 10 * math.log10(1 / float(((compiled.image - eager.image) ** 2).mean())) > 40
    assert counters["stats"]["unique_graphs"] <= 2


def test_cancel_stops_a_whole_image_forward_between_its_layers(monkeypatch: pytest.MonkeyPatch) -> None:
    """One window of a whole image is one forward: Cancel is asked before its layers, so it stops inside it (on a
    CPU a whole-image x4plus forward takes a minute), no output is made, and no check stays on the module."""
    from realesr_core import UpscaleCancelled
    from realesr_core.upscaling import tile_runner

    monkeypatch.setattr(tile_runner, "CANCEL_CHECK_SECONDS", 0.0)
    module = randomized(RRDBNet(num_feat=8, num_block=3, num_grow_ch=4))
    model = load_model(module.state_dict())
    ran, asked = [], []
    model.module.conv_last.register_forward_hook(lambda *a: ran.append("conv_last"))

    def cancel() -> bool:
        asked.append(len(ran))
        return len(asked) > 3  # Cancel pressed after the forward has begun

    with pytest.raises(UpscaleCancelled):
        upscale(model, torch.rand(1, 3, 48, 48), precision="fp32", cancel=cancel)
    assert len(asked) == 4 and not ran  # stopped inside the forward, before its last layer
    assert all(not layer._forward_pre_hooks for layer in model.module.modules())


def test_cancel_stops_the_copy_of_the_weights_in_reduced_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reduced precision runs a cast copy of the weights, made before the first forward (2.5 s for x4plus on a busy
    CPU): Cancel is asked between its tensors, and a finished copy equals the module cast whole, the source kept."""
    from realesr_core import UpscaleCancelled
    from realesr_core.upscaling import tile_runner

    monkeypatch.setattr(tile_runner, "CANCEL_CHECK_SECONDS", 0.0)
    module = randomized(RRDBNet(num_feat=8, num_block=2, num_grow_ch=4))
    asked = []

    def cancel_after(asks: int) -> Callable[[], bool]:
        return lambda: asked.append(1) or len(asked) > asks

    with pytest.raises(UpscaleCancelled):
        tile_runner.Runner(module, torch.device("cpu"), torch.bfloat16, False, cancel=cancel_after(3)).module(
            torch.bfloat16)
    assert len(asked) == 4  # stopped at the fourth tensor, long before the copy's end
    asked.clear()
    runner = tile_runner.Runner(module, torch.device("cpu"), torch.bfloat16, False, cancel=cancel_after(10**6))
    copied = runner.module(torch.bfloat16)
    runner.close()
    assert len(asked) == len([*module.parameters(), *module.buffers()])
    whole = copy.deepcopy(module).to(torch.bfloat16)
    assert all(p.dtype == torch.float32 for p in module.parameters())
    assert [(k, v.dtype) for k, v in copied.state_dict().items()] == [(k, v.dtype) for k, v in whole.state_dict().items()]
    assert all(torch.equal(a, b) for a, b in zip(copied.state_dict().values(), whole.state_dict().values(), strict=True))
    assert all(a.data_ptr() != b.data_ptr() for a, b in zip(copied.parameters(), module.parameters(), strict=True))
    image = torch.rand(1, 3, 12, 12, dtype=torch.bfloat16)
    with torch.inference_mode():
        assert torch.equal(copied(image), whole(image))


def test_calls_with_the_same_weights_share_one_cast_copy_and_changed_weights_get_a_new_one(
        tiny_compact, monkeypatch: pytest.MonkeyPatch) -> None:
    """An archive of small images is one call per image: the reduced-precision copy of the weights is made once,
    and again only once they change (an in-place update) or for another module with the same weights."""
    from realesr_core.upscaling import tile_runner

    copies = []
    cast_copy = tile_runner._cast_copy
    monkeypatch.setattr(tile_runner, "_cast_copy", lambda *args: copies.append(1) or cast_copy(*args))
    model = load_model(tiny_compact.module.state_dict())
    image = torch.rand(1, 3, 12, 12)
    first = upscale(model, image, precision="bf16").image
    assert torch.equal(upscale(model, image, precision="bf16").image, first) and len(copies) == 1
    with torch.no_grad():
        next(model.module.parameters()).mul_(0.5)
    changed = upscale(model, image, precision="bf16").image
    assert len(copies) == 2 and not torch.equal(changed, first)
    assert torch.equal(upscale(model, image, precision="bf16").image, changed) and len(copies) == 2
    same_weights = load_model(model.module.state_dict())
    assert torch.equal(upscale(same_weights, image, precision="bf16").image, changed) and len(copies) == 3
    assert all(not layer._forward_pre_hooks for layer in model.module.modules())


def test_a_copy_on_another_device_than_the_cpu_goes_with_its_call(tiny_compact) -> None:
    """On a GPU the cast copy is the call's working memory, which a host like ComfyUI expects back afterwards: it is
    not kept (the meta device stands in for the GPU)."""
    from realesr_core.upscaling import tile_runner

    runner = tile_runner.Runner(tiny_compact.module, torch.device("meta"), torch.bfloat16, False)
    assert runner.module(torch.bfloat16) is not tiny_compact.module
    runner.close()
    assert tile_runner.CAST_COPIES.take(tiny_compact.module, (torch.device("meta"), torch.bfloat16, False))[0] is None
