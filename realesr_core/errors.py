"""The exceptions realesr raises on purpose.

Callers (the command line, the ComfyUI nodes) catch these to show a message instead of a traceback, so every
failure that is the user's input rather than our bug is one of these.
"""

import torch


class RealESRError(Exception):
    """Base of every error realesr raises on purpose."""


class ModelLoadError(RealESRError, ValueError):
    """A model source could not be turned into a working network: says what was found and what was expected."""


class ImageError(RealESRError, ValueError):
    """An input image (file or tensor) is unusable: empty, wrong rank or channels, NaN, unreadable."""


class UpscaleCancelled(RealESRError):
    """The caller's cancel check asked to stop; no partial result is returned."""


class UpscaleOutOfMemory(RealESRError, torch.cuda.OutOfMemoryError):
    """Even the smallest tiles did not fit. A torch out-of-memory error too, so hosts that handle those (ComfyUI
    unloads models and shows its advice) treat it as one."""
