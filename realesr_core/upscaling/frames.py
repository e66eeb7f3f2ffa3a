"""Frames onto the compute device and finished frames off it, overlapped with the network's forwards.

On a GPU with the images and the result on the host, each chunk of frames is uploaded from pinned memory without
blocking (the next chunk while the current one computes), assembled, resized and clipped on the device, copied back
into a reused pinned buffer on a side stream, and copied into the result on the host while the next chunk's forward
runs: one host pass per frame, none of it on the GPU's critical path. Everything else (a CPU, an output on the
device) takes the direct path: a result assembled where the output lives is the output itself.
"""

from __future__ import annotations

from collections import deque

import torch


class FramePipeline:
    """Uploads the frames of `image` to `device` and delivers finished frames into `output`."""

    def __init__(self, image: torch.Tensor, output: torch.Tensor, device: torch.device) -> None:
        self.image, self.output, self.device = image, output, device
        self.cuda = device.type == "cuda"
        if self.cuda:
            # Streams and events of the compute device, whichever device is current (cuda:1 with cuda:0 current).
            self.compute_stream = torch.cuda.current_stream(device)
            self.copy_stream = torch.cuda.Stream(device)
        self.prefetched: dict[int, tuple[torch.Tensor, torch.cuda.Event | None]] = {}
        self.next_chunk: tuple[int, int] | None = None
        self.pending: deque[tuple[torch.Tensor, torch.Tensor, torch.cuda.Event]] = deque()
        self.free_buffers: list[torch.Tensor] = []

    def input(self, start: int, count: int) -> torch.Tensor:
        """Frames start..start+count on the compute device, in fp32; the next chunk is uploaded by `between`."""
        tensor, ready = self.prefetched.pop(start, None) or self._upload(start, count)
        if ready is not None:
            self.compute_stream.wait_event(ready)
            tensor.record_stream(self.compute_stream)
        self.next_chunk = (start + count, count)
        return tensor.float()

    def between(self) -> None:
        """Host work while a forward runs: finished frames into the output, the next chunk onto the device."""
        while self.pending:
            self._deliver_oldest()
        if self.next_chunk is not None:
            start, count = self.next_chunk
            self.next_chunk = None
            if start < self.image.shape[0] and start not in self.prefetched:
                self.prefetched[start] = self._upload(start, min(count, self.image.shape[0] - start))

    def destination(self, start: int, count: int) -> torch.Tensor | None:
        """The output's own frames where the compute device holds the output (tiles are assembled in place)."""
        return self.output[start : start + count] if self.output.device == self.device else None

    def deliver(self, start: int, frames: torch.Tensor) -> None:
        """Finished frames `[count, C, H', W']` (on the compute device, the output's dtype) into the output."""
        target = self.output[start : start + frames.shape[0]]
        if frames.data_ptr() == target.data_ptr():
            return  # assembled in place
        if not (self.cuda and self.output.device.type == "cpu"):
            target.copy_(frames)
            return
        while len(self.pending) > 1:  # two pinned buffers in flight at most
            self._deliver_oldest()
        buffer = self._pinned_like(frames)
        finished = torch.cuda.Event()
        finished.record(self.compute_stream)
        self.copy_stream.wait_event(finished)
        with torch.cuda.stream(self.copy_stream):
            buffer.copy_(frames, non_blocking=True)
            copied = torch.cuda.Event()
            copied.record(self.copy_stream)
        frames.record_stream(self.copy_stream)  # not reused by the compute stream before the copy is done
        self.pending.append((target, buffer, copied))

    def finish(self) -> None:
        while self.pending:
            self._deliver_oldest()

    def _upload(self, start: int, count: int) -> tuple[torch.Tensor, torch.cuda.Event | None]:
        source = self.image[start : start + count]
        if source.device == self.device:
            return source, None
        if not (self.cuda and source.device.type == "cpu"):
            return source.to(self.device), None
        pinned = source.pin_memory()  # the caching host allocator keeps it until the copy is done
        with torch.cuda.stream(self.copy_stream):
            tensor = pinned.to(self.device, non_blocking=True)
            ready = torch.cuda.Event()
            ready.record(self.copy_stream)
        return tensor, ready

    def _pinned_like(self, frames: torch.Tensor) -> torch.Tensor:
        for index, buffer in enumerate(self.free_buffers):
            if buffer.shape == frames.shape and buffer.dtype == frames.dtype:
                return self.free_buffers.pop(index)
        # The frames' own layout (channels-last, as the output): the copies into and out of it are plain copies.
        return torch.empty_strided(frames.shape, frames.stride(), dtype=frames.dtype, pin_memory=True)

    def _deliver_oldest(self) -> None:
        target, buffer, copied = self.pending.popleft()
        copied.synchronize()
        target.copy_(buffer)
        self.free_buffers = [buffer, *self.free_buffers][:2]
