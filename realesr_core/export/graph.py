"""Our networks as a flat list of operations, the form both writers (ONNX and ncnn) emit from.

Each builder mirrors its network's `forward` operation by operation, with the canonical weights, so a writer only
translates operations one by one and never needs to know the architecture. Only networks whose forward we know
exactly are built: a subclass (which may override `forward`) or another loader's network is refused, never guessed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Union

import torch

from ..errors import RealESRError
from ..models import ModelDescriptor
from ..models.archs import RRDBNet, SRVGGNetCompact
from ..models.archs.rrdbnet import LEAKY_SLOPE, RESIDUAL_SCALE
from ..models.ncnn import fold_pixel_unshuffle
from ..models.rescaled import OutputRescaled

INPUT = "data"  # the blob names realesrgan-ncnn-vulkan and Upscayl feed and read
OUTPUT = "output"


class ExportError(RealESRError, ValueError):
    """A model or an option that an exported file cannot express."""


@dataclass(frozen=True)
class Conv:
    """A square convolution with bias. `activation_slope`: None for none, 0.0 for ReLU, else LeakyReLU's slope."""

    name: str
    input: str
    output: str
    weight: torch.Tensor
    bias: torch.Tensor
    stride: int = 1
    padding: int = 1
    activation_slope: float | None = None


@dataclass(frozen=True)
class PReLU:
    name: str
    input: str
    output: str
    slopes: torch.Tensor


@dataclass(frozen=True)
class Concat:
    """Along the channels, in the order given."""

    name: str
    inputs: tuple[str, ...]
    output: str


@dataclass(frozen=True)
class ScaledAdd:
    """`scale * branch + skip` (a plain sum when scale is 1)."""

    name: str
    branch: str
    skip: str
    output: str
    scale: float = 1.0


@dataclass(frozen=True)
class Resize:
    """Nearest (integer factors) or bicubic (a = -0.75, half-pixel centres, as torch's `bicubic`) resampling."""

    name: str
    input: str
    output: str
    factor: float
    mode: str  # "nearest" or "bicubic"


@dataclass(frozen=True)
class PixelShuffle:
    """torch's `pixel_shuffle`: channel c * f^2 + i * f + j goes to row offset i, column offset j."""

    name: str
    input: str
    output: str
    factor: int


Operation = Union[Conv, PReLU, Concat, ScaledAdd, Resize, PixelShuffle]


@dataclass(frozen=True)
class Graph:
    """Operations in execution order, from the blob `INPUT` to the blob `OUTPUT`; pixels in 0..1, NCHW."""

    operations: list[Operation]
    in_channels: int
    out_channels: int
    scale: int
    size_multiple: int


def build_graph(model: ModelDescriptor) -> Graph:
    """The operations of one of our networks (optionally followed by its bicubic output resize)."""
    module = model.module
    rescale = None
    if type(module) is OutputRescaled:
        module, rescale = module.network, module.factor
    builders = {RRDBNet: _rrdbnet, SRVGGNetCompact: _srvgg}
    builder = builders.get(type(module))  # exact types: a subclass may compute something else
    if builder is None:
        label = model.name or model.source
        raise ExportError(f"{label}: export writes realesr's own RRDBNet and SRVGGNetCompact networks; this model is "
                          f"{model.architecture} ({type(module).__name__}), whose computation export cannot reproduce")
    # plain fp32 CPU copies in torch's layout, whatever the engine did to the model (device, fp16, channels-last)
    weights = {key: value.detach().to("cpu", torch.float32).contiguous() for key, value in module.state_dict().items()}
    operations = builder(module, weights)
    if rescale is not None:
        operations[-1] = dataclasses.replace(operations[-1], output="network_output")
        operations.append(Resize("output_resize", "network_output", OUTPUT, rescale, "bicubic"))
    return Graph(operations, model.in_channels, model.out_channels, model.scale, model.size_multiple)


def _conv(weights: dict[str, torch.Tensor], key: str, source: str, output: str | None = None,
          activation_slope: float | None = None) -> Conv:
    return Conv(key, source, output or key, weights[f"{key}.weight"], weights[f"{key}.bias"],
                activation_slope=activation_slope)


def _rrdbnet(network: RRDBNet, weights: dict[str, torch.Tensor]) -> list[Operation]:
    factor = network.unshuffle
    operations: list[Operation] = []
    first = _conv(weights, "conv_first", INPUT)
    if factor > 1:
        first = Conv(first.name, INPUT, first.output, fold_pixel_unshuffle(first.weight, factor), first.bias,
                     stride=factor, padding=factor)
    operations.append(first)
    features = first.output
    for block in range(len(network.body)):
        block_input = features
        for rdb in (1, 2, 3):
            prefix = f"body.{block}.rdb{rdb}"
            dense = [features]
            for k in range(1, 6):
                source = dense[0]
                if len(dense) > 1:
                    source = f"{prefix}.concat{k}"
                    operations.append(Concat(source, tuple(dense), source))
                conv = _conv(weights, f"{prefix}.conv{k}", source, activation_slope=LEAKY_SLOPE if k < 5 else None)
                operations.append(conv)
                dense.append(conv.output)
            operations.append(ScaledAdd(f"{prefix}.residual", dense[-1], features, f"{prefix}.out", RESIDUAL_SCALE))
            features = f"{prefix}.out"
        operations.append(ScaledAdd(f"body.{block}.residual", features, block_input, f"body.{block}.out",
                                    RESIDUAL_SCALE))
        features = f"body.{block}.out"
    operations.append(_conv(weights, "conv_body", features))
    operations.append(ScaledAdd("trunk_residual", "conv_body", first.output, "trunk"))
    features = "trunk"
    for stage in range(1, network.num_upsample + 1):
        operations.append(Resize(f"upsample{stage}", features, f"upsample{stage}", 2, "nearest"))
        operations.append(_conv(weights, f"conv_up{stage}", f"upsample{stage}", activation_slope=LEAKY_SLOPE))
        features = f"conv_up{stage}"
    operations.append(_conv(weights, "conv_hr", features, activation_slope=LEAKY_SLOPE))
    operations.append(_conv(weights, "conv_last", "conv_hr", OUTPUT))
    return operations


def _srvgg(network: SRVGGNetCompact, weights: dict[str, torch.Tensor]) -> list[Operation]:
    """Layer names as in the official ncnn files: Conv_N and PRelu_N for body.N."""
    operations: list[Operation] = []
    features = INPUT
    layers = list(network.body)
    for index in range(0, len(layers), 2):
        activation = layers[index + 1] if index + 1 < len(layers) else None
        slope = None
        if isinstance(activation, torch.nn.LeakyReLU):
            slope = float(activation.negative_slope)
        elif isinstance(activation, torch.nn.ReLU):
            slope = 0.0
        operations.append(Conv(f"Conv_{index}", features, f"conv{index}", weights[f"body.{index}.weight"],
                               weights[f"body.{index}.bias"], activation_slope=slope))
        features = f"conv{index}"
        if isinstance(activation, torch.nn.PReLU):
            operations.append(PReLU(f"PRelu_{index + 1}", features, f"prelu{index + 1}",
                                    weights[f"body.{index + 1}.weight"]))
            features = f"prelu{index + 1}"
    if network.scale == 1:  # no shuffle and a residual of the input itself
        operations.append(ScaledAdd("residual", features, INPUT, OUTPUT))
        return operations
    operations.append(PixelShuffle("pixel_shuffle", features, "shuffled", network.scale))
    operations.append(Resize("input_upsample", INPUT, "input_upsampled", network.scale, "nearest"))
    operations.append(ScaledAdd("residual", "shuffled", "input_upsampled", OUTPUT))
    return operations
