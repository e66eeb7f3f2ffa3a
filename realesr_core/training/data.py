"""Training images as people have them: a folder of high-resolution images (any format our readers take, 8 or 16 bit,
gray or RGBA), or LR/HR pairs matched by relative path. Files that cannot be used are skipped with one warning that
lists them; a folder with nothing usable is an error before any training starts. A file whose header reads but whose
pixels do not (a truncated download) is found when it is first read: it is skipped then, with a warning naming it,
and the next readable image takes its place, the same one every time, so a replayed or resumed run sees the same
data. Images already in memory (ComfyUI
hands them over as tensors) are `TrainingImages`, checked as strictly: each was chosen, so a bad one is an error
naming it.

Items are (epoch, index) pairs and their random draws (crop, flip) come from a generator seeded by (seed, epoch,
index); `StepBatches` maps a step to its items by arithmetic alone. So any item replays exactly, and a resumed run needs
only the step it stopped at to see the same data as an uninterrupted one."""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import torch
import torch.nn.functional as F

from ..errors import ImageError, RealESRError
from ..image_tensors import check_images
from ..media.images import READABLE_SUFFIXES, image_shape, read_image

CROP_OR_PAD_SIDE = 400  # the official dataset crops or pads every ground truth to 400x400 before degrading it
ImageSource = Path | torch.Tensor  # an image file, or an image in memory: [C, H, W] float in 0..1, C = 1, 3 or 4
ImageSourceT = TypeVar("ImageSourceT")
ReadT = TypeVar("ReadT")


def _image_files(folder: Path, what: str) -> list[Path]:
    if not folder.is_dir():
        raise RealESRError(f"{what} folder {folder} does not exist or is not a folder")
    return sorted(path for path in folder.rglob("*") if path.suffix.lower() in READABLE_SUFFIXES and path.is_file())


def _warn_skipped(skipped: list[str]) -> None:
    if skipped:
        shown = "\n  ".join(skipped[:20]) + (f"\n  ... and {len(skipped) - 20} more" if len(skipped) > 20 else "")
        warnings.warn(f"skipped {len(skipped)} training image(s):\n  {shown}", stacklevel=3)


def find_training_images(folder: str | os.PathLike, min_side: int) -> list[Path]:
    """Every readable image under `folder` (recursively) whose shorter side is at least `min_side` (the patch)."""
    folder = Path(folder)
    usable, skipped = [], []
    for path in _image_files(folder, "training image"):
        try:
            height, width, _ = image_shape(path)
        except ImageError as exc:
            skipped.append(f"{path}: {exc}")
            continue
        if min(height, width) < min_side:
            skipped.append(f"{path}: {width}x{height} is smaller than the {min_side}-px patch")
        else:
            usable.append(path)
    _warn_skipped(skipped)
    if not usable:
        raise RealESRError(f"no usable training image in {folder} (recursively; {', '.join(READABLE_SUFFIXES)}, "
                           f"shorter side at least {min_side} px)")
    return usable


def find_training_pairs(hr_folder: str | os.PathLike, lr_folder: str | os.PathLike, scale: int,
                        patch: int) -> list[tuple[Path, Path]]:
    """(low, high) files matched by relative path (suffixes may differ); every low image must be exactly high / scale
    and the high one at least `patch` a side. A pair that breaks this is an error naming it: pairs are the user's
    data, and silently dropping one changes what the model learns."""
    hr_folder, lr_folder = Path(hr_folder), Path(lr_folder)
    low_by_name = {path.relative_to(lr_folder).with_suffix(""): path for path in _image_files(lr_folder, "LR")}
    pairs = []
    for high in _image_files(hr_folder, "HR"):
        name = high.relative_to(hr_folder).with_suffix("")
        low = low_by_name.get(name)
        if low is None:
            raise RealESRError(f"{high} has no low-resolution partner {lr_folder / name}.* in the LR folder")
        (high_h, high_w, _), (low_h, low_w, _) = image_shape(high), image_shape(low)
        if (low_h * scale, low_w * scale) != (high_h, high_w):
            raise RealESRError(f"{low} is {low_w}x{low_h} but its HR partner {high} is {high_w}x{high_h}; at scale "
                               f"{scale} the LR image must be exactly {high_w / scale:g}x{high_h / scale:g}")
        if min(high_h, high_w) < patch:
            raise RealESRError(f"{high} is {high_w}x{high_h}, smaller than the {patch}-px patch")
        pairs.append((low, high))
    if not pairs:
        raise RealESRError(f"no image pairs: {hr_folder} holds no image")
    return pairs


@dataclass
class TrainingImages:
    """Training data already in memory, in place of the config's folders: `[C, H, W]` float tensors in 0..1 (C = 1,
    3 or 4; sizes may differ). `low[i]` is the low-resolution partner of `high[i]` for paired training (None: the
    degradation makes the inputs); `validation_high` (and, paired, `validation_low`) are held-out images."""

    high: list[torch.Tensor]
    low: list[torch.Tensor] | None = None
    validation_high: list[torch.Tensor] = field(default_factory=list)
    validation_low: list[torch.Tensor] | None = None


def _check_memory_image(image: torch.Tensor, what: str) -> tuple[int, int]:
    """The engine's own checks (float, not empty, finite, gray/RGB/RGBA) on a `[C, H, W]` image, naming it."""
    if not isinstance(image, torch.Tensor) or image.dim() != 3:
        raise RealESRError(f"{what} must be a [C, H, W] tensor, got {getattr(image, 'shape', type(image).__name__)}")
    try:
        check_images(image[None], (1, 3, 4))
    except ImageError as exc:
        raise RealESRError(f"{what}: {exc}") from exc
    return int(image.shape[-2]), int(image.shape[-1])


def memory_images(images: Sequence[torch.Tensor], min_side: int, what: str = "training image") -> list[torch.Tensor]:
    """The in-memory counterpart of find_training_images: every image a float `[C, H, W]` whose shorter side is at
    least `min_side`, else an error naming it by position."""
    if not images:
        raise RealESRError(f"no {what}s were given")
    for index, image in enumerate(images):
        height, width = _check_memory_image(image, f"{what} {index + 1} of {len(images)}")
        if min(height, width) < min_side:
            raise RealESRError(f"{what} {index + 1} of {len(images)} is {width}x{height}, smaller than the "
                               f"{min_side}-px patch: leave it out or use a smaller patch")
    return list(images)


def memory_pairs(high: Sequence[torch.Tensor], low: Sequence[torch.Tensor], scale: int,
                 patch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The in-memory counterpart of find_training_pairs: (low, high) by position, as many of each, every low image
    exactly high / scale and every high one at least `patch` a side; the first bad pair is named."""
    if len(high) != len(low):
        raise RealESRError(f"{len(high)} high-resolution images but {len(low)} low-resolution ones: pairs go by "
                           f"position, so give as many of each")
    memory_images(high, patch, "high-resolution image")
    for index, (high_image, low_image) in enumerate(zip(high, low, strict=True)):
        high_h, high_w = high_image.shape[-2:]
        low_h, low_w = _check_memory_image(low_image, f"low-resolution image {index + 1} of {len(low)}")
        if (low_h * scale, low_w * scale) != (high_h, high_w):
            raise RealESRError(f"low-resolution image {index + 1} is {low_w}x{low_h} but its partner is "
                               f"{high_w}x{high_h}; at scale {scale} it must be exactly "
                               f"{high_w / scale:g}x{high_h / scale:g}")
    return list(zip(low, high, strict=True))


def load_rgb(source: ImageSource) -> torch.Tensor:
    """`[3, H, W]` float32 in 0..1 from a file or an image in memory: gray is repeated, alpha dropped (the networks
    train on colour)."""
    image = source.float() if isinstance(source, torch.Tensor) else read_image(source).tensor[0]
    return image.expand(3, -1, -1).clone() if image.shape[0] == 1 else image[:3]


def first_readable(sources: Sequence[ImageSourceT], index: int, read: Callable[[ImageSourceT], ReadT]) -> ReadT:
    """`read(sources[index])`, or, for a file that cannot be read, the next source that can (wrapping around), with
    a warning naming the file: a file that fails fails every time, so the substitute is always the same."""
    for offset in range(len(sources)):
        source = sources[(index + offset) % len(sources)]
        try:
            return read(source)
        except ImageError as exc:
            if offset == len(sources) - 1:
                raise RealESRError(f"none of the {len(sources)} training images can be read; the last: {exc}") from exc
            warnings.warn(f"skipped an unreadable training image: {exc}", stacklevel=2)
    raise RealESRError("no training images")


def item_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    return torch.Generator().manual_seed((((seed * 1_000_003) + epoch) * 1_000_003 + index) % 2**63)


def crop_or_pad(image: torch.Tensor, side: int, generator: torch.Generator) -> torch.Tensor:
    """A random `side`² crop; a smaller image is first mirrored at its bottom and right edges (reflect-101)."""
    if min(image.shape[-2:]) < 2:
        raise RealESRError(f"a {image.shape[-1]}x{image.shape[-2]} image cannot be mirrored up to {side}x{side}")
    while image.shape[-2] < side or image.shape[-1] < side:  # one mirror at most doubles a side
        pad_h, pad_w = (min(side - size, size - 1) if size < side else 0 for size in image.shape[-2:])
        image = F.pad(image[None], (0, pad_w, 0, pad_h), mode="reflect")[0]
    top, left = _random_corner(image, side, generator)
    return image[..., top:top + side, left:left + side]


def _random_corner(image: torch.Tensor, side: int, generator: torch.Generator) -> tuple[int, int]:
    """Top-left corner of a uniformly placed `side`² window."""
    top = int(torch.randint(image.shape[-2] - side + 1, (1,), generator=generator))
    left = int(torch.randint(image.shape[-1] - side + 1, (1,), generator=generator))
    return top, left


def random_hflip(*images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """The same horizontal flip (or none, even odds) for every image given."""
    flip = bool(torch.rand((), generator=generator) < 0.5)
    return tuple(image.flip(-1) if flip else image for image in images)


def paired_random_crop(low: torch.Tensor, high: torch.Tensor, patch: int, scale: int,
                       generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Aligned crops: a (patch / scale)² low patch and the patch² high one that it came from."""
    if patch % scale:
        raise RealESRError(f"the patch ({patch}) must be a multiple of the scale ({scale})")
    low_side = patch // scale
    top, left = _random_corner(low, low_side, generator)
    return (low[..., top:top + low_side, left:left + low_side],
            high[..., top * scale:(top + low_side) * scale, left * scale:(left + low_side) * scale])


@dataclass
class HighResolutionImages(torch.utils.data.Dataset):
    """Ground truths for on-the-fly degradation: each image cropped or padded to 400² and maybe flipped."""

    images: list[ImageSource]
    seed: int = 0
    side: int = CROP_OR_PAD_SIDE

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, item: tuple[int, int]) -> torch.Tensor:
        epoch, index = item
        generator = item_generator(self.seed, epoch, index)
        image = first_readable(self.images, index, load_rgb)
        return random_hflip(crop_or_pad(image, self.side, generator), generator=generator)[0]


@dataclass
class ImagePairs(torch.utils.data.Dataset):
    """Paired fine-tuning data: aligned random crops of (low, high) with the same flip."""

    pairs: list[tuple[ImageSource, ImageSource]]  # (low, high)
    patch: int
    scale: int
    seed: int = 0

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, index = item
        generator = item_generator(self.seed, epoch, index)
        low, high = first_readable(self.pairs, index, lambda pair: (load_rgb(pair[0]), load_rgb(pair[1])))
        low, high = paired_random_crop(low, high, self.patch, self.scale, generator)
        flipped_low, flipped_high = random_hflip(low, high, generator=generator)
        return flipped_low, flipped_high


class StepBatches(torch.utils.data.Sampler):
    """The (epoch, index) items of each step from `first_step` to `last_step`: the data is one endless stream, each
    epoch a seeded permutation of the dataset, and every step takes the next `batch x world` items, rank r its r-th
    share. (The stream crosses epoch boundaries: a folder smaller than a batch still trains.)"""

    def __init__(self, size: int, batch: int, seed: int, first_step: int, last_step: int, rank: int = 0,
                 world: int = 1) -> None:
        self.size, self.batch, self.seed = size, batch, seed
        self.first_step, self.last_step, self.rank, self.world = first_step, last_step, rank, world

    def __len__(self) -> int:
        return max(self.last_step - self.first_step, 0)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.first_step, self.last_step):
            start = (step * self.world + self.rank) * self.batch
            yield [self.item(position) for position in range(start, start + self.batch)]

    def item(self, position: int) -> tuple[int, int]:
        epoch, offset = divmod(position, self.size)
        return epoch, self._order(epoch)[offset]

    @functools.lru_cache(maxsize=2)  # noqa: B019 - two epochs at most are live; the sampler lives as long as its run
    def _order(self, epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed((self.seed * 7919 + epoch) % 2**63)
        return torch.randperm(self.size, generator=generator).tolist()
