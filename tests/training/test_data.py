"""Training data: folders scanned with unusable files skipped and listed, pairs matched and checked, crops that pad,
align and replay."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from realesr_core import RealESRError
from realesr_core.media.images import write_image
from realesr_core.training.data import (
    HighResolutionImages,
    ImagePairs,
    StepBatches,
    crop_or_pad,
    find_training_images,
    find_training_pairs,
    item_generator,
    load_rgb,
    memory_images,
    memory_pairs,
    paired_random_crop,
)

from helpers import photo, to_tensor


def test_scan_is_recursive_takes_16_bit_and_gray_and_lists_what_it_skips(tmp_path: Path) -> None:
    (tmp_path / "deep" / "er").mkdir(parents=True)
    Image.fromarray(photo(64)).save(tmp_path / "a.jpg")
    ramp = torch.linspace(0, 1, 64 * 64 * 3).view(1, 3, 64, 64)  # more levels than 8 bits hold
    write_image(tmp_path / "deep" / "b.png", ramp, bit_depth=16)
    Image.fromarray(photo(64)[..., 0]).save(tmp_path / "deep" / "er" / "gray.tif")
    Image.fromarray(photo(20)).save(tmp_path / "small.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.warns(UserWarning, match=r"skipped 2 training image") as caught:
        found = find_training_images(tmp_path, min_side=32)
    message = str(caught[0].message)
    assert "broken.png" in message and "small.png: 20x20 is smaller than the 32-px patch" in message
    assert [path.relative_to(tmp_path).as_posix() for path in found] == ["a.jpg", "deep/b.png", "deep/er/gray.tif"]
    assert load_rgb(found[2]).shape == (3, 64, 64)
    torch.testing.assert_close(load_rgb(found[1]), ramp[0], atol=1 / 65535, rtol=0)  # 16-bit precision survives


def test_empty_or_missing_folders_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(RealESRError, match="does not exist"):
        find_training_images(tmp_path / "nope", min_side=32)
    Image.fromarray(photo(20)).save(tmp_path / "small.png")
    with pytest.warns(UserWarning), pytest.raises(RealESRError, match="no usable training image"):
        find_training_images(tmp_path, min_side=32)


def test_crop_or_pad_mirrors_small_images_and_replays() -> None:
    image = to_tensor(photo(48))[0]
    padded = crop_or_pad(image, 400, item_generator(0, 0, 0))  # needs several mirrors
    assert padded.shape == (3, 400, 400)
    torch.testing.assert_close(padded, crop_or_pad(image, 400, item_generator(0, 0, 0)))
    big = to_tensor(photo(120))[0]
    crop = crop_or_pad(big, 100, item_generator(0, 0, 1))
    windows = big.unfold(1, 100, 1).unfold(2, 100, 1)  # every 100² window of the image
    assert any(torch.equal(windows[:, top, left], crop) for top in range(21) for left in range(21))
    with pytest.raises(RealESRError, match="cannot be mirrored"):
        crop_or_pad(torch.zeros(3, 1, 50), 400, item_generator(0, 0, 0))


def test_high_resolution_images_differ_by_index_and_epoch_and_replay(tmp_path: Path) -> None:
    Image.fromarray(photo(160)).save(tmp_path / "a.png")
    dataset = HighResolutionImages([tmp_path / "a.png"] * 2, seed=3, side=96)
    first, second = dataset[0, 0], dataset[0, 1]
    assert first.shape == (3, 96, 96) and not torch.equal(first, second)
    assert torch.equal(first, dataset[0, 0])
    assert not torch.equal(first, dataset[1, 0])


def test_pairs_match_by_relative_path_and_crop_aligned(tmp_path: Path) -> None:
    (tmp_path / "hr" / "sub").mkdir(parents=True)
    (tmp_path / "lr" / "sub").mkdir(parents=True)
    high = photo(128)
    low = np.asarray(Image.fromarray(high).resize((64, 64), Image.BICUBIC))
    Image.fromarray(high).save(tmp_path / "hr" / "sub" / "x.png")
    Image.fromarray(low).save(tmp_path / "lr" / "sub" / "x.webp", lossless=True)
    pairs = find_training_pairs(tmp_path / "hr", tmp_path / "lr", scale=2, patch=64)
    assert pairs == [(tmp_path / "lr" / "sub" / "x.webp", tmp_path / "hr" / "sub" / "x.png")]
    low_patch, high_patch = ImagePairs(pairs, patch=64, scale=2, seed=1)[0, 0]
    assert low_patch.shape == (3, 32, 32) and high_patch.shape == (3, 64, 64)
    downscaled = torch.nn.functional.interpolate(high_patch[None], scale_factor=0.5, mode="area")[0]
    assert (downscaled - low_patch).abs().mean() < 0.03  # the same place, not a neighbouring one


def test_paired_crop_coordinates_follow_the_scale() -> None:
    low = torch.arange(16.0).view(1, 4, 4)
    high = low.repeat_interleave(3, 1).repeat_interleave(3, 2)
    low_patch, high_patch = paired_random_crop(low, high, patch=6, scale=3, generator=item_generator(0, 0, 5))
    assert torch.equal(high_patch, low_patch.repeat_interleave(3, 1).repeat_interleave(3, 2))
    with pytest.raises(RealESRError, match="multiple of the scale"):
        paired_random_crop(low, high, patch=7, scale=3, generator=item_generator(0, 0, 5))


def test_bad_pairs_name_the_first_culprit(tmp_path: Path) -> None:
    for folder in ("hr", "lr"):
        (tmp_path / folder).mkdir()
    Image.fromarray(photo(64)).save(tmp_path / "hr" / "a.png")
    with pytest.raises(RealESRError, match=r"a.png has no low-resolution partner"):
        find_training_pairs(tmp_path / "hr", tmp_path / "lr", scale=2, patch=32)
    Image.fromarray(photo(30)).save(tmp_path / "lr" / "a.png")
    with pytest.raises(RealESRError, match=r"lr/a.png is 30x30 but its HR partner .* must be exactly 32x32"):
        find_training_pairs(tmp_path / "hr", tmp_path / "lr", scale=2, patch=32)
    Image.fromarray(photo(32)).save(tmp_path / "lr" / "a.png")
    with pytest.raises(RealESRError, match="smaller than the 96-px patch"):
        find_training_pairs(tmp_path / "hr", tmp_path / "lr", scale=2, patch=96)
    with pytest.raises(RealESRError, match="LR folder .* does not exist"):
        find_training_pairs(tmp_path / "hr", tmp_path / "missing", scale=2, patch=32)


def test_images_in_memory_load_as_files_do_and_bad_ones_are_named() -> None:
    rgba, gray = torch.rand(4, 44, 48), torch.rand(1, 40, 48)
    assert torch.equal(load_rgb(rgba), rgba[:3]) and torch.equal(load_rgb(gray), gray.expand(3, -1, -1))
    assert memory_images([rgba, gray], min_side=40) == [rgba, gray]
    with pytest.raises(RealESRError, match="training image 2 of 2 is 48x40, smaller than the 41-px patch"):
        memory_images([rgba, gray], min_side=41)
    with pytest.raises(RealESRError, match=r"image 1 of 1: expected .* channels, got 2"):
        memory_images([torch.zeros(2, 40, 40)], min_side=8)
    nan = torch.rand(3, 40, 40)
    nan[0, 5, 5] = float("nan")
    for bad, message in ((nan, "image 2 of 2: image contains NaN"), (torch.zeros(3, 0, 40), "image 2 of 2: .*empty"),
                         (torch.zeros(3, 40, 40, dtype=torch.uint8), "image 2 of 2: expected a float image"),
                         (torch.rand(1, 3, 40, 40), r"image 2 of 2 must be a \[C, H, W\] tensor")):
        with pytest.raises(RealESRError, match=message):
            memory_images([rgba, bad], min_side=8)
    with pytest.raises(RealESRError, match="no training images"):
        memory_images([], min_side=8)


def test_pairs_in_memory_go_by_position_and_bad_ones_are_named() -> None:
    high, low = torch.rand(3, 64, 48), torch.rand(3, 32, 24)
    assert memory_pairs([high], [low], scale=2, patch=32) == [(low, high)]
    with pytest.raises(RealESRError, match="2 high-resolution images but 1 low-resolution"):
        memory_pairs([high, high], [low], scale=2, patch=32)
    with pytest.raises(RealESRError, match="low-resolution image 1 is 24x32 but its partner is 48x64; at scale 4 it "
                                           "must be exactly 12x16"):
        memory_pairs([high], [low], scale=4, patch=32)
    with pytest.raises(RealESRError, match="high-resolution image 1 of 1 is 48x64, smaller than the 64-px patch"):
        memory_pairs([high], [low], scale=2, patch=64)


def test_step_batches_are_a_function_of_the_step_and_split_the_stream_between_ranks() -> None:
    whole = list(StepBatches(size=5, batch=4, seed=2, first_step=0, last_step=6))
    assert all(len(batch) == 4 for batch in whole)
    for epoch in range(4):  # each epoch visits every index once
        assert sorted(index for batch in whole for e, index in batch if e == epoch) == list(range(5))
    assert list(StepBatches(size=5, batch=4, seed=2, first_step=3, last_step=6)) == whole[3:]  # resume
    ranks = [list(StepBatches(size=5, batch=2, seed=2, first_step=0, last_step=6, rank=r, world=2)) for r in (0, 1)]
    assert [a + b for a, b in zip(*ranks, strict=True)] == whole  # two ranks of 2 = one process of 4
    assert whole != list(StepBatches(size=5, batch=4, seed=3, first_step=0, last_step=6))


def test_an_unreadable_pair_gives_way_to_the_next_readable_one_every_time(tmp_path: Path) -> None:
    for name in ("a", "b"):
        Image.fromarray(photo(64, "chelsea" if name == "a" else "coffee")).save(tmp_path / f"{name}_hr.png")
        Image.fromarray(photo(32, "chelsea" if name == "a" else "coffee")).save(tmp_path / f"{name}_lr.png")
    whole = (tmp_path / "a_lr.png").read_bytes()
    (tmp_path / "a_lr.png").write_bytes(whole[: len(whole) // 2])
    pairs = ImagePairs([(tmp_path / f"{name}_lr.png", tmp_path / f"{name}_hr.png") for name in ("a", "b")], 32, 2)
    with pytest.warns(UserWarning, match=r"skipped an unreadable training image: .*a_lr\.png"):
        first = pairs[(0, 0)]
    with pytest.warns(UserWarning, match="a_lr.png"):
        again = pairs[(0, 0)]
    assert all(torch.equal(x, y) for x, y in zip(first, again, strict=True))  # the same substitute
    (tmp_path / "b_lr.png").write_bytes(b"")
    with pytest.warns(UserWarning), pytest.raises(RealESRError, match="none of the 2 training images can be read"):
        pairs[(0, 0)]
