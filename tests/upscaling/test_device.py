"""Device facts, tested against fake device properties: precision per card, free memory, out-of-memory errors, and
how often an upscale makes the host wait for the device."""

from __future__ import annotations

import pytest
import torch
from torch.overrides import TorchFunctionMode

from realesr_core import upscale
from realesr_core.upscaling import device

from helpers import photo, to_tensor

CUDA = torch.device("cuda", 1)


@pytest.fixture
def fake_card(monkeypatch: pytest.MonkeyPatch):
    """A CUDA card with the given capability and name; asking about any other device than the target fails."""
    def install(capability: tuple[int, int], name: str) -> None:
        def checked(value):
            def query(target=None):
                assert torch.device(target) == CUDA, "asked about another device than the target"
                return value
            return query

        monkeypatch.setattr(torch.cuda, "get_device_capability", checked(capability))
        monkeypatch.setattr(torch.cuda, "get_device_name", checked(name))

    return install


@pytest.mark.parametrize("capability,name,fp16,bf16,expected", [
    ((9, 0), "NVIDIA H100 80GB HBM3", True, True, torch.float16),
    ((8, 6), "NVIDIA GeForce RTX 3060", False, True, torch.bfloat16),  # a model without fp16 support
    ((7, 5), "NVIDIA GeForce RTX 2060", True, True, torch.float16),
    ((7, 5), "NVIDIA GeForce GTX 1660 SUPER", True, True, torch.float32),  # broken fp16, no bf16 before Ampere
    ((7, 5), "NVIDIA GeForce RTX 2060", False, True, torch.float32),  # bf16 only emulated on Turing
    ((6, 1), "NVIDIA GeForce GTX 1080", True, True, torch.float32),  # Pascal: fp16 slow or broken
])
def test_auto_precision_follows_the_target_card(fake_card, capability, name, fp16, bf16, expected) -> None:
    fake_card(capability, name)
    assert device.inference_dtype(CUDA, fp16, bf16) == expected


def test_free_memory_counts_what_the_caching_allocator_holds_unused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda target: (2 << 30, 6 << 30))
    monkeypatch.setattr(torch.cuda, "memory_stats", lambda target: {
        "reserved_bytes.all.current": 3 << 30, "active_bytes.all.current": 1 << 30})
    assert device.available_memory(CUDA) == 4 << 30


@pytest.mark.parametrize("error,expected", [
    (torch.cuda.OutOfMemoryError("CUDA out of memory"), True),
    (RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"), True),
    (RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"), True),
    (RuntimeError("GET was unable to find an engine to execute this computation"), True),
    (MemoryError(), True),
    (RuntimeError("Given groups=1, weight of size [64, 3, 3, 3], expected input to have 3 channels"), False),
    (ValueError("out of memory"), False),
])
def test_out_of_memory_errors_are_recognised(error: BaseException, expected: bool) -> None:
    assert device.is_out_of_memory(error) == expected


class HostWaits(TorchFunctionMode):
    """Counts the calls that make the host wait for the device: reading values (bool, item, tolist), copies to the
    host (cpu, numpy) and blocking copies between devices."""

    WAITING = {"__bool__", "item", "tolist", "cpu", "numpy"}

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in self.WAITING:
            self.waits.append(name)
        elif name in ("to", "copy_") and not kwargs.get("non_blocking", False):
            source = args[0]
            target = args[1] if len(args) > 1 else kwargs.get("device")
            target_device = target.device if isinstance(target, torch.Tensor) else target
            if isinstance(target_device, (str, torch.device)) and torch.device(target_device) != source.device:
                self.waits.append(name)
        return func(*args, **kwargs)


@pytest.mark.parametrize("precision,per_batch", [("bf16", 1), ("fp32", 0)])
def test_one_wait_per_batch_of_tiles_at_most(compact, precision: str, per_batch: int) -> None:
    """The NaN / black check of reduced precision reads one value list per batch of tiles; fp32 reads nothing; the
    input check once per call."""
    frames = torch.cat([to_tensor(photo(64, top=t)) for t in (0, 50)])
    with HostWaits() as counted:
        result = upscale(compact, frames, tile=32, tiles_per_forward=2, precision=precision)
    batches = result.tile_count // 2
    assert counted.waits.count("tolist") == per_batch * batches
    assert len(counted.waits) <= per_batch * batches + 1, counted.waits


@pytest.mark.parametrize(("cores", "quota", "load", "expected"), [
    (8, None, 0.2, 8),  # an idle machine: every core
    (8, 2, 0.0, 2),  # a container's quota of two cores
    (2, None, 1.6, 1),  # a busy 2-core host: one thread, never none
    (4, None, 9.0, 1),
])
def test_a_cpu_run_takes_the_free_cores(monkeypatch: pytest.MonkeyPatch, cores, quota, load, expected) -> None:
    monkeypatch.setattr(device.os, "sched_getaffinity", lambda _pid: set(range(cores)), raising=False)
    monkeypatch.setattr(device, "_cpu_quota", lambda: quota)
    monkeypatch.setattr(device.os, "getloadavg", lambda: (load, load, load))
    assert device.usable_cpus() == expected
