"""Fine-tuning inside ComfyUI, following core's LoRA-trainer conventions: a dataset node that outputs an IMAGE list,
a trainer node that takes lists (INPUT_IS_LIST), trains under `torch.inference_mode(False)` with a progress bar per
step and Cancel between steps, and outputs the model and a LOSS_MAP; a loss-graph node draws the map."""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from realesr_core import RealESRError, load_model
from realesr_core.training import (
    LossHistory,
    TrainingConfig,
    TrainingImages,
    find_training_images,
    load_rgb,
    loss_graph,
    train,
    vgg19_weights_path,
)

from . import comfy_env
from .options import option_input
from .upscale_model import realesr_descriptor, to_upscale_model

LOG = logging.getLogger(__name__)
# In ComfyUI every degradation is drawn per image (each image of a batch gets its own), so the official 180-pair pool,
# which mixes batches, is left out: in a run of a few hundred steps it would only hold back fresh pairs.
IN_COMFYUI = dict(degradation_draws="image", pool_size=0, degrade_size=400)


def _single(value: Any) -> Any:
    """A widget's value: a node with INPUT_IS_LIST gets every input as a list (one item for a widget)."""
    return value[0] if isinstance(value, list) else value


def _images(batches: list[torch.Tensor] | None) -> list[torch.Tensor] | None:
    """ComfyUI's IMAGE list (each `[B, H, W, C]`) as separate `[C, H, W]` images, copied out of inference mode (the
    tensors ComfyUI hands over cannot take part in training)."""
    if batches is None:
        return None
    return [frame.movedim(-1, 0).clone() for batch in batches for frame in batch]


class LoadTrainingImages:
    DESCRIPTION = ("Loads every image in a folder of ComfyUI's input directory (subfolders included) as an IMAGE "
                   "list for Fine-tune Upscale Model: the high-resolution photos or frames the model should learn "
                   "to produce. PNG (8 and 16 bit), JPEG, WebP, TIFF, BMP; phone photos upright; gray and RGBA made "
                   "RGB. Unreadable files are skipped with a warning in the console.")
    CATEGORY = "dataset"
    FUNCTION = "load"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    OUTPUT_IS_LIST = (True,)
    OUTPUT_TOOLTIPS = ("The images, one list item each (sizes may differ).",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        folders = comfy_env.input_subfolders()
        return {"required": {"folder": (folders, {"tooltip": (
            "A folder inside ComfyUI's input directory; put your training images there (e.g. input/my_photos).")})}}

    @classmethod
    def VALIDATE_INPUTS(cls, folder: str) -> bool | str:
        if folder not in comfy_env.input_subfolders():
            return f"{folder!r} is no folder in ComfyUI's input directory ({comfy_env.input_folder()})"
        return True

    @classmethod
    def IS_CHANGED(cls, folder: str) -> str:
        """Adding, removing or replacing a file re-runs the node."""
        root = comfy_env.input_folder() / folder
        files = sorted(path for path in root.rglob("*") if path.is_file())
        return "\n".join(f"{path} {path.stat().st_size} {path.stat().st_mtime_ns}" for path in files)

    def load(self, folder: str) -> tuple[list[torch.Tensor]]:
        paths = find_training_images(comfy_env.input_folder() / folder, min_side=1)
        return ([load_rgb(path).movedim(0, -1)[None] for path in paths],)


class FineTune:
    DESCRIPTION = (
        "Fine-tunes an upscale model on your images with Real-ESRGAN's recipe: each step degrades random crops of "
        "the images (blur, resize, noise, JPEG, per the degradation preset) and teaches the model to undo it; or, "
        "given low-res images, learns from those pairs. net = L1 only (sharpest fidelity, ESRNet); gan = L1, "
        "perceptual and adversarial losses (the official fine-tune). Training runs on ComfyUI's device; the "
        "progress bar moves per step and Cancel stops between steps (nothing is output). The result is the "
        "moving average (EMA) of the trained weights over the last tenth of the run (at most the official 1000 "
        "steps), a new model (the input model is left as it was): connect Upscale Image to use it, Save Upscale "
        "Model to keep it.")
    CATEGORY = "training"
    FUNCTION = "fine_tune"
    INPUT_IS_LIST = True
    RETURN_TYPES = ("UPSCALE_MODEL", "LOSS_MAP")
    RETURN_NAMES = ("upscale_model", "loss")
    OUTPUT_TOOLTIPS = ("The fine-tuned model.",
                       "Each step's losses by name ('loss' is the generator's weighted total), for a loss graph.")

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        degradations, degradation = option_input(TrainingConfig, "degradation", tooltip_note=(
            "With low_res_images it only sets whether the targets are sharpened and makes the validation inputs."))
        return {
            "required": {
                "upscale_model": ("UPSCALE_MODEL", {"tooltip": (
                    "The model to start from: a Real-ESRGAN / ESRGAN / Compact model from any loader.")}),
                "images": ("IMAGE", {"tooltip": (
                    "High-resolution training images: a list from Load Training Images, or any IMAGE (a batch "
                    "counts as that many images). Each must be at least the patch size a side.")}),
                "stage": option_input(TrainingConfig, "stage", tooltip_note=(
                    "Here the discriminator starts fresh and trains alone for the first tenth of the run at most.")),
                "steps": option_input(TrainingConfig, "steps", default=500, max=1_000_000, tooltip_note=(
                    "A few hundred adapt a model to a kind of image; the official fine-tune runs hundreds of "
                    "thousands.")),
                "batch": option_input(TrainingConfig, "batch", max=64, tooltip_note=(
                    "Memory grows with batch x patch².")),
                "patch": option_input(TrainingConfig, "patch", default=128, max=IN_COMFYUI["degrade_size"],
                                      tooltip_note="The official recipe uses 256."),
                "learning_rate": option_input(TrainingConfig, "lr", round=False, tooltip_note=(
                    "Lower it if the losses jump or the output gets worse.")),
                "degradation": ([name for name in degradations if name != "none"], degradation),
                "perceptual_weight": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 10.0, "step": 0.1, "tooltip": (
                    "Weight of the VGG19 perceptual loss in the gan stage (the official recipe: 1.0). It needs "
                    "VGG19's ImageNet weights, which are never downloaded: put vgg19-dcbb9e9d.pth in "
                    "~/.cache/torch/hub/checkpoints/ to use it. 0 trains without it.")}),
                "precision": option_input(TrainingConfig, "precision"),
                "seed": option_input(TrainingConfig, "seed", control_after_generate=True),
            },
            "optional": {
                "validation_images": ("IMAGE", {"tooltip": (
                    "Held-out high-resolution images: degraded once by the preset and scored after the last step "
                    "(PSNR / SSIM of the fine-tuned model, in ComfyUI's console).")}),
                "low_res_images": ("IMAGE", {"tooltip": (
                    "Paired training: the low-resolution partner of each image, in the same order, exactly "
                    "image size / scale. No synthetic degradation is applied then.")}),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, steps: Any, batch: Any, patch: Any, learning_rate: Any, degradation: Any,
                        stage: Any, perceptual_weight: Any) -> bool | str:
        """The library's own checks: the run's config is built from the inputs, and its error is the answer."""
        try:
            config = _config(_single(stage), _single(steps), _single(batch), _single(patch), _single(learning_rate),
                             _single(degradation), _single(perceptual_weight))
        except RealESRError as exc:
            return str(exc)
        if config.loss_weights.perceptual > 0:
            try:
                vgg19_weights_path()
            except RealESRError as exc:
                return f"{exc}. Or set perceptual_weight to 0 to train without it"
        return True

    def fine_tune(self, upscale_model: list, images: list, stage: list, steps: list, batch: list, patch: list,
                  learning_rate: list, degradation: list, perceptual_weight: list, precision: list, seed: list,
                  validation_images: list | None = None, low_res_images: list | None = None) -> tuple[Any, dict]:
        base = realesr_descriptor(_single(upscale_model))
        steps = _single(steps)
        history, bar = LossHistory(), comfy_env.progress_bar(steps)

        def progress(done: int, total: int, values: dict[str, float]) -> None:
            history(done, total, values)
            if bar is not None:
                bar.update_absolute(done, total)  # its hook raises when Cancel was pressed

        # the run's files (state, metrics) go to a folder of its own, removed whatever happens
        output = Path(tempfile.mkdtemp(prefix="realesr_finetune_", dir=comfy_env.temp_folder()))
        try:
            config = _config(_single(stage), steps, _single(batch), _single(patch), _single(learning_rate),
                             _single(degradation), _single(perceptual_weight), model=base.name or base.source,
                             output_dir=str(output), precision=_single(precision), seed=_single(seed),
                             device=str(comfy_env.torch_device()))
            with torch.inference_mode(False):  # ComfyUI runs nodes in inference mode, which forbids training
                data = TrainingImages(_images(images), _images(low_res_images), _images(validation_images) or [])
                result = train(config, model=base, images=data, progress=progress,
                               should_stop=comfy_env.processing_interrupted)
                if result.stopped != "finished":
                    comfy_env.raise_if_interrupted()
                    raise RealESRError("fine-tuning was stopped before its last step")
                trained = load_model(result.model_path)
        finally:
            shutil.rmtree(output, ignore_errors=True)
        if result.validation is not None:
            LOG.info("realesr fine-tune: validation after %d steps: PSNR %.2f dB, SSIM %.4f", result.steps,
                     result.validation["psnr"], result.validation["ssim"])
        trained.name = f"{base.name} fine-tuned" if base.name else None
        return to_upscale_model(trained), history.values


def _config(stage: str, steps: int, batch: int, patch: int, learning_rate: float, degradation: str,
            perceptual_weight: float, **more: Any) -> TrainingConfig:
    """The run of the node's inputs: the library's TrainingConfig, with what suits a run inside ComfyUI (images in
    memory, no worker processes, every step logged for the loss map, one validation and checkpoint at the end)."""
    return TrainingConfig(**{"model": "", "hr_dir": "", "output_dir": "", **more}, stage=stage, steps=steps,
                          batch=batch, patch=patch, lr=learning_rate, degradation=degradation,
                          losses={"perceptual": perceptual_weight} if stage == "gan" else {}, **IN_COMFYUI,
                          workers=0, log_every=1, val_every=steps, samples=0, checkpoint_every=steps)


class LossGraph:
    DESCRIPTION = ("Draws a LOSS_MAP (from Fine-tune Upscale Model, or core's LoRA trainer) as an image: every "
                   "curve on one pair of axes, with its last value in the legend. Connect Preview Image or Save "
                   "Image to see or keep it.")
    CATEGORY = "training"
    FUNCTION = "draw"
    RETURN_TYPES = ("IMAGE",)
    OUTPUT_TOOLTIPS = ("The graph, 800x480 by default.",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "loss": ("LOSS_MAP", {"tooltip": "Loss name -> one value per step."}),
            "curves": ("STRING", {"default": "", "tooltip": (
                "Comma-separated names of the curves to draw (e.g. 'loss' or 'pixel, gan'); empty draws all.")}),
            "width": ("INT", {"default": 800, "min": 256, "max": 4096, "step": 8, "tooltip": "Image width."}),
            "height": ("INT", {"default": 480, "min": 192, "max": 4096, "step": 8, "tooltip": "Image height."}),
        }}

    def draw(self, loss: dict[str, list[float]], curves: str, width: int, height: int) -> tuple[torch.Tensor]:
        wanted = [name.strip() for name in curves.split(",") if name.strip()]
        unknown = [name for name in wanted if name not in loss]
        if unknown:
            raise ValueError(f"the loss map has no curve {', '.join(unknown)}; it has {', '.join(loss)}")
        chosen = {name: loss[name] for name in wanted} if wanted else loss
        return (loss_graph(chosen, width, height)[None],)
