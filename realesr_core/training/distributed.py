"""The distributed set-up of a run under torchrun: joining the process group, each process's rank and device, the
DistributedDataParallel wrappers, and the agreements every rank must make together (barriers, stopping at the
same step). On one process every function here is a no-op."""

from __future__ import annotations

import contextlib

import torch
import torch.distributed as dist
from torch import nn


def start_distributed(local_rank: int, device: str = "") -> None:
    """Joins the process group torchrun set up (its address and rank come from torchrun's environment): NCCL on
    GPUs, where each process takes the GPU of its local rank, gloo on CPUs. The command line calls this when it runs
    under torchrun; a library caller does the same, or starts a group of its own."""
    cuda = torch.cuda.is_available() and not device.startswith("cpu")
    if cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")


def in_group() -> bool:
    return dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def rank_world_device(device: str) -> tuple[int, int, torch.device]:
    """This process's rank, the number of processes and the device it trains on (`device`, or CUDA when there is
    one, on a single process)."""
    if in_group():
        chosen = (torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl"
                  else torch.device("cpu"))
        return dist.get_rank(), dist.get_world_size(), chosen
    return 0, 1, torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def barrier() -> None:
    if in_group():
        dist.barrier()


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when it is true on any: every rank stops at the same step, or the others would wait
    forever."""
    if not in_group():
        return flag
    tensor = torch.tensor([float(flag)], device=device if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(tensor)
    return bool(tensor.item())


def distributed(network: nn.Module, broadcast_buffers: bool) -> nn.Module:
    """`network` in DistributedDataParallel under torchrun, else itself."""
    if not in_group():
        return network
    device = next(network.parameters()).device
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(network, device_ids=device_ids, broadcast_buffers=broadcast_buffers)


def no_sync(network: nn.Module, last: bool) -> contextlib.AbstractContextManager:
    """DDP reduces gradients only on the last micro-batch; the others accumulate locally."""
    if last or not isinstance(network, nn.parallel.DistributedDataParallel):
        return contextlib.nullcontext()
    return network.no_sync()
