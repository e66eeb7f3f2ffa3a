"""The optional extras (video, training, ray, export) are imported only where they are used; a missing one is an
error that says what needed it and which extra installs it."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import RealESRError

# extra -> (what it is called, its own pip requirement)
EXTRAS = {"video": ("PyAV", "av"), "training": ("torchvision", "torchvision"), "ray": ("Ray", "'ray[client]'"),
          "export": ("onnx, onnxruntime and ncnn", "onnx onnxruntime ncnn")}


def import_extra(module: str, extra: str, purpose: str) -> ModuleType:
    """`module`, imported; `purpose` names what needs it in the error."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        name, requirement = EXTRAS[extra]
        raise RealESRError(f"{purpose} needs {name}: pip install 'realesr[{extra}]' (or pip install "
                           f"{requirement})") from exc
