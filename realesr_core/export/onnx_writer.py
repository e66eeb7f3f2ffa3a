"""A graph as an ONNX model: standard operators only (Conv, LeakyRelu, PRelu, Concat, Mul, Add, Resize, DepthToSpace),
so onnxruntime, TensorRT, DirectML and OpenVINO run it. Input `input`, output `output`, both NCHW RGB in 0..1."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ..extras import import_extra
from .graph import INPUT, OUTPUT, Concat, Conv, Graph, PixelShuffle, PReLU, Resize, ScaledAdd

ONNX_INPUT = "input"
MIN_OPSET = 11  # Resize with coordinate modes and DepthToSpace's CRD mode


def onnx_module() -> Any:
    return import_extra("onnx", "export", "writing an ONNX file")


def onnx_model(graph: Graph, *, precision: str, opset: int, size: tuple[int, int] | None,
               metadata: dict[str, Any]) -> Any:
    """The checked ONNX ModelProto. `size` (height, width) fixes the input to one image of that size; else the
    batch, height and width are dynamic."""
    onnx = onnx_module()
    helper = onnx.helper
    dtype = np.float16 if precision == "fp16" else np.float32
    element = onnx.TensorProto.FLOAT16 if precision == "fp16" else onnx.TensorProto.FLOAT
    builder = _Builder(onnx, dtype, opset)
    for operation in graph.operations:
        builder.add(operation)
    if size is None:
        in_shape: list[Any] = ["batch", graph.in_channels, "height", "width"]
        out_shape: list[Any] = ["batch", graph.out_channels, f"height_x{graph.scale}", f"width_x{graph.scale}"]
    else:
        height, width = size
        in_shape = [1, graph.in_channels, height, width]
        out_shape = [1, graph.out_channels, height * graph.scale, width * graph.scale]
    model_graph = helper.make_graph(
        builder.nodes, "realesr", [helper.make_tensor_value_info(ONNX_INPUT, element, in_shape)],
        [helper.make_tensor_value_info(OUTPUT, element, out_shape)], builder.initializers)
    opsets = [helper.make_opsetid("", opset)]
    # the oldest IR version that holds this opset, so older runtimes load the file too
    model = helper.make_model(model_graph, opset_imports=opsets, producer_name="realesr",
                              ir_version=helper.find_min_ir_version_for(opsets))
    helper.set_model_props(model, {key: value if isinstance(value, str) else json.dumps(value)
                                   for key, value in metadata.items()})
    onnx.checker.check_model(model, full_check=True)
    return model


class _Builder:
    """Nodes and initializers, operation by operation; blob names become value names (the input renamed)."""

    def __init__(self, onnx: Any, dtype: type, opset: int) -> None:
        self.onnx, self.dtype, self.opset = onnx, dtype, opset
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.constants: dict[tuple[str, float], str] = {}

    def tensor(self, name: str, values: np.ndarray, dtype: type | None = None) -> str:
        array = np.ascontiguousarray(values, dtype=dtype or self.dtype)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def scalar(self, value: float) -> str:
        key = ("scalar", value)
        if key not in self.constants:
            self.constants[key] = self.tensor(f"scalar_{value:g}", np.array(value))
        return self.constants[key]

    def scales(self, factor: float) -> str:
        key = ("scales", factor)
        if key not in self.constants:
            self.constants[key] = self.tensor(f"scales_{factor:g}", np.array([1, 1, factor, factor]), np.float32)
        return self.constants[key]

    def roi(self) -> str:
        """Resize's roi input: optional from opset 13, required (and unused) before."""
        if self.opset >= 13:
            return ""
        if ("roi", 0.0) not in self.constants:
            self.constants[("roi", 0.0)] = self.tensor("roi", np.zeros(0), np.float32)
        return self.constants[("roi", 0.0)]

    def node(self, op_type: str, inputs: list[str], output: str, name: str, **attributes: Any) -> None:
        inputs = [ONNX_INPUT if blob == INPUT else blob for blob in inputs]
        self.nodes.append(self.onnx.helper.make_node(op_type, inputs, [output], name=name, **attributes))

    def add(self, operation: Any) -> None:
        if isinstance(operation, Conv):
            kernel = operation.weight.shape[-1]
            conv_output = operation.output if operation.activation_slope is None else f"{operation.output}.conv"
            self.node("Conv", [operation.input, self.tensor(f"{operation.name}.weight", operation.weight.numpy()),
                               self.tensor(f"{operation.name}.bias", operation.bias.numpy())], conv_output,
                      operation.name, kernel_shape=[kernel, kernel], strides=[operation.stride] * 2,
                      pads=[operation.padding] * 4)
            if operation.activation_slope == 0.0:
                self.node("Relu", [conv_output], operation.output, f"{operation.name}.relu")
            elif operation.activation_slope is not None:
                self.node("LeakyRelu", [conv_output], operation.output, f"{operation.name}.lrelu",
                          alpha=operation.activation_slope)
        elif isinstance(operation, PReLU):
            slopes = operation.slopes.numpy().reshape(-1, 1, 1)  # broadcast over [N, C, H, W]
            self.node("PRelu", [operation.input, self.tensor(f"{operation.name}.slopes", slopes)], operation.output,
                      operation.name)
        elif isinstance(operation, Concat):
            self.node("Concat", list(operation.inputs), operation.output, operation.name, axis=1)
        elif isinstance(operation, ScaledAdd):
            branch = operation.branch
            if operation.scale != 1.0:
                branch = f"{operation.name}.scaled"
                self.node("Mul", [operation.branch, self.scalar(operation.scale)], branch, f"{operation.name}.mul")
            self.node("Add", [branch, operation.skip], operation.output, operation.name)
        elif isinstance(operation, Resize):
            if operation.mode == "nearest":  # torch's nearest: source index floor(out * in / out_size)
                modes = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
            else:  # torch's bicubic: a = -0.75, half-pixel centres, edge pixels repeated outside
                modes = {"mode": "cubic", "coordinate_transformation_mode": "half_pixel", "cubic_coeff_a": -0.75,
                         "exclude_outside": 0}
            self.node("Resize", [operation.input, self.roi(), self.scales(operation.factor)], operation.output,
                      operation.name, **modes)
        elif isinstance(operation, PixelShuffle):
            self.node("DepthToSpace", [operation.input], operation.output, operation.name,
                      blocksize=operation.factor, mode="CRD")
        else:
            raise TypeError(f"no ONNX operator for {type(operation).__name__}")
