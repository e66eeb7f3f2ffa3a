"""What the device can do: free memory, native reduced precision, and whether an error means out of memory."""

from __future__ import annotations

import functools
from pathlib import Path

import torch

CPU_BUDGET_CAP = 1 << 30  # a CPU gains nothing from huge tiles; this keeps a 4K output under 2 GB RSS
FALLBACK_AVAILABLE = 4 << 30


def available_memory(device: torch.device) -> int:
    """Bytes that can still be allocated: CUDA's free memory, or the system's available RAM."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return FALLBACK_AVAILABLE


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


def auto_dtype(device: torch.device, supports_fp16: bool, supports_bf16: bool) -> torch.dtype:
    if device.type == "cuda":
        if supports_fp16:
            return torch.float16
        if supports_bf16 and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if device.type == "cpu" and supports_bf16 and cpu_has_native_bf16():
        return torch.bfloat16
    return torch.float32


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA's OutOfMemoryError and the CPU allocator's RuntimeError alike."""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    text = str(error)
    return isinstance(error, (RuntimeError, MemoryError)) and (
        "out of memory" in text or "can't allocate memory" in text or isinstance(error, MemoryError)
    )


def release_cached(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
