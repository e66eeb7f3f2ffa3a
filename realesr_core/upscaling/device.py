"""What the device can do: free memory, native reduced precision, and whether an error means out of memory."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch

CPU_BUDGET_CAP = 1 << 30  # a CPU gains nothing from huge tiles; this keeps a 4K output under 2 GB RSS
FALLBACK_AVAILABLE = 4 << 30


def available_memory(device: torch.device) -> int:
    """Bytes that can still be allocated: CUDA's free memory plus what PyTorch's caching allocator holds but no
    tensor uses (as ComfyUI counts it; without it every image after the first gets smaller tiles), or the system's
    available RAM."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        stats = torch.cuda.memory_stats(device)
        cached = stats.get("reserved_bytes.all.current", 0) - stats.get("active_bytes.all.current", 0)
        return int(free + max(0, cached))
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return FALLBACK_AVAILABLE


def usable_cpus() -> int:
    """The cores a CPU run should use now: those this process may run on (its affinity, a container's CPU quota) less
    those other processes keep busy (the one-minute load average). OpenMP threads beyond the free cores wait on each
    other at every layer: on a busy 2-core host two threads ran 3-10x slower per image than one (issue 24)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    cores = min(cores, _cpu_quota() or cores)
    try:
        busy = os.getloadavg()[0]
    except OSError:
        busy = 0.0
    return max(1, min(cores, round(cores - busy)))


def _cpu_quota() -> int | None:
    """Whole cores a cgroup (v2, else v1) quota allows this process, or None without a quota."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        try:
            quota = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text().strip()
            period = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    if quota in ("max", "-1"):
        return None
    return max(1, int(quota) // int(period))


def memory_budget(device: torch.device) -> int:
    """Bytes the engine lets one forward pass use."""
    if device.type == "cuda":
        return int(available_memory(device) * 0.7)
    return int(min(available_memory(device) * 0.4, CPU_BUDGET_CAP))


@functools.cache
def cpu_has_native_bf16() -> bool:
    """AVX512_BF16 or AMX: the CPUs on which bf16 convolutions are faster than fp32 instead of slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


FP16_CAPABILITY = (7, 0)  # tensor cores; below it (Pascal and older) fp16 is slow or broken, ComfyUI avoids it too
BF16_CAPABILITY = (8, 0)  # cuDNN runs bf16 convolutions natively from Ampere on; earlier cards only emulate it


# The two "auto" precision rules, asked of the device that computes (its own capability, not the current device's).


def inference_dtype(device: torch.device, supports_fp16: bool = True, supports_bf16: bool = True) -> torch.dtype:
    """Upscaling's `auto`: fp16 where the card runs it well (more mantissa than bf16, and no loss scaling is needed
    for a forward pass), else bf16 where the card has it natively, else fp32; bf16 on CPUs with native bf16."""
    if device.type == "cuda":
        if supports_fp16 and _has_fast_fp16(device):
            return torch.float16
        if supports_bf16 and _has_native_bf16(device):
            return torch.bfloat16
        return torch.float32
    if device.type == "cpu" and supports_bf16 and cpu_has_native_bf16():
        return torch.bfloat16
    return torch.float32


def training_dtype(device: torch.device) -> torch.dtype:
    """Training's `auto`: bf16 where the card has it natively (no loss scaling), fp16 with a GradScaler on cards
    with fast fp16 but no native bf16 (T4, V100, RTX 20xx: `torch.cuda.is_bf16_supported()` says True there
    because it counts emulation), else fp32; bf16 on CPUs with native bf16."""
    if device.type == "cuda":
        if _has_native_bf16(device):
            return torch.bfloat16
        return torch.float16 if _has_fast_fp16(device) else torch.float32
    return torch.bfloat16 if device.type == "cpu" and cpu_has_native_bf16() else torch.float32


def _has_fast_fp16(device: torch.device) -> bool:
    return torch.cuda.get_device_capability(device) >= FP16_CAPABILITY and not _broken_fp16(device)


def _has_native_bf16(device: torch.device) -> bool:
    return torch.cuda.get_device_capability(device) >= BF16_CAPABILITY


# Turing cards without working fp16 (capability 7.5 all the same): the GTX 16 series and its workstation and mobile
# relatives, as ComfyUI lists them.
BROKEN_FP16_CARDS = ("1660", "1650", "1630", "T500", "T550", "T600", "MX550", "MX450", "CMP 30HX", "T2000", "T1000",
                     "T1200")


def _broken_fp16(device: torch.device) -> bool:
    name = torch.cuda.get_device_name(device)
    return any(model in name for model in BROKEN_FP16_CARDS)


# Allocation failures that surface as other errors: cuDNN and cuBLAS running out of workspace memory, the CPU
# allocator. Each means "smaller tiles would fit", not "the model is broken".
OUT_OF_MEMORY_MESSAGES = ("out of memory", "can't allocate memory", "CUDNN_STATUS_ALLOC_FAILED",
                          "CUBLAS_STATUS_ALLOC_FAILED", "GET was unable to find an engine",
                          "Unable to find a valid cuDNN algorithm")


def is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(error, RuntimeError) and any(message in str(error) for message in OUT_OF_MEMORY_MESSAGES)


def release_cached(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
