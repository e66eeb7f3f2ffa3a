"""The losses of a run step by step, as a host that shows training live keeps them (ComfyUI's LOSS_MAP: loss name ->
one value per step), and a picture of them: the loss graph a user looks at to see whether fine-tuning converged."""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .config import LOSS_NAMES

# what a loss graph shows: the generator's weighted losses and the discriminator's two (its logits and the learning
# rate are logged too, in metrics.jsonl, but are no losses)
RECORDED = (*LOSS_NAMES, "d_real", "d_fake")
TOTAL = "loss"  # the generator's weighted total: the key ComfyUI's own loss graph node draws
COLOURS = ["#1f4e9c", "#d1495b", "#2a9d8f", "#e9a03b", "#7b4fa0", "#5c677d", "#8ab17d", "#c8553d"]


class LossHistory:
    """A run's `progress` callback that keeps every step's losses by name, `loss` (the generator's weighted total)
    first. The run hands `progress` the mean of the values since the last log, so give the run `log_every=1` for
    one value per step. A skipped step (non-finite loss) logs nothing and is left out of every list."""

    def __init__(self) -> None:
        self.values: dict[str, list[float]] = {}

    def __call__(self, done: int, total: int, values: dict[str, float]) -> None:
        generator = [value for name, value in values.items() if name in LOSS_NAMES]
        if not generator:
            return
        recorded = {TOTAL: sum(generator), **{name: values[name] for name in RECORDED if name in values}}
        for name, value in recorded.items():
            self.values.setdefault(name, []).append(value)


def loss_graph(history: dict[str, list[float]], width: int = 800, height: int = 480) -> torch.Tensor:
    """The curves of `history` (name -> value per step) on one pair of axes, with a legend of each curve's last
    value: `[height, width, 3]` float32 in 0..1. Non-finite values are left out of the curves."""
    curves = {name: values for name, values in history.items() if values}
    if not curves:
        raise ValueError("the loss map holds no values to draw")
    finite = [value for values in curves.values() for value in values if math.isfinite(value)]
    low, high = (min(finite), max(finite)) if finite else (0.0, 1.0)
    if high - low < 1e-12:
        low, high = low - 0.5, high + 0.5
    steps = max(len(values) for values in curves.values())
    left, top, right, bottom = 64, 16, width - 16, height - 40
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()

    def point(step: int, value: float) -> tuple[float, float]:
        x = left + (right - left) * (step / max(steps - 1, 1))
        return x, bottom - (bottom - top) * (value - low) / (high - low)

    for fraction in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = bottom - (bottom - top) * fraction
        draw.line([(left, y), (right, y)], fill="#e6e6e6")
        draw.text((4, y - 6), f"{low + (high - low) * fraction:.4g}", fill="black", font=font)
    draw.line([(left, top), (left, bottom), (right, bottom)], fill="black", width=2)
    draw.text((left, bottom + 8), "step 1", fill="black", font=font)
    draw.text((right - 60, bottom + 8), f"step {steps}", fill="black", font=font)
    for index, (name, values) in enumerate(curves.items()):
        colour = COLOURS[index % len(COLOURS)]
        segments: list[list[tuple[float, float]]] = [[]]
        for step, value in enumerate(values):  # a non-finite value breaks the curve
            if math.isfinite(value):
                segments[-1].append(point(step, value))
            elif segments[-1]:
                segments.append([])
        for segment in segments:
            if len(segment) > 1:
                draw.line(segment, fill=colour, width=2)
            elif segment:
                draw.point(segment, fill=colour)
        draw.text((right - 150, top + 4 + 14 * index), f"{name}: {values[-1]:.4g}", fill=colour, font=font)
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)
