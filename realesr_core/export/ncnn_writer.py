"""A graph as an ncnn `.param` (text) and `.bin` (weights), laid out like the official Real-ESRGAN files: input blob
`data`, output blob `output`, LeakyReLU fused into the convolutions, residual sums as Eltwise with coefficients.

The format facts (magic, storage tags, activation and layer codes) are the reader's, in `models/ncnn.py`.
"""

from __future__ import annotations

import struct
from collections import Counter

import numpy as np

from ..models.ncnn import (
    ARRAY_KEY_BASE,
    ELTWISE_SUM,
    FP16_TAG,
    FP32_TAG,
    INTERP_BICUBIC,
    INTERP_NEAREST,
    LEAKY_RELU,
    PARAM_MAGIC,
    RELU,
)
from .graph import INPUT, Concat, Conv, Graph, Operation, PixelShuffle, PReLU, Resize, ScaledAdd

ParamValue = int | float | list[float]
INTERP_MODES = {"nearest": INTERP_NEAREST, "bicubic": INTERP_BICUBIC}


def ncnn_files(graph: Graph, precision: str) -> tuple[str, bytes]:
    """The `.param` text and the `.bin` bytes. fp16 stores the convolution weights as half floats (the official
    files' choice); biases and PReLU slopes are always fp32, as ncnn reads them."""
    layers: list[str] = []
    weights = bytearray()
    uses = Counter(blob for operation in graph.operations for blob in _inputs(operation))
    split_names: dict[str, list[str]] = {}
    blobs: set[str] = set()

    def add_layer(kind: str, name: str, inputs: list[str], outputs: list[str], params: dict[int, ParamValue]) -> None:
        inputs = [split_names[blob].pop() if blob in split_names else blob for blob in inputs]
        layers.append(_layer_line(kind, name, inputs, outputs, params))
        blobs.update(outputs)
        for blob in outputs:
            if uses[blob] > 1:  # ncnn wants an explicit Split for every blob read more than once
                copies = [f"{blob}_splitncnn_{i}" for i in range(uses[blob])]
                layers.append(_layer_line("Split", f"splitncnn_{blob}", [blob], copies, {}))
                blobs.update(copies)
                split_names[blob] = copies

    add_layer("Input", "input", [], [INPUT], {})
    for operation in graph.operations:
        kind, params = _layer(operation, weights, precision)
        add_layer(kind, operation.name, list(_inputs(operation)), [operation.output], params)
    param = "\n".join([PARAM_MAGIC, f"{len(layers)} {len(blobs)}", *layers]) + "\n"
    return param, bytes(weights)


def _inputs(operation: Operation) -> tuple[str, ...]:
    if isinstance(operation, Concat):
        return operation.inputs
    if isinstance(operation, ScaledAdd):
        return operation.branch, operation.skip
    return (operation.input,)


def _layer(operation: Operation, weights: bytearray, precision: str) -> tuple[str, dict[int, ParamValue]]:
    """The layer type and parameters of one operation; its weights are appended to `weights`."""
    if isinstance(operation, Conv):
        out_ch, _, kernel, _ = operation.weight.shape
        params: dict[int, ParamValue] = {0: out_ch, 1: kernel}
        if operation.stride != 1:
            params[3] = operation.stride
        params.update({4: operation.padding, 5: 1, 6: operation.weight.numel()})
        if operation.activation_slope == 0.0:
            params[9] = RELU
        elif operation.activation_slope is not None:
            params[9] = LEAKY_RELU
            params[ARRAY_KEY_BASE - 10] = [operation.activation_slope]
        weights += _tagged(operation.weight.numpy(), precision)
        weights += operation.bias.numpy().astype("<f4").tobytes()
        return "Convolution", params
    if isinstance(operation, PReLU):
        weights += operation.slopes.numpy().astype("<f4").tobytes()
        return "PReLU", {0: operation.slopes.numel()}
    if isinstance(operation, Concat):
        return "Concat", {}
    if isinstance(operation, ScaledAdd):
        if operation.scale == 1.0:
            return "BinaryOp", {0: 0}  # 0: add
        return "Eltwise", {0: ELTWISE_SUM, ARRAY_KEY_BASE - 1: [operation.scale, 1.0]}
    if isinstance(operation, Resize):
        return "Interp", {0: INTERP_MODES[operation.mode], 1: float(operation.factor), 2: float(operation.factor)}
    if isinstance(operation, PixelShuffle):
        return "PixelShuffle", {0: operation.factor}
    raise TypeError(f"no ncnn layer for {type(operation).__name__}")


def _tagged(values: np.ndarray, precision: str) -> bytes:
    """A weight blob as ncnn's model loader reads it: a 4-byte storage tag, then the values, padded to 4 bytes."""
    if precision == "fp16":
        data = values.astype("<f2").tobytes()
        return struct.pack("<I", FP16_TAG) + data + b"\0" * (-len(data) % 4)
    return struct.pack("<I", FP32_TAG) + values.astype("<f4").tobytes()


def _layer_line(kind: str, name: str, inputs: list[str], outputs: list[str], params: dict[int, ParamValue]) -> str:
    fields = [f"{kind:<24}", f"{name:<24}", str(len(inputs)), str(len(outputs)), *inputs, *outputs]
    fields += [f"{key}={_value(value)}" for key, value in params.items()]
    return " ".join(fields)


def _value(value: ParamValue) -> str:
    if isinstance(value, list):
        return ",".join([str(len(value)), *(f"{v:e}" for v in value)])
    return f"{value:e}" if isinstance(value, float) else str(value)
