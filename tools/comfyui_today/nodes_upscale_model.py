"""A stand-in for today's ComfyUI upscale-model nodes (0.29 and later), for checking this pack against them in the
0.8.0 snapshot. Written from the contract described in shared/spec/COMFYUI.md ("Today's ComfyUI"), not copied.

    cp tools/comfyui_today/nodes_upscale_model.py <ComfyUI>/comfy_extras/nodes_upscale_model.py

What it reproduces: the loader puts a model patcher on every UPSCALE_MODEL (`.patcher`, CoreModelPatcher where it
exists, else ModelPatcher) and the upscale node starts from `upscale_model.patcher.load_device`, loads through
`load_models_gpu(..., force_full_load=True)`, moves the model explicitly, tiles 512/32 with ComfyUI's tiled_scale,
returns `intermediate_dtype()` images (float32 where 0.8.0 has no such function) and carries RGBA alpha through a
bilinear resize. A model without `.patcher` fails here exactly as it does in today's ComfyUI.
"""

import comfy.model_management as mm
import comfy.model_patcher
import comfy.utils
import folder_paths
import torch
from spandrel import ImageModelDescriptor, ModelLoader

TILE, OVERLAP, SMALLEST_TILE = 512, 32, 128


def _patcher_class():
    return getattr(comfy.model_patcher, "CoreModelPatcher", comfy.model_patcher.ModelPatcher)


class UpscaleModelLoader:
    CATEGORY = "model/loaders"
    FUNCTION = "load_model"
    RETURN_TYPES = ("UPSCALE_MODEL",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model_name": (folder_paths.get_filename_list("upscale_models"),)}}

    def load_model(self, model_name):
        state = comfy.utils.load_torch_file(folder_paths.get_full_path_or_raise("upscale_models", model_name),
                                            safe_load=True)
        if "module.layers.0.residual_group.blocks.0.norm1.weight" in state:
            state = comfy.utils.state_dict_prefix_replace(state, {"module.": ""})
        model = ModelLoader().load_from_state_dict(state).eval()
        if not isinstance(model, ImageModelDescriptor):
            raise Exception("Upscale model must be a single-image model.")
        model.patcher = _patcher_class()(model.model, load_device=mm.get_torch_device(),
                                         offload_device=mm.unet_offload_device())
        return (model,)


class ImageUpscaleWithModel:
    CATEGORY = "image/upscaling"
    FUNCTION = "upscale"
    RETURN_TYPES = ("IMAGE",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"upscale_model": ("UPSCALE_MODEL",), "image": ("IMAGE",)}}

    def upscale(self, upscale_model, image):
        device = upscale_model.patcher.load_device  # today's core: an UPSCALE_MODEL without a patcher fails here
        alpha = image[..., 3:4] if image.shape[-1] == 4 else None
        image = image[..., :3]
        working = TILE * TILE * 3 * image.element_size() * max(upscale_model.scale, 1.0) * 384.0
        working += image.nelement() * image.element_size()
        mm.load_models_gpu([upscale_model.patcher], memory_required=working, force_full_load=True)
        upscale_model.to(device)  # spandrel modules are not built from comfy ops: move them explicitly
        pixels = image.movedim(-1, -3).to(device)
        tile = TILE
        while True:
            try:
                steps = pixels.shape[0] * comfy.utils.get_tiled_scale_steps(pixels.shape[3], pixels.shape[2], tile_x=tile,
                                                                           tile_y=tile, overlap=OVERLAP)
                upscaled = comfy.utils.tiled_scale(pixels, lambda tile_pixels: upscale_model(tile_pixels.float()),
                                                   tile_x=tile, tile_y=tile, overlap=OVERLAP,
                                                   upscale_amount=upscale_model.scale,
                                                   pbar=comfy.utils.ProgressBar(steps),
                                                   output_device=mm.intermediate_device())
                break
            except Exception as error:
                if not isinstance(error, torch.cuda.OutOfMemoryError) or tile // 2 < SMALLEST_TILE:
                    raise
                tile //= 2
        dtype = mm.intermediate_dtype() if hasattr(mm, "intermediate_dtype") else torch.float32
        upscaled = upscaled.movedim(-3, -1).clamp(0, 1).to(dtype)
        if alpha is not None:
            alpha = comfy.utils.common_upscale(alpha.movedim(-1, -3).to(upscaled), upscaled.shape[2],
                                               upscaled.shape[1], "bilinear", "disabled")
            upscaled = torch.cat([upscaled, alpha.movedim(-3, -1)], dim=-1)
        return (upscaled,)


NODE_CLASS_MAPPINGS = {"UpscaleModelLoader": UpscaleModelLoader, "ImageUpscaleWithModel": ImageUpscaleWithModel}
