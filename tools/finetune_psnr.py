"""The fine-tuning example workflow's data and its score: training photos and a held-out photo (public-domain photos
from scikit-image) put into ComfyUI's input folder, then the PSNR of the base and the fine-tuned model's upscales of
the held-out photo against the clean photo.

    python tools/finetune_psnr.py prepare COMFY/input      # input/realesr_photos/*.png and input/realesr_heldout.png
    python main.py --cpu --port 8188                        # in the ComfyUI checkout with this pack in custom_nodes
    python tools/run_in_comfyui.py --image realesr_heldout.png --only realesr_finetune --comfy-input COMFY/input
    python tools/finetune_psnr.py score COMFY/output        # the newest base and fine-tuned outputs
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from make_workflows import TRAINING_FOLDER  # noqa: E402

from realesr_core import read_image  # noqa: E402
from realesr_core.training import psnr  # noqa: E402

TRAINING_PHOTOS = ("astronaut", "coffee", "rocket", "hubble_deep_field", "stereo_motorcycle")
HELD_OUT = "chelsea"  # a cat: nothing like it is among the training photos
HELD_OUT_FILE = "realesr_heldout.png"
SCALE = 4


def _photo(name: str) -> np.ndarray:
    from skimage import data

    image = getattr(data, name)()
    image = (image[0] if isinstance(image, tuple) else image)[..., :3]  # a stereo pair's left view
    height, width = image.shape[0] // SCALE * SCALE, image.shape[1] // SCALE * SCALE  # the x4 damage divides it
    return np.ascontiguousarray(image[:height, :width])


def prepare(comfy_input: Path) -> None:
    folder = comfy_input / TRAINING_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for name in TRAINING_PHOTOS:
        Image.fromarray(_photo(name)).save(folder / f"{name}.png")
    Image.fromarray(_photo(HELD_OUT)).save(comfy_input / HELD_OUT_FILE)
    print(f"{len(TRAINING_PHOTOS)} training photos in {folder}, the held-out photo {comfy_input / HELD_OUT_FILE}")


def _newest(folder: Path, prefix: str) -> Path:
    found = sorted(folder.glob(f"{prefix}_*.png"), key=lambda path: path.stat().st_mtime)
    if not found:
        raise SystemExit(f"no {prefix}_*.png in {folder}: run the workflow first")
    return found[-1]


def score(comfy_output: Path) -> None:
    """PSNR (RGB, 8-bit, `SCALE` border pixels left out, as the trainer's validation) against the clean photo."""
    clean = torch.from_numpy(_photo(HELD_OUT)).permute(2, 0, 1)[None].float() / 255
    for label, prefix in (("base", "finetune_base"), ("fine-tuned", "finetune_tuned")):
        path = _newest(comfy_output / "realesr", prefix)
        result = read_image(path).tensor
        print(f"{label:>10}: {psnr(result, clean, crop_border=SCALE):.2f} dB  ({path.name})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["prepare", "score"])
    parser.add_argument("folder", type=Path, help="ComfyUI's input folder (prepare) or output folder (score)")
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.folder)
    else:
        score(args.folder)


if __name__ == "__main__":
    main()
