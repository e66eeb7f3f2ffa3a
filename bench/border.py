"""Benchmark: what a reflected border around the image does to the pixels near its edges.

    python bench/border.py                                  # x4plus, anime_6B, animevideov3; borders 0 1 2 4 10
    python bench/border.py --models RealESRGAN_x4plus --borders 0 10

Two references for the same crops of seven public-domain photos (scikit-image), edge band = the outer 8 input
pixels of a 96x96 crop:
- surroundings: the same network run on the crop plus 40 real pixels on every side, cropped back. The closest a
  border can bring a crop to is the upscale of a larger image: this is what tiles and seams are judged against.
- ground truth: the photo itself, with the crop taken from its antialiased bicubic downscale by the model's scale.
Mean MSE over all crops, shown as PSNR; "best" counts the crops on which each border was closest.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from realesr_core import (
    load_model,  # noqa: E402
    upscale,  # noqa: E402
)

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "retina")
CROP, CONTEXT, BAND = 96, 40, 8
PLACES = ((0.3, 0.35), (0.6, 0.6))  # crop positions, as fractions of the free range


def photos() -> list[torch.Tensor]:
    from skimage import data

    images = []
    for name in PHOTOS:
        image = torch.from_numpy(getattr(data, name)().copy()).permute(2, 0, 1)[None].float() / 255
        images.append(F.interpolate(image, scale_factor=0.5, mode="area") if min(image.shape[-2:]) > 600 else image)
    return images


def edge_band_error(result: torch.Tensor, reference: torch.Tensor, scale: int) -> float:
    inner = torch.ones_like(reference, dtype=torch.bool)
    inner[..., BAND * scale : -BAND * scale, BAND * scale : -BAND * scale] = False
    return float(((result - reference) ** 2)[inner].mean())


def measure(name: str, borders: list[int], precision: str) -> dict[str, dict[int, list[float]]]:
    model = load_model(name)
    scale = model.scale
    errors: dict[str, dict[int, list[float]]] = {"surroundings": {b: [] for b in borders},
                                                  "ground truth": {b: [] for b in borders}}
    for image in photos():
        low = F.interpolate(image, scale_factor=1 / scale, mode="bicubic", antialias=True).clamp(0, 1)
        for source, key in ((image, "surroundings"), (low, "ground truth")):
            height, width = source.shape[-2:]
            margin = CONTEXT if key == "surroundings" else 0
            for fy, fx in PLACES:
                y = min(max(int(fy * (height - CROP)), margin), height - CROP - margin)
                x = min(max(int(fx * (width - CROP)), margin), width - CROP - margin)
                crop = source[..., y : y + CROP, x : x + CROP]
                if key == "surroundings":
                    wide = source[..., y - CONTEXT : y + CROP + CONTEXT, x - CONTEXT : x + CROP + CONTEXT]
                    inside = slice(CONTEXT * scale, (CONTEXT + CROP) * scale)
                    reference = upscale(model, wide, precision=precision).image[..., inside, inside]
                else:
                    reference = image[..., y * scale : (y + CROP) * scale, x * scale : (x + CROP) * scale]
                for border in borders:
                    result = upscale(model, crop, border=border, precision=precision).image
                    errors[key][border].append(edge_band_error(result, reference, scale))
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*",
                        default=["RealESRGAN_x4plus", "RealESRGAN_x4plus_anime_6B", "realesr-animevideov3"])
    parser.add_argument("--borders", type=int, nargs="*", default=[0, 1, 2, 4, 10])
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()
    torch.manual_seed(0)
    header = " | ".join(f"border {b}" for b in args.borders)
    print(f"| model | reference | {header} | best (crops) |")
    print("|---|---|" + "---|" * len(args.borders) + "---|")
    for name in args.models:
        for reference, by_border in measure(name, args.borders, args.precision).items():
            table = np.array([by_border[b] for b in args.borders])
            cells = " | ".join(f"{10 * np.log10(1 / row.mean()):.2f} dB" for row in table)
            wins = np.bincount(table.argmin(0), minlength=len(args.borders))
            print(f"| {name} | {reference} | {cells} | {' / '.join(map(str, wins))} |", flush=True)


if __name__ == "__main__":
    main()
