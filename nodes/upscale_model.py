"""The UPSCALE_MODEL value our nodes output: a real `spandrel.ImageModelDescriptor` (spandrel ships with ComfyUI),
so ComfyUI's own "Upscale Image (using Model)" and other packs accept it; the same duck-typed interface when spandrel
is missing. For our networks it wraps our module; for other architectures it is the descriptor spandrel loaded.
Inside ComfyUI it carries `.patcher`, the model patcher through which today's ComfyUI loads and offloads upscale
models, and always `.realesr`, our descriptor, so blend, save and upscale get every fact back."""

from __future__ import annotations

from typing import Any

import torch

from realesr_core import ModelDescriptor, load_model, upscale

from . import comfy_env

FACTS = "realesr"  # the attribute of an UPSCALE_MODEL that holds our descriptor


class DuckUpscaleModel:
    """What ComfyUI's upscale code uses of a spandrel descriptor: .model, .scale, .to(), a clamped call."""

    def __init__(self, descriptor: ModelDescriptor) -> None:
        self.model = descriptor.module
        self.scale = descriptor.scale
        self.input_channels = descriptor.in_channels
        self.output_channels = descriptor.out_channels
        self.supports_half = descriptor.supports_fp16
        self.supports_bfloat16 = descriptor.supports_bf16
        self.size_requirements = type("SizeRequirements", (), {"multiple_of": descriptor.size_multiple, "minimum": 0})()
        self.purpose = "SR" if descriptor.scale > 1 else "Restoration"

    def to(self, device: Any) -> "DuckUpscaleModel":
        self.model.to(device)
        return self

    @torch.inference_mode()
    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return upscale(engine_model(self), image, device=image.device, output_device=image.device,
                       precision="fp32").image


def to_upscale_model(descriptor: ModelDescriptor) -> Any:
    """The UPSCALE_MODEL for a model `load_model` gave, with a model patcher when ComfyUI is there."""
    model = descriptor.spandrel_descriptor or _spandrel_descriptor(descriptor)
    setattr(model, FACTS, descriptor)
    patcher = comfy_env.model_patcher(model.model)
    if patcher is not None:
        model.patcher = patcher
    return model


def _spandrel_descriptor(descriptor: ModelDescriptor) -> Any:
    try:
        import spandrel
    except ImportError:
        return DuckUpscaleModel(descriptor)
    return spandrel.ImageModelDescriptor(
        descriptor.module,
        descriptor.module.state_dict(),  # spandrel loads it back into the module, so the module's own keys
        _architecture(spandrel, descriptor.architecture),
        purpose="SR" if descriptor.scale > 1 else "Restoration",
        tags=list(descriptor.tags),
        supports_half=descriptor.supports_fp16,
        supports_bfloat16=descriptor.supports_bf16,
        scale=descriptor.scale,
        input_channels=descriptor.in_channels,
        output_channels=descriptor.out_channels,
        size_requirements=spandrel.SizeRequirements(multiple_of=descriptor.size_multiple),
    )


def _architecture(spandrel: Any, name: str) -> Any:
    class RealesrArchitecture(spandrel.Architecture):
        """Metadata for spandrel; loading goes through realesr_core.load_model."""

        def __init__(self) -> None:
            super().__init__(id=f"realesr.{name}", name=f"{name} (realesr)", detect=lambda state_dict: False)

        def load(self, state_dict: Any) -> Any:
            return to_upscale_model(load_model(state_dict))

    return RealesrArchitecture()


def engine_model(upscale_model: Any) -> ModelDescriptor | Any:
    """What the engine runs: our descriptor when our loader made the model, else the object itself (a spandrel
    descriptor from another loader, which the engine describes)."""
    if isinstance(upscale_model, ModelDescriptor):
        return upscale_model
    facts = getattr(upscale_model, FACTS, None)
    return facts if isinstance(facts, ModelDescriptor) else upscale_model


def realesr_descriptor(upscale_model: Any) -> ModelDescriptor:
    """Our descriptor for any UPSCALE_MODEL (blend and save need its canonical weights): another loader's model is
    loaded again from its state dict, as ours would have loaded its file."""
    found = engine_model(upscale_model)
    if isinstance(found, ModelDescriptor):
        return found
    module = getattr(upscale_model, "model", None)
    if not isinstance(module, torch.nn.Module):
        raise ValueError(f"not an upscale model: {type(upscale_model).__name__}")
    return load_model({k: v.detach().float().cpu() if v.is_floating_point() else v.cpu()
                       for k, v in module.state_dict().items()})
