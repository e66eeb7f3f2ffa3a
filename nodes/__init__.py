"""ComfyUI node adapters over realesr_core; every id is prefixed so nothing clashes with built-ins or other packs."""

from .degradation import JPEG, Blur, Degrade, Noise, Resize, SincFilter, USMSharpen
from .export import ExportModel
from .training import FineTune, LoadTrainingImages, LossGraph
from .upscale import LoadModel, ModelBlend, SaveModel, Upscale
from .video import UpscaleVideo

_NODES = {
    "RealESR_LoadModel": (LoadModel, "Load Upscale Model (realesr)"),
    "RealESR_Upscale": (Upscale, "Upscale Image (realesr, seamless tiles)"),
    "RealESR_UpscaleVideo": (UpscaleVideo, "Upscale Video (realesr, streamed)"),
    "RealESR_ModelBlend": (ModelBlend, "Blend Upscale Models (realesr DNI)"),
    "RealESR_SaveModel": (SaveModel, "Save Upscale Model (realesr)"),
    "RealESR_ExportModel": (ExportModel, "Export Upscale Model (realesr: ONNX / ncnn)"),
    "RealESR_Degrade": (Degrade, "Real-ESRGAN Degradation (realesr)"),
    "RealESR_Blur": (Blur, "Degrade: Blur (realesr)"),
    "RealESR_Noise": (Noise, "Degrade: Noise (realesr)"),
    "RealESR_JPEG": (JPEG, "Degrade: JPEG (realesr)"),
    "RealESR_Resize": (Resize, "Degrade: Resize (realesr)"),
    "RealESR_SincFilter": (SincFilter, "Degrade: Sinc Filter (realesr)"),
    "RealESR_USMSharpen": (USMSharpen, "USM Sharpen (realesr)"),
    "RealESR_LoadTrainingImages": (LoadTrainingImages, "Load Training Images (realesr)"),
    "RealESR_FineTune": (FineTune, "Fine-tune Upscale Model (realesr)"),
    "RealESR_LossGraph": (LossGraph, "Loss Graph (realesr)"),
}

NODE_CLASS_MAPPINGS = {node_id: cls for node_id, (cls, _) in _NODES.items()}
NODE_DISPLAY_NAME_MAPPINGS = {node_id: name for node_id, (_, name) in _NODES.items()}
