"""Writes the example workflows in example_workflows/ (UI format, what ComfyUI's template browser loads).

    python tools/make_workflows.py

Thumbnails (`<name>.jpg`) are made separately from each workflow's real output in ComfyUI.
"""

from __future__ import annotations

import json
from pathlib import Path

from workflow_format import build_ui
from workflow_format import widget_values as ours

OUT = Path(__file__).resolve().parents[1] / "example_workflows"
PHOTO = "example.png"  # ComfyUI ships input/example.png; pick any image in LoadImage
VIDEO = "clip.mp4"  # ComfyUI ships no video: upload one in Load Video
VIDEO_NOTE = ("Upload a video in Load Video (or put one in ComfyUI's input folder). Upscale Video streams it frame by "
              "frame (memory holds a few frames, not the clip) and keeps its audio; Save Video copies the result "
              "into output/ without encoding it again. realesr-animevideov3 is the fast model made for video.")
TRAINING_FOLDER = "realesr_photos"  # a folder in ComfyUI's input directory holding the training photos
FINETUNE_NOTE = ("Put a few dozen photos like the ones you want to upscale in input/realesr_photos (128 px or more; "
                 "or pick another folder in Load Training Images) and a held-out photo in Load Image. 300 steps "
                 "teach realesr-animevideov3 your photos (minutes on a GPU, about ten on a CPU). The held-out "
                 "photo, damaged the same way, is upscaled by the base model (top) and the fine-tuned one "
                 "(bottom); Save Upscale Model keeps the result in models/upscale_models.")
INTEROP_NOTE = ("Top: ComfyUI's Load Upscale Model into our Upscale Image. Bottom: our loader into ComfyUI's Upscale "
                "Image (using Model). ComfyUI's loader reads models/upscale_models, where Save Upscale Model puts "
                "RealESRGAN_x4plus.safetensors: on a first run ComfyUI skips the top row (its file is not there "
                "yet) and runs the rest; run again for both. An identical model is never saved twice.")
CHECKPOINT_NOTE = ("Needs a Stable Diffusion checkpoint in models/checkpoints (for example an SD 1.5 model); pick "
                   "it in Load Checkpoint. realesr's nodes need nothing else: the bundled RealESRGAN_x4plus is "
                   "converted from the official weights on first use.")
PROMPT = "a lighthouse on a rocky coast at sunset, detailed, photograph"
NEGATIVE = "blurry, low quality, watermark"


def load_image(node_id: int, pos: list[int]) -> dict:
    return {"id": node_id, "type": "LoadImage", "pos": pos, "widgets": [PHOTO, "image"], "size": [320, 330]}


def save(node_id: int, pos: list[int], source: list[int], prefix: str) -> dict:
    return {"id": node_id, "type": "SaveImage", "pos": pos, "inputs": {"images": source}, "widgets": [prefix],
            "size": [300, 290]}


def loader(node_id: int, pos: list[int], name: str = "RealESRGAN_x4plus") -> dict:
    return {"id": node_id, "type": "RealESR_LoadModel", "pos": pos, "widgets": ours("RealESR_LoadModel", model_name=name),
            "size": [320, 60]}


def upscale(node_id: int, pos: list[int], model: list[int], image: list[int], **widgets) -> dict:
    return {"id": node_id, "type": "RealESR_Upscale", "pos": pos, "inputs": {"upscale_model": model, "image": image},
            "widgets": ours("RealESR_Upscale", **widgets), "size": [340, 260]}


def note(node_id: int, pos: list[int], text: str, height: int = 170) -> dict:
    return {"id": node_id, "type": "Note", "pos": pos, "widgets": [text], "size": [320, height]}


def generation(first_id: int, width: int = 512) -> list[dict]:
    """Checkpoint -> prompts -> empty latent -> KSampler -> VAE decode (ids first_id .. first_id + 5), 1400 wide."""
    c, pos_id, neg_id, latent, sampler, decode = range(first_id, first_id + 6)
    return [
        {"id": c, "type": "CheckpointLoaderSimple", "pos": [0, 0], "widgets": ["v1-5-pruned-emaonly.safetensors"],
         "size": [320, 100]},
        {"id": pos_id, "type": "CLIPTextEncode", "pos": [380, 0], "inputs": {"clip": [c, 1]}, "widgets": [PROMPT],
         "size": [380, 150]},
        {"id": neg_id, "type": "CLIPTextEncode", "pos": [380, 210], "inputs": {"clip": [c, 1]}, "widgets": [NEGATIVE],
         "size": [380, 150]},
        {"id": latent, "type": "EmptyLatentImage", "pos": [380, 420], "widgets": [width, width, 1], "size": [380, 110]},
        {"id": sampler, "type": "KSampler", "pos": [820, 0],
         "inputs": {"model": [c, 0], "positive": [pos_id, 0], "negative": [neg_id, 0], "latent_image": [latent, 0]},
         "widgets": [42, "fixed", 20, 7.0, "euler", "normal", 1.0], "size": [320, 262]},
        {"id": decode, "type": "VAEDecode", "pos": [1180, 0], "inputs": {"samples": [sampler, 0], "vae": [c, 2]},
         "size": [220, 50]},
    ]


# Layout: 40 px between columns, 60 px (a title bar and a margin) between a node and the one below it; no node
# overlaps another and the saved view shows them all (tools/check_in_frontend.py checks both in the real frontend).
WORKFLOWS = {
    "realesr_upscale_x4": ("Upscale x4 with RealESRGAN_x4plus", [
        load_image(1, [0, 0]), loader(2, [0, 390]),
        upscale(3, [380, 0], [2, 0], [1, 0]),
        save(4, [780, 0], [3, 0], "realesr/x4"),
    ]),
    "realesr_upscale_exact_size": ("Upscale to an exact size: 2x with a x4 model, and 1000 pixels wide", [
        load_image(1, [0, 0]), loader(2, [0, 390]),
        upscale(3, [380, 0], [2, 0], [1, 0], size_mode="factor", factor=2.0),
        upscale(4, [380, 320], [2, 0], [1, 0], size_mode="width", size=1000),
        save(5, [780, 0], [3, 0], "realesr/x2"),
        save(6, [780, 350], [4, 0], "realesr/w1000"),
    ]),
    "realesr_upscale_video": ("Upscale a video x4, audio kept", [
        # the frontend sizes Load Video by its preview: at 320 wide it asks for 424 x 326 and, once a 4:3 clip's
        # preview is in, draws about 385 high; the nodes around it leave room for both
        {"id": 1, "type": "LoadVideo", "pos": [0, 0], "widgets": [VIDEO, "image"], "size": [320, 330]},
        loader(2, [0, 470], "realesr-animevideov3"),
        {"id": 3, "type": "RealESR_UpscaleVideo", "pos": [460, 0], "inputs": {"upscale_model": [2, 0], "video": [1, 0]},
         "widgets": ours("RealESR_UpscaleVideo"), "size": [340, 290]},
        {"id": 4, "type": "SaveVideo", "pos": [860, 0], "inputs": {"video": [3, 0]},
         "widgets": ["realesr/video_x4", "auto", "auto"], "size": [320, 330]},
        note(5, [460, 350], VIDEO_NOTE),
    ]),
    "realesr_txt2img_upscale": ("Generate, then upscale x4", [
        *generation(1), loader(7, [820, 330]),
        upscale(8, [1180, 110], [7, 0], [6, 0]),
        save(9, [1180, 430], [8, 0], "realesr/txt2img_x4"),
        note(10, [0, 160], CHECKPOINT_NOTE),
    ]),
    "realesr_hires_fix": ("Hires fix: generate, upscale x4, scale to 2x, refine at low denoise", [
        *generation(1), loader(7, [820, 330]),
        upscale(8, [1180, 110], [7, 0], [6, 0]),
        {"id": 9, "type": "ImageScaleBy", "pos": [0, 620], "inputs": {"image": [8, 0]},
         "widgets": ["lanczos", 0.5], "size": [320, 90]},
        {"id": 10, "type": "VAEEncode", "pos": [380, 620], "inputs": {"pixels": [9, 0], "vae": [1, 2]}, "size": [220, 50]},
        {"id": 11, "type": "KSampler", "pos": [640, 620],
         "inputs": {"model": [1, 0], "positive": [2, 0], "negative": [3, 0], "latent_image": [10, 0]},
         "widgets": [42, "fixed", 20, 7.0, "euler", "normal", 0.45], "size": [320, 262]},
        {"id": 12, "type": "VAEDecode", "pos": [1000, 620], "inputs": {"samples": [11, 0], "vae": [1, 2]},
         "size": [220, 50]},
        save(13, [1260, 620], [12, 0], "realesr/hires_fix"),
        note(14, [0, 160], CHECKPOINT_NOTE),
    ]),
    "realesr_degradation_pair": ("Real-ESRGAN degradation (x4 preset, fixed seed): degraded and clean side by side", [
        load_image(1, [0, 0]),
        {"id": 2, "type": "RealESR_Degrade", "pos": [380, 0], "inputs": {"image": [1, 0]},
         "widgets": ours("RealESR_Degrade", seed=7, size="keep size"), "size": [340, 300]},
        {"id": 3, "type": "PreviewImage", "pos": [780, 0], "inputs": {"images": [2, 0]}, "size": [300, 300]},
        {"id": 4, "type": "PreviewImage", "pos": [1120, 0], "inputs": {"images": [2, 1]}, "size": [300, 300]},
    ]),
    "realesr_degrade_for_realism": ("Degrade for realism: blur + noise + JPEG, ready for img2img", [
        load_image(1, [0, 0]),
        {"id": 2, "type": "RealESR_Blur", "pos": [380, 0], "inputs": {"image": [1, 0]},
         "widgets": ours("RealESR_Blur", kernel="aniso", kernel_size=15, sigma_x=1.6, sigma_y=0.8, rotation=30.0),
         "size": [320, 250]},
        {"id": 3, "type": "RealESR_Noise", "pos": [740, 0], "inputs": {"image": [2, 0]},
         "widgets": ours("RealESR_Noise", sigma=8.0, seed=3), "size": [320, 190]},
        {"id": 4, "type": "RealESR_JPEG", "pos": [1100, 0], "inputs": {"image": [3, 0]},
         "widgets": ours("RealESR_JPEG", quality=45.0), "size": [300, 100]},
        save(5, [1100, 160], [4, 0], "realesr/degraded"),
    ]),
    "realesr_finetune": ("Fine-tune realesr-animevideov3 on your photos; base and fine-tuned side by side", [
        {"id": 1, "type": "RealESR_LoadTrainingImages", "pos": [0, 0], "widgets": [TRAINING_FOLDER],
         "size": [320, 60]},
        loader(2, [0, 120], "realesr-animevideov3"),
        load_image(3, [0, 240]),
        note(4, [0, 630], FINETUNE_NOTE, height=200),
        {"id": 5, "type": "RealESR_FineTune", "pos": [380, 0], "inputs": {"upscale_model": [2, 0], "images": [1, 0]},
         "widgets": ours("RealESR_FineTune", stage="net", steps=300, learning_rate=0.0002, degradation="bicubic_x4"),
         "size": [340, 390]},
        {"id": 6, "type": "RealESR_Degrade", "pos": [380, 450], "inputs": {"image": [3, 0]},
         "widgets": ours("RealESR_Degrade", preset="bicubic_x4", seed=7), "size": [340, 300]},
        upscale(7, [760, 0], [2, 0], [6, 0]),
        upscale(8, [760, 320], [5, 0], [6, 0]),
        {"id": 9, "type": "RealESR_SaveModel", "pos": [760, 640], "inputs": {"upscale_model": [5, 0]},
         "widgets": ours("RealESR_SaveModel", filename="realesr_finetuned"), "size": [340, 90]},
        save(10, [1140, 0], [7, 0], "realesr/finetune_base"),
        save(11, [1140, 350], [8, 0], "realesr/finetune_tuned"),
        {"id": 12, "type": "RealESR_LossGraph", "pos": [1480, 0], "inputs": {"loss": [5, 1]},
         "widgets": ours("RealESR_LossGraph"), "size": [320, 160]},
        {"id": 13, "type": "PreviewImage", "pos": [1480, 220], "inputs": {"images": [12, 0]}, "size": [320, 300]},
    ]),
    "realesr_interop": ("Interop: ComfyUI's loader into our upscale, our loader into ComfyUI's upscale", [
        load_image(1, [0, 0]),
        {"id": 2, "type": "UpscaleModelLoader", "pos": [0, 390], "widgets": ["RealESRGAN_x4plus.safetensors"],
         "size": [320, 60]},
        upscale(3, [380, 0], [2, 0], [1, 0]),
        save(4, [780, 0], [3, 0], "realesr/interop_builtin_loader"),
        loader(5, [0, 510]),
        {"id": 6, "type": "ImageUpscaleWithModel", "pos": [380, 350], "inputs": {"upscale_model": [5, 0], "image": [1, 0]},
         "size": [340, 50]},
        save(7, [780, 350], [6, 0], "realesr/interop_builtin_upscale"),
        note(8, [0, 630], INTEROP_NOTE, height=200),
        {"id": 9, "type": "RealESR_SaveModel", "pos": [380, 460], "inputs": {"upscale_model": [5, 0]},
         "widgets": ours("RealESR_SaveModel", filename="RealESRGAN_x4plus"), "size": [340, 90]},
    ]),
}


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, (title, nodes) in WORKFLOWS.items():
        (OUT / f"{name}.json").write_text(json.dumps(build_ui(nodes, title), indent=1) + "\n")
        print(OUT / f"{name}.json")


if __name__ == "__main__":
    main()
