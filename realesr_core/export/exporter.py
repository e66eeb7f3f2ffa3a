"""`export_model`: one of our models as an ONNX file or an ncnn `.param`/`.bin` pair, chosen by the file suffix."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..files import write_atomically
from ..models import ModelDescriptor, ModelSource, load_model
from .graph import ExportError, Graph, build_graph
from .ncnn_writer import ncnn_files
from .onnx_writer import MIN_OPSET, onnx_model, onnx_module

FORMATS = {".onnx": "onnx", ".param": "ncnn"}
PRECISIONS = ("fp32", "fp16")
DEFAULT_OPSET = 17  # run by onnxruntime >= 1.13, TensorRT >= 8.6, OpenVINO, DirectML and chaiNNer
FP16_MAX = 65504.0
# The scale Upscayl's bundled upscayl-bin reads from a model's name (Linux and macOS builds): the first of these
# tokens found, case-sensitively, else 4. Upscayl's window reads it too, lower-cased, from x2/2x and x3/3x only.
UPSCAYL_BIN_TOKENS = ((1, ("x1", "1x")), (2, ("x2", "2x")), (3, ("x3", "3x")), (4, ("x4", "4x")), (8, ("x8", "8x")),
                      (16, ("x16", "16x")))
UPSCAYL_WINDOW_TOKENS = ((2, ("x2", "2x")), (3, ("x3", "3x")))


@dataclass
class ExportResult:
    files: list[Path]  # the ONNX file, or the .param and then the .bin
    format: str  # "onnx" or "ncnn"
    precision: str
    model: ModelDescriptor

    def __str__(self) -> str:
        return f"{' + '.join(str(path) for path in self.files)} ({self.format}, {self.precision}, x{self.model.scale})"


def export_model(model: ModelSource, path: str | os.PathLike, *, precision: str = "fp32", opset: int | None = None,
                 size: tuple[int, int] | None = None) -> ExportResult:
    """Writes `model` (a bundled name, a model file, a state dict or a descriptor from `load_model`) to `path`:
    `.onnx` for ONNX (opset `opset`, dynamic batch/height/width unless `size` = (height, width) fixes them), or
    `.param` for ncnn (`.bin` beside it). `precision` fp16 stores half-precision weights (and, in ONNX, computes in
    fp16). Files appear complete or not at all; existing ones are replaced. Anything the format cannot express
    is an ExportError before anything is written."""
    path = Path(path)
    file_format = export_format(path)
    if precision not in PRECISIONS:
        raise ExportError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if file_format == "ncnn" and (opset is not None or size is not None):
        raise ExportError(f"{path.name}: ncnn graphs take any image size and have no opset; --opset and --size are "
                          "for ONNX files")
    descriptor = model if isinstance(model, ModelDescriptor) else load_model(model)
    graph = build_graph(descriptor)
    if precision == "fp16":
        _check_fp16_range(graph, descriptor)
    if file_format == "onnx":
        files = [_write_onnx(graph, descriptor, path, precision, DEFAULT_OPSET if opset is None else opset, size)]
    else:
        files = _write_ncnn(graph, path, precision)
    return ExportResult(files, file_format, precision, descriptor)


def export_format(path: Path) -> str:
    """"onnx" or "ncnn", from the suffix."""
    file_format = FORMATS.get(path.suffix.lower())
    if file_format is None:
        raise ExportError(f"{path.name}: the export file name should end in .onnx (ONNX) or .param (ncnn, with the "
                          f".bin written beside it)")
    return file_format


def upscayl_scale(stem: str) -> int:
    """The scale upscayl-bin assumes for a model named `stem`."""
    for scale, tokens in UPSCAYL_BIN_TOKENS:
        if any(token in stem for token in tokens):
            return scale
    return 4


def _upscayl_window_scale(stem: str) -> int:
    for scale, tokens in UPSCAYL_WINDOW_TOKENS:
        if any(token in stem.lower() for token in tokens):
            return scale
    return 4


def names_scale(stem: str, scale: int) -> bool:
    """Whether Upscayl takes a model named `stem` for the right scale (its window only knows x2, x3 and x4)."""
    window_ok = scale not in (2, 3, 4) or _upscayl_window_scale(stem) == scale
    return upscayl_scale(stem) == scale and window_ok


def ncnn_stem(stem: str, scale: int) -> str:
    """`stem`, or the nearest name from which Upscayl reads `scale`: `-x<scale>` appended, other scale tokens
    (x2, 4x, ...) removed first where they would be read instead."""
    for candidate in (stem, f"{stem}-x{scale}", re.sub(r"(?i)x\d+|\d+x", "", stem).strip("-_ ") + f"-x{scale}"):
        if names_scale(candidate, scale):
            return candidate
    return f"model-x{scale}"


def _check_fp16_range(graph: Graph, descriptor: ModelDescriptor) -> None:
    for operation in graph.operations:
        for tensor in (getattr(operation, "weight", None), getattr(operation, "slopes", None)):
            if tensor is not None and tensor.abs().max().item() > FP16_MAX:
                raise ExportError(f"{descriptor.name or descriptor.source}: {operation.name} has weights beyond "
                                  f"fp16's range (|w| > {FP16_MAX:g}); export it in fp32")


def _write_onnx(graph: Graph, descriptor: ModelDescriptor, path: Path, precision: str, opset: int,
                size: tuple[int, int] | None) -> Path:
    newest = onnx_module().defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise ExportError(f"ONNX opset must be within {MIN_OPSET}..{newest} (the installed onnx package's newest), "
                          f"not {opset}")
    if size is not None:
        height, width = size
        multiple = graph.size_multiple
        if height <= 0 or width <= 0 or height % multiple or width % multiple:
            raise ExportError(f"a fixed size must be positive multiples of {multiple} for this model (it "
                              f"pixel-unshuffles its input), not {height}x{width}")
    metadata: dict[str, Any] = {
        "realesr.architecture": descriptor.architecture,
        "realesr.hyperparameters": descriptor.hyperparameters,
        "realesr.scale": str(graph.scale),
        "realesr.size_multiple": str(graph.size_multiple),
        "realesr.precision": precision,
        "realesr.name": descriptor.name or Path(descriptor.source).stem,
    }
    model = onnx_model(graph, precision=precision, opset=opset, size=size, metadata=metadata)
    return write_atomically(path, lambda temporary: temporary.write_bytes(model.SerializeToString()), ".tmp")


def _write_ncnn(graph: Graph, path: Path, precision: str) -> list[Path]:
    if not names_scale(path.stem, graph.scale):
        suggestion = f"{ncnn_stem(path.stem, graph.scale)}.param"
        raise ExportError(f"{path.name}: Upscayl reads a model's scale from its file name and would take this one "
                          f"for x{upscayl_scale(path.stem)}; the model is x{graph.scale}: name it {suggestion}")
    param, weights = ncnn_files(graph, precision)
    bin_path = path.with_suffix(".bin")
    # the weights first: a .param only ever appears beside the .bin it describes
    write_atomically(bin_path, lambda temporary: temporary.write_bytes(weights), ".tmp")
    write_atomically(path, lambda temporary: temporary.write_text(param, encoding="ascii"), ".tmp")
    return [path, bin_path]

