"""Export to other runtimes: our networks as ONNX files (onnxruntime, TensorRT, chaiNNer, vs-mlrt) and as ncnn
`.param`/`.bin` pairs (realesrgan-ncnn-vulkan, Upscayl, chaiNNer), and the check of an export against its runtime.

Writing ncnn needs nothing beyond the core; writing ONNX needs `onnx`, running the checks `onnxruntime` / `ncnn`
(the `export` extra)."""

from .exporter import DEFAULT_OPSET, FORMATS, PRECISIONS, ExportResult, export_model, names_scale, ncnn_stem
from .graph import ExportError
from .runtimes import centre_crop, export_fidelity, psnr, run_exported, run_ncnn, run_onnx

__all__ = [
    "DEFAULT_OPSET",
    "FORMATS",
    "PRECISIONS",
    "ExportError",
    "ExportResult",
    "centre_crop",
    "export_fidelity",
    "export_model",
    "names_scale",
    "ncnn_stem",
    "psnr",
    "run_exported",
    "run_ncnn",
    "run_onnx",
]
