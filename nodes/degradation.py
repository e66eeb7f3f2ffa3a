"""Degradation nodes: Real-ESRGAN's full second-order pipeline, and one node per operation."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import torch

from realesr_core import RealESRError
from realesr_core.degradation import (
    DEGRADATION_PRESETS,
    KERNEL_TYPES,
    RESIZE_MODES,
    apply_parameters,
    build_kernel,
    diff_jpeg,
    filter2d,
    gaussian_noise,
    get_preset,
    on_colour,
    pillow_jpeg,
    poisson_noise,
    resize,
    sample_blur_kernels,
    sample_parameters,
    usm_sharpen,
)

CATEGORY = "image/degradation"
SEED = ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True,
                "tooltip": "Seed of the random draws: the same seed gives the same result."})
IMAGE_IN = ("IMAGE", {"tooltip": "The images to degrade."})


def _on_colour(image: torch.Tensor, operation: Callable[[torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor]:
    """ComfyUI's BHWC IMAGE through a BCHW operation; alpha of RGBA images is left alone."""
    return (on_colour(image.movedim(-1, 1), operation).movedim(1, -1).contiguous(),)


class Degrade:
    DESCRIPTION = ("Real-ESRGAN's second-order degradation (blur, resize, noise, JPEG, twice, then resize + sinc "
                   "and JPEG in either order), with the official probabilities and ranges. Outputs the degraded "
                   "images, the clean targets and the drawn parameters as JSON (which replay exactly).")
    CATEGORY = CATEGORY
    FUNCTION = "degrade"
    RETURN_TYPES = ("IMAGE", "IMAGE", "STRING")
    RETURN_NAMES = ("degraded", "target", "parameters")
    OUTPUT_TOOLTIPS = ("Degraded images (1/scale size, or the input size with 'keep size').",
                       "The clean images (USM-sharpened if asked), as training targets.",
                       "The drawn parameters, one JSON object per image.")

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "image": IMAGE_IN,
                "preset": (list(DEGRADATION_PRESETS), {"default": "realesrgan_x4", "tooltip": (
                    "Official Real-ESRGAN x4 / x2 settings, lighter or heavier damage, or plain bicubic x4.")}),
                "size": (["downscale", "keep size"], {"default": "downscale", "tooltip": (
                    "downscale: 1/scale of the input, as for training pairs. keep size: resized back at the end, "
                    "for graphs that continue at the same resolution (degrade, then img2img).")}),
                "seed": SEED,
                "batch_mode": (["per image", "same on batch"], {"default": "per image", "tooltip": (
                    "per image: every image draws its own damage. same on batch: one draw for all (video frames).")}),
                "quantize": ("BOOLEAN", {"default": True, "tooltip": "Round the result to 8 bits, as training does."}),
                "sharpen_target": ("BOOLEAN", {"default": False, "tooltip": (
                    "USM-sharpen the clean target, as Real-ESRGAN's training targets are.")}),
            },
            "optional": {
                "overrides": ("STRING", {"default": "", "multiline": True, "tooltip": (
                    'JSON object overriding preset numbers, e.g. {"noise_range": [1, 10], "jpeg_range": [60, 95]}.')}),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, overrides: str = "") -> bool | str:
        try:
            _overrides(overrides)
        except (ValueError, TypeError, RealESRError) as exc:
            return str(exc)
        return True

    def degrade(self, image: torch.Tensor, preset: str, size: str, seed: int, batch_mode: str, quantize: bool,
                sharpen_target: bool, overrides: str = "") -> tuple:
        config = get_preset(preset, **_overrides(overrides))
        chw = image.movedim(-1, 1).float()
        params = sample_parameters(config, chw.shape[0], *chw.shape[-2:], seed=seed,
                                   same_on_batch=batch_mode == "same on batch")
        result = apply_parameters(chw, params, quantize=quantize, keep_size=size == "keep size",
                                  sharpen_target=sharpen_target)
        return (result.degraded.movedim(1, -1).contiguous(), result.target.movedim(1, -1).contiguous(),
                json.dumps(params, indent=1))


def _overrides(text: str) -> dict:
    if not text or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"overrides are not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ValueError("overrides must be a JSON object")
    get_preset("realesrgan_x4", **value)  # raises on unknown names
    return value


class Blur:
    DESCRIPTION = ("Blurs with one of Real-ESRGAN's kernels: isotropic / anisotropic Gaussian, generalized "
                   "Gaussian, plateau, or sinc; 'random' draws a kernel per image with Real-ESRGAN's probabilities.")
    CATEGORY = CATEGORY
    FUNCTION = "blur"
    RETURN_TYPES = ("IMAGE",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "image": IMAGE_IN,
            "kernel": (["random", *KERNEL_TYPES], {"default": "iso", "tooltip": "The kernel shape."}),
            "kernel_size": ("INT", {"default": 21, "min": 7, "max": 21, "step": 2, "tooltip": "Odd size, 7..21."}),
            "sigma_x": ("FLOAT", {"default": 1.5, "min": 0.1, "max": 10.0, "step": 0.05,
                                  "tooltip": "Spread along the kernel's own x axis (pixels)."}),
            "sigma_y": ("FLOAT", {"default": 1.5, "min": 0.1, "max": 10.0, "step": 0.05,
                                  "tooltip": "Spread along the kernel's y axis (anisotropic kernels only)."}),
            "rotation": ("FLOAT", {"default": 0.0, "min": -180.0, "max": 180.0, "step": 1.0,
                                   "tooltip": "Angle of the kernel in degrees (anisotropic kernels only)."}),
            "beta": ("FLOAT", {"default": 1.0, "min": 0.2, "max": 8.0, "step": 0.05,
                               "tooltip": "Shape exponent of generalized Gaussian and plateau kernels."}),
            "cutoff": ("FLOAT", {"default": 1.5, "min": 0.1, "max": 3.1416, "step": 0.01,
                                 "tooltip": "Cut-off frequency of the sinc kernel (radians per pixel)."}),
            "seed": SEED,
        }}

    def blur(self, image: torch.Tensor, kernel: str, kernel_size: int, sigma_x: float, sigma_y: float,
             rotation: float, beta: float, cutoff: float, seed: int) -> tuple:
        if kernel == "random":
            drawn = sample_blur_kernels(DEGRADATION_PRESETS["realesrgan_x4"], image.shape[0], seed)
            kernels = torch.stack([build_kernel(params) for params in drawn])
        else:
            isotropic = kernel in ("iso", "generalized_iso", "plateau_iso")
            params = {"type": kernel, "size": kernel_size, "sigma_x": sigma_x,
                      "sigma_y": sigma_x if isotropic else sigma_y,
                      "theta": 0.0 if isotropic else math.radians(rotation), "beta": beta, "cutoff": cutoff}
            kernels = build_kernel(params)
        return _on_colour(image, lambda colour: filter2d(colour, kernels.to(colour.device)))


class Noise:
    DESCRIPTION = "Adds Gaussian or Poisson (shot) noise, in colour or gray, with Real-ESRGAN's formulas."
    CATEGORY = CATEGORY
    FUNCTION = "noise"
    RETURN_TYPES = ("IMAGE",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "image": IMAGE_IN,
            "noise": (["gaussian", "poisson"], {"default": "gaussian", "tooltip": "Noise model."}),
            "color": (["color", "gray"], {"default": "color", "tooltip": "Independent per channel, or one gray pattern."}),
            "sigma": ("FLOAT", {"default": 10.0, "min": 0.0, "max": 100.0, "step": 0.5,
                                "tooltip": "Gaussian: standard deviation in 8-bit levels (Real-ESRGAN: 1..30)."}),
            "poisson_scale": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.05,
                                        "tooltip": "Poisson: strength (Real-ESRGAN: 0.05..3)."}),
            "seed": SEED,
        }}

    def noise(self, image: torch.Tensor, noise: str, color: str, sigma: float, poisson_scale: float, seed: int) -> tuple:
        batch, gray = image.shape[0], [color == "gray"] * image.shape[0]
        generator = torch.Generator().manual_seed(seed)
        if noise == "gaussian":
            return _on_colour(image, lambda colour: gaussian_noise(colour, [sigma] * batch, gray, generator))
        return _on_colour(image, lambda colour: poisson_noise(colour, [poisson_scale] * batch, gray, generator))


class JPEG:
    DESCRIPTION = ("JPEG compression artefacts: a torch model of libjpeg that runs batched on the GPU (float "
                   "quality), or the real libjpeg through Pillow.")
    CATEGORY = CATEGORY
    FUNCTION = "compress"
    RETURN_TYPES = ("IMAGE",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "image": IMAGE_IN,
            "quality": ("FLOAT", {"default": 60.0, "min": 1.0, "max": 100.0, "step": 0.5,
                                  "tooltip": "JPEG quality (Real-ESRGAN: 30..95). libjpeg rounds it to an integer."}),
            "method": (["torch", "libjpeg"], {"default": "torch", "tooltip": (
                "torch: on the device, batched, within ~0.5 levels of libjpeg. libjpeg: the exact codec, on the CPU.")}),
        }}

    def compress(self, image: torch.Tensor, quality: float, method: str) -> tuple:
        if method == "torch":
            return _on_colour(image, lambda colour: diff_jpeg(colour, quality, differentiable=False))
        return _on_colour(image, lambda colour: pillow_jpeg(colour, quality))


class Resize:
    DESCRIPTION = "Resizes by a factor with area, bilinear or bicubic interpolation, as Real-ESRGAN's pipeline does."
    CATEGORY = CATEGORY
    FUNCTION = "resize"
    RETURN_TYPES = ("IMAGE",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "image": IMAGE_IN,
            "factor": ("FLOAT", {"default": 0.5, "min": 0.05, "max": 4.0, "step": 0.05, "tooltip": "Scale factor."}),
            "mode": (list(RESIZE_MODES), {"default": "area", "tooltip": "Interpolation."}),
        }}

    def resize(self, image: torch.Tensor, factor: float, mode: str) -> tuple:
        size = (max(1, round(image.shape[1] * factor)), max(1, round(image.shape[2] * factor)))
        return _on_colour(image, lambda colour: resize(colour, size, mode))


class SincFilter:
    DESCRIPTION = "The circular low-pass (sinc) filter that gives Real-ESRGAN's ringing and overshoot artefacts."
    CATEGORY = CATEGORY
    FUNCTION = "filter"
    RETURN_TYPES = ("IMAGE",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "image": IMAGE_IN,
            "kernel_size": ("INT", {"default": 21, "min": 7, "max": 21, "step": 2, "tooltip": "Odd size, 7..21."}),
            "cutoff": ("FLOAT", {"default": 1.5, "min": 0.1, "max": 3.1416, "step": 0.01,
                                 "tooltip": "Cut-off frequency, radians per pixel (Real-ESRGAN: pi/3..pi)."}),
        }}

    def filter(self, image: torch.Tensor, kernel_size: int, cutoff: float) -> tuple:
        kernel = build_kernel({"type": "sinc", "size": kernel_size, "cutoff": cutoff})
        return _on_colour(image, lambda colour: filter2d(colour, kernel.to(colour.device)))


class USMSharpen:
    DESCRIPTION = "Real-ESRGAN's unsharp mask (how its training targets are sharpened)."
    CATEGORY = CATEGORY
    FUNCTION = "sharpen"
    RETURN_TYPES = ("IMAGE",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "image": ("IMAGE", {"tooltip": "The images to sharpen."}),
            "radius": ("INT", {"default": 50, "min": 3, "max": 101, "step": 2, "tooltip": "Blur kernel size."}),
            "weight": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 4.0, "step": 0.05, "tooltip": "Amount."}),
            "threshold": ("FLOAT", {"default": 10.0, "min": 0.0, "max": 255.0, "step": 1.0,
                                    "tooltip": "Detail below this many 8-bit levels is left alone."}),
        }}

    def sharpen(self, image: torch.Tensor, radius: int, weight: float, threshold: float) -> tuple:
        return _on_colour(image, lambda colour: usm_sharpen(colour, radius, weight, threshold))
