"""Loading, saving and blending models.

`load_model` is the single entry point for every model source. Whatever goes wrong inside it (a broken file, a
hostile pickle, an unknown layout, a NaN weight) leaves it as a `ModelLoadError` that says what was found.
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..errors import ModelLoadError
from ..files import write_atomically
from . import registry, zoo
from .archs.discriminator import UNetDiscriminatorSN
from .archs.discriminator import read_hyperparameters as read_discriminator_hyperparameters
from .descriptor import ModelDescriptor, describe
from .ncnn import read_ncnn
from .rescaled import OutputRescaled
from .spec import ArchitectureSpec, Hyperparameters, StateDict
from .state_dict import extract_state_dict

ModelSource = Union[str, os.PathLike, Mapping, ModelDescriptor]

SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")
NCNN_SUFFIX = ".param"
FORMAT_KEY = "realesr.format"
FORMAT_VERSION = "1"


def load_model(source: ModelSource) -> ModelDescriptor:
    """Loads a model from a file path, a state dict, a bundled model name, or passes a descriptor through."""
    if isinstance(source, ModelDescriptor):
        return source
    try:
        if isinstance(source, Mapping):
            return _from_state_dict(extract_state_dict(source), {}, source="state dict", name=None)
        if isinstance(source, (str, os.PathLike)):
            return _load_path_or_name(source)
        raise ModelLoadError(f"a model source is a path, a name or a state dict, not {type(source).__name__}")
    except ModelLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - the contract: nothing but ModelLoadError leaves load_model
        raise ModelLoadError(f"cannot load model from {_describe(source)}: {type(exc).__name__}: {exc}") from exc


def _describe(source: Any) -> str:
    return str(source) if isinstance(source, (str, os.PathLike)) else type(source).__name__


def _load_path_or_name(source: str | os.PathLike) -> ModelDescriptor:
    path = Path(source)
    if path.exists():
        return _load_file(path)
    pretrained = zoo.resolve_name(str(source))
    if pretrained is not None:
        return _load_pretrained(pretrained)
    raise ModelLoadError(
        f"{str(source)!r} is neither an existing file nor a bundled model; bundled: {', '.join(zoo.PRETRAINED)}"
    )


def _load_file(path: Path) -> ModelDescriptor:
    if path.is_dir():
        raise ModelLoadError(f"{path} is a directory; expected a model file")
    if path.stat().st_size == 0:
        raise ModelLoadError(f"{path} is an empty file")
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        state, metadata = _read_safetensors(path)
        return _from_state_dict(state, metadata, source=str(path), name=metadata.get("name"))
    if suffix in PICKLE_SUFFIXES:
        state = extract_state_dict(_read_pickle(path))
        return _from_state_dict(state, {}, source=str(path), name=None)
    if suffix == NCNN_SUFFIX:
        ncnn = read_ncnn(path, path.with_suffix(".bin"))
        return _from_state_dict(ncnn.state_dict, {}, source=str(path), name=None, output_rescale=ncnn.output_rescale)
    accepted = ", ".join(SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES + (NCNN_SUFFIX,))
    raise ModelLoadError(f"{path.name}: unknown model file type {suffix or '(none)'}; accepted: {accepted}")


def _read_safetensors(path: Path) -> tuple[StateDict, dict[str, str]]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = dict(handle.metadata() or {})
            state = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"{path.name} is not a valid safetensors file: {exc}") from exc
    return state, metadata


def _read_pickle(path: Path) -> Any:
    """`weights_only=True` lets the unpickler build tensors and plain containers only: no code in the file runs."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's message advises weights_only=False, which we never do; what it found follows "WeightsUnpickler error:"
        text = str(exc)
        found = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation")[0] if (
            "WeightsUnpickler error:" in text) else text.splitlines()[0]
        raise ModelLoadError(
            f"{path.name} was refused: it is no pickle of tensors and plain containers, the only kind loaded (never "
            f"code): {' '.join(found.split())}"
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{path.name} is not a readable PyTorch checkpoint (truncated or damaged?): {exc}") from exc


def _from_state_dict(
    state: StateDict,
    metadata: Mapping[str, str],
    *,
    source: str,
    name: str | None,
    output_rescale: float | None = None,
) -> ModelDescriptor:
    if FORMAT_KEY in metadata:
        spec, hyperparameters = _read_metadata(metadata)
        output_rescale = float(metadata["output_rescale"]) if metadata.get("output_rescale") else None
    else:
        try:
            canonical = registry.canonicalize(state)
            found = registry.recognise(canonical)
        except ModelLoadError as exc:  # like one of ours, but not quite: maybe a look-alike of another architecture
            return _other_architecture(state, source=source, name=name, ours=exc)
        if found is None:
            return _other_architecture(state, source=source, name=name)
        state, (spec, hyperparameters) = canonical, found
    network = _build(spec, hyperparameters)
    _check_state(network, state, spec.name)
    network.load_state_dict({k: v.float() for k, v in state.items()})
    return _describe_network(network, spec, hyperparameters, source=source, name=name, output_rescale=output_rescale)


def _other_architecture(state: StateDict, *, source: str, name: str | None,
                        ours: ModelLoadError | None = None) -> ModelDescriptor:
    """A model of an architecture outside the ESRGAN family (SwinIR, HAT, SPAN, DnCNN, ...), loaded by spandrel as
    ComfyUI's own loader does, and described so that the engine runs it through spandrel's call. `ours`: why our
    families refused a state dict that looked like one of them (said again if spandrel cannot load it either)."""
    where = f"{Path(source).name}: " if os.path.isfile(source) else ""
    try:
        import spandrel
    except ImportError:
        hint = "pip install 'realesr[spandrel]' (or pip install spandrel)"
        if ours is not None:
            raise ModelLoadError(f"{where}{ours} (a model of another architecture loads with spandrel: {hint})") \
                from None
        raise ModelLoadError(f"{where}not an ESRGAN-family model (expected {registry.expected_keys()}; found "
                             f"{registry.describe_keys(state)}): another architecture, which needs spandrel: "
                             f"{hint}") from None
    _check_finite(state)
    try:
        loaded = spandrel.ModelLoader(device="cpu").load_from_state_dict(state)
    except spandrel.UnsupportedModelError:
        if ours is not None:
            raise ModelLoadError(f"{where}{ours}") from None
        raise ModelLoadError(f"{where}unrecognised model: neither {registry.expected_keys()} nor an architecture "
                             f"spandrel {spandrel.__version__} knows; found {registry.describe_keys(state)}") from None
    except Exception as exc:  # noqa: BLE001 - spandrel's own errors vary by architecture
        raise ModelLoadError(f"{where}{ours or 'not an ESRGAN-family model'}; spandrel took it for another "
                             f"architecture but could not load it: {type(exc).__name__}: {exc}") from exc
    if not isinstance(loaded, spandrel.ImageModelDescriptor):
        raise ModelLoadError(f"{where}{loaded.architecture.name} is not an upscale model: it takes an image and a mask "
                             f"(inpainting)")
    loaded.model.eval().requires_grad_(False)
    return describe(loaded, source=source, name=name)


def new_model(architecture: str, **hyperparameters: Any) -> ModelDescriptor:
    """A freshly initialised network (to train from scratch): `architecture` is a registered name or alias, and
    `scale=` works for every family."""
    spec = registry.get_spec(architecture)
    if "scale" in hyperparameters and spec.scale_keyword != "scale":
        hyperparameters[spec.scale_keyword] = hyperparameters.pop("scale")
    network = _build(spec, hyperparameters)
    # the full keyword set, as loading a saved copy reads it back (given ones win: some are not in the weights)
    complete = {**spec.read_hyperparameters(network.state_dict()), **hyperparameters}
    label = ",".join(f"{key}={value}" for key, value in hyperparameters.items())
    return _describe_network(network, spec, complete, source=f"new:{spec.name}:{label}", name=None)


def _describe_network(network: torch.nn.Module, spec: ArchitectureSpec, hyperparameters: Hyperparameters, *,
                      source: str, name: str | None, output_rescale: float | None = None) -> ModelDescriptor:
    module = OutputRescaled(network, output_rescale) if output_rescale else network
    module.eval().requires_grad_(False)
    return ModelDescriptor(
        module=module,
        architecture=spec.name,
        hyperparameters=hyperparameters,
        scale=module.scale,
        in_channels=network.num_in_ch,
        out_channels=network.num_out_ch,
        size_multiple=spec.size_multiple(hyperparameters),
        supports_fp16=spec.supports_fp16,
        supports_bf16=spec.supports_bf16,
        source=source,
        name=name,
        output_rescale=output_rescale,
        tags=spec.tags(hyperparameters),
    )


def _build(spec: ArchitectureSpec, hyperparameters: Hyperparameters) -> torch.nn.Module:
    try:
        network = spec.build(**hyperparameters)
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(f"{spec.name} cannot be built with {hyperparameters}: {exc}") from exc
    missing = [name for name in ("scale", "num_in_ch", "num_out_ch") if not hasattr(network, name)]
    if missing:
        raise ModelLoadError(f"{spec.name}'s network has no {', '.join(missing)} attribute (every architecture needs them)")
    return network


def _read_metadata(metadata: Mapping[str, str]) -> tuple[ArchitectureSpec, Hyperparameters]:
    spec = registry.get_spec(metadata.get("architecture", ""))
    try:
        hyperparameters = json.loads(metadata.get("hyperparameters", ""))
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"metadata hyperparameters are not valid JSON: {exc}") from exc
    if not isinstance(hyperparameters, dict):
        raise ModelLoadError("metadata hyperparameters should be a JSON object")
    return spec, hyperparameters


def _check_state(network: torch.nn.Module, state: StateDict, architecture: str) -> None:
    expected = {k: tuple(v.shape) for k, v in network.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{k}: {list(state[k].shape)} (expected {list(s)})" for k, s in expected.items()
             if k in state and tuple(state[k].shape) != s]
    problems = []
    if missing:
        problems.append(f"missing keys {_few(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_few(unexpected)}")
    if wrong:
        problems.append(f"wrong shapes {_few(wrong)}")
    if problems:
        raise ModelLoadError(f"state dict does not fit the detected {architecture}: " + "; ".join(problems))
    for key, tensor in state.items():
        if not tensor.is_floating_point():
            raise ModelLoadError(f"{key} has dtype {tensor.dtype}; expected floating-point weights")
    _check_finite(state)


def _check_finite(state: StateDict) -> None:
    """A damaged file's NaN or infinity named by key. Every tensor's largest magnitude comes from one fused pass
    (`_foreach_norm`): a check per tensor took seconds for x4plus's 702 tensors on a busy CPU, with no Cancel."""
    floats = {key: tensor for key, tensor in state.items() if tensor.is_floating_point() and tensor.numel()}
    if not floats:
        return
    peaks = torch.stack([peak.float() for peak in torch._foreach_norm(list(floats.values()), float("inf"))])
    if not bool(torch.isfinite(peaks).all()):
        key = next(key for key, peak in zip(floats, peaks, strict=True) if not torch.isfinite(peak))
        raise ModelLoadError(f"{key} contains NaN or infinite values: the file is damaged")


def _few(items: list[str], limit: int = 4) -> str:
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def save_model(model: ModelSource, path: str | os.PathLike) -> Path:
    """Writes canonical safetensors whose metadata carries the architecture, so loading needs no guessing (a model of
    another architecture: its weights as spandrel loads them, detected again on loading)."""
    descriptor = load_model(model)
    path = Path(path)
    metadata = {
        **_metadata_for(descriptor),
        "scale": str(descriptor.scale),
        "name": descriptor.name or path.stem,
        "source": descriptor.source,
    }
    # weights as float32, index buffers as they are; each tensor its own copy (safetensors refuses shared storage)
    state = {k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype).clone(
        memory_format=torch.contiguous_format) for k, v in descriptor.state_dict().items()}
    # ".tmp": ComfyUI lists model folders by extension, and must not offer a model that is still being written
    return write_atomically(path, lambda temporary: save_file(state, str(temporary), metadata=metadata), ".tmp")


def interpolate_models(model_a: ModelSource, model_b: ModelSource, weight_a: float) -> ModelDescriptor:
    """Deep network interpolation: every weight becomes weight_a * a + (1 - weight_a) * b.

    Real-ESRGAN's denoise-strength control blends realesr-general-x4v3 (a) with its -wdn sibling (b) this way.
    Models of other architectures (spandrel's) blend the same way when their weights have the same names and shapes.
    """
    a, b = load_model(model_a), load_model(model_b)
    state_a, state_b = a.state_dict(), b.state_dict()
    same_weights = {k: tuple(v.shape) for k, v in state_a.items()} == {k: tuple(v.shape) for k, v in state_b.items()}
    if (a.architecture, a.hyperparameters, a.output_rescale) != (b.architecture, b.hyperparameters, b.output_rescale) \
            or not same_weights:
        raise ModelLoadError(f"cannot blend different networks: {a!r} and {b!r}")
    if not 0.0 <= weight_a <= 1.0:
        raise ModelLoadError(f"blend weight must be within 0..1, got {weight_a}")
    # integer buffers (index tables of attention models) are structure, not weights: a's are kept
    blended = {k: weight_a * v + (1.0 - weight_a) * state_b[k] if v.is_floating_point() else v
               for k, v in state_a.items()}
    source = f"{a.source} x {weight_a:g} + {b.source} x {1 - weight_a:g}"
    return _from_state_dict(blended, _metadata_for(a), source=source, name=None)


def _metadata_for(descriptor: ModelDescriptor) -> dict[str, str]:
    """What `_from_state_dict` needs to rebuild the network without detection; for another architecture (which
    spandrel detects from the weights themselves) only its name, for people reading the file."""
    if descriptor.spandrel_descriptor is not None:
        return {"architecture": descriptor.architecture}
    return {
        FORMAT_KEY: FORMAT_VERSION,
        "architecture": descriptor.architecture,
        "hyperparameters": json.dumps(descriptor.hyperparameters, sort_keys=True),
        "output_rescale": "" if descriptor.output_rescale is None else repr(descriptor.output_rescale),
    }


def _load_pretrained(pretrained: zoo.PretrainedModel) -> ModelDescriptor:
    cached = zoo.cached_file(pretrained)
    if cached.exists():
        try:
            return _load_file(cached)
        except ModelLoadError:
            pass  # a damaged cache entry is rebuilt from the package below
    packaged = zoo.packaged_param_file(pretrained)
    if packaged is None:
        raise ModelLoadError(zoo.missing_reason(pretrained))
    param, package = packaged
    ncnn = read_ncnn(param, param.with_suffix(".bin"))
    descriptor = _from_state_dict(ncnn.state_dict, {}, source=f"{package.requirement}:{param.name}",
                                  name=pretrained.name, output_rescale=ncnn.output_rescale)
    try:
        save_model(descriptor, cached)
    except OSError:
        pass  # a read-only cache only costs a re-conversion next time
    descriptor.source = str(cached) if cached.exists() else descriptor.source
    return descriptor


def load_discriminator(source: str | os.PathLike | Mapping) -> UNetDiscriminatorSN:
    """A UNetDiscriminatorSN from a file (safetensors, or a weights-only pickle such as the official `*_netD.pth`,
    any wrapper) or a state dict; every key and shape is checked."""
    try:
        if isinstance(source, Mapping):
            state = extract_state_dict(source)
        else:
            path = Path(source)
            if not path.is_file():
                raise ModelLoadError(f"{path} is not a file")
            if path.suffix.lower() in SAFETENSORS_SUFFIXES:
                state = _read_safetensors(path)[0]
            else:
                state = extract_state_dict(_read_pickle(path))
        if "conv0.weight" not in state or "conv9.weight" not in state:
            sample = ", ".join(sorted(state)[:6])
            raise ModelLoadError(f"not a UNetDiscriminatorSN (expected conv0 .. conv9 with spectral norm); found keys "
                                 f"such as {sample}")
        network = UNetDiscriminatorSN(**read_discriminator_hyperparameters(state))
        _check_state(network, state, "UNetDiscriminatorSN")
        network.load_state_dict({k: v.float() for k, v in state.items()})
        return network
    except ModelLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - the contract: nothing but ModelLoadError leaves a loader
        raise ModelLoadError(f"cannot load a discriminator from {_describe(source)}: {type(exc).__name__}: {exc}") \
            from exc

