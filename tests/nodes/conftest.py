"""ComfyUI stand-ins the node tests share."""

from __future__ import annotations

import sys
import types

import pytest
import torch


@pytest.fixture
def fake_comfy(monkeypatch: pytest.MonkeyPatch):
    """Just enough of ComfyUI to check the nodes' use of it: device, memory, and Cancel as ComfyUI does it (a flag
    that the progress bar's hook raises on, as InterruptProcessingException, and clears). `cancel_after` presses
    Cancel once that many progress updates went through (the bar's hook raises at the next update);
    `interrupt_after_checks` once the flag was read that often; `interrupt_after_updates` right after that many
    updates, so that the engine's own check, not the bar's hook, finds it (a cancel within a frame or tile).
    `raised_by` says who raised ComfyUI's interruption: the node ("node") or the bar's hook ("progress bar")."""
    calls = {"free": 0, "updates": [], "cancel_after": None, "loads": [], "interrupted": False, "checks": 0,
             "interrupt_after_checks": None, "interrupt_after_updates": None,
             "raised_by": None}

    class Interrupted(Exception):
        pass

    def throw_exception_if_processing_interrupted(by: str = "node"):
        if calls["interrupted"]:
            calls["interrupted"], calls["raised_by"] = False, by
            raise Interrupted("cancelled by the user")

    def processing_interrupted():
        calls["checks"] += 1
        limit = calls["interrupt_after_checks"]
        calls["interrupted"] = calls["interrupted"] or (limit is not None and calls["checks"] > limit)
        return calls["interrupted"]

    class ProgressBar:
        def __init__(self, total):
            self.total = total

        def update_absolute(self, value, total=None, preview=None):
            if calls["cancel_after"] is not None and len(calls["updates"]) >= calls["cancel_after"]:
                calls["interrupted"] = True
            throw_exception_if_processing_interrupted(by="progress bar")
            calls["updates"].append((value, total))
            if calls["interrupt_after_updates"] is not None and len(calls["updates"]) >= calls["interrupt_after_updates"]:
                calls["interrupted"] = True

    comfy = types.ModuleType("comfy")
    mm = types.ModuleType("comfy.model_management")
    mm.get_torch_device = lambda: torch.device("cpu")
    mm.intermediate_device = lambda: torch.device("cpu")
    mm.unet_offload_device = lambda: torch.device("cpu")
    mm.free_memory = lambda amount, device: calls.__setitem__("free", calls["free"] + 1)
    mm.load_models_gpu = lambda models, memory_required=0, force_full_load=False: calls["loads"].append(
        (models, memory_required, force_full_load))
    mm.processing_interrupted = processing_interrupted
    mm.throw_exception_if_processing_interrupted = throw_exception_if_processing_interrupted
    utils = types.ModuleType("comfy.utils")
    utils.ProgressBar = ProgressBar
    comfy.model_management, comfy.utils = mm, utils
    for name, module in (("comfy", comfy), ("comfy.model_management", mm), ("comfy.utils", utils)):
        monkeypatch.setitem(sys.modules, name, module)
    calls["Interrupted"] = Interrupted
    return calls
