"""Planning a fleet node by node, and packing small images into parcels: plain functions, no cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from realesr_core.cluster import ImageUnit, ScanUnit, Slot, fleet_for
from realesr_core.cluster.dispatch import PARCEL_PIXELS, PARCEL_UNITS, parcels
from realesr_core.errors import RealESRError

MIXED = [("cpu-small", {"CPU": 1.0}), ("gpu", {"CPU": 8.0, "GPU": 2.0}), ("cpu-big", {"CPU": 6.0})]


def test_a_mixed_fleet_uses_every_node_each_by_its_own_resources() -> None:
    """GPU upscalers on the GPU node (sharing its CPUs), CPU upscalers on the others, each node sized alone: the
    1-CPU node does not shrink the 6-CPU node's workers."""
    assert fleet_for(MIXED, None, None) == [
        Slot("gpu", 4, 1), Slot("gpu", 4, 1),
        Slot("cpu-small", 1, 0),
        Slot("cpu-big", 3, 0), Slot("cpu-big", 3, 0),
    ]


def test_a_device_keeps_the_fleet_to_its_kind() -> None:
    assert fleet_for(MIXED, "cuda", None) == [Slot("gpu", 4, 1), Slot("gpu", 4, 1)]
    assert fleet_for(MIXED, "cpu", None) == [Slot("cpu-small", 1, 0), Slot("gpu", 4, 0), Slot("gpu", 4, 0),
                                             Slot("cpu-big", 3, 0), Slot("cpu-big", 3, 0)]
    with pytest.raises(RealESRError, match=r"asks for GPUs, but the Ray cluster has none \(7 CPUs\)"):
        fleet_for([("a", {"CPU": 1.0}), ("b", {"CPU": 6.0})], "cuda:0", None)


def test_a_worker_count_is_spread_by_capacity_and_shares_what_it_must() -> None:
    nodes = [("gpu", {"CPU": 2.0, "GPU": 1.0}), ("cpu", {"CPU": 4.0})]
    assert fleet_for(nodes, None, 1) == [Slot("gpu", 2, 1)]  # the GPU first: one worker does the most there
    # five: three share the GPU (a third each, fractions of the node's 2 CPUs), two split the CPU node
    assert fleet_for(nodes, None, 5) == [Slot("gpu", 0.6666, 1 / 3)] * 3 + [Slot("cpu", 2, 0)] * 2
    with pytest.raises(RealESRError, match="at least 1"):
        fleet_for(nodes, None, 0)


def test_nodes_without_anything_to_upscale_on_are_left_out() -> None:
    assert fleet_for([("head", {"CPU": 0.0}), ("cpu", {"CPU": 2.0})], None, None) == [Slot("cpu", 2, 0)]
    with pytest.raises(RealESRError, match="no CPUs or GPUs"):
        fleet_for([("head", {"CPU": 0.0, "memory": 1e9})], None, None)


def test_small_images_travel_together_and_large_ones_alone() -> None:
    def image(name: str, pixels: int) -> ImageUnit:
        return ImageUnit(Path(name), Path(f"out/{name}"), pixels)

    tiny = [image(f"t{index}.png", 16 * 16) for index in range(PARCEL_UNITS + 3)]
    packed = list(parcels(tiny))
    assert [len(parcel) for parcel in packed] == [PARCEL_UNITS, 3]
    assert [index for parcel in packed for index, _unit in parcel] == list(range(PARCEL_UNITS + 3))
    photos = [image(f"p{index}.png", PARCEL_PIXELS // 2 + 1) for index in range(5)]
    assert [len(parcel) for parcel in parcels(photos)] == [2, 2, 1]  # about a megapixel each


def test_a_pause_in_planning_hands_out_what_is_packed() -> None:
    """None in the units (a video's scan is out: its segments are not known yet) sends the images packed so far,
    and is passed on; the numbering counts units only."""
    units = [ImageUnit(Path("a.png"), Path("out/a.png"), 256), None, ScanUnit(Path("v.mp4"), Path("out/v.mkv")),
             ImageUnit(Path("b.png"), Path("out/b.png"), 256)]
    packed = list(parcels(units))
    assert packed == [[(0, units[0])], None, [(1, units[2])], [(2, units[3])]]
