"""Planning a fleet node by node, and packing small images into parcels: plain functions, no cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from realesr_core.cluster import ImageUnit, Slot, fleet_for
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

    tiny = [(index, image(f"t{index}.png", 16 * 16)) for index in range(PARCEL_UNITS + 3)]
    packed = list(parcels(tiny))
    assert [len(parcel) for parcel in packed] == [PARCEL_UNITS, 3]
    assert [index for parcel in packed for index, _unit in parcel] == list(range(PARCEL_UNITS + 3))
    photos = [(index, image(f"p{index}.png", PARCEL_PIXELS // 2 + 1)) for index in range(5)]
    assert [len(parcel) for parcel in parcels(photos)] == [2, 2, 1]  # about a megapixel each


def test_ray_clients_dying_server_is_tried_again_and_other_failures_are_not(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray Client's per-driver server sometimes dies as it starts; the proxy takes the next connection. Only that
    failure is tried again (three times at most); a refused address is said at once."""
    ray = pytest.importorskip("ray")
    from realesr_core.cluster import connect, fleet

    dying = RuntimeError("Starting Ray client server failed. See ray_client_server_23000.err for detailed logs.")
    calls: list[Exception | None] = []

    def init_failing_with(*failures: Exception) -> None:
        calls.clear()

        def init(address: str, **_: object) -> None:
            calls.append(failures[len(calls)] if len(calls) < len(failures) else None)
            if calls[-1] is not None:
                raise calls[-1]

        monkeypatch.setattr(ray, "init", init)

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(fleet.time, "sleep", lambda seconds: None)
    init_failing_with(dying, dying)
    assert connect("ray://head:10001") and len(calls) == 3
    init_failing_with(dying, dying, dying)
    with pytest.raises(RealESRError, match="cannot reach a Ray cluster at ray://head:10001: .*client server failed"):
        connect("ray://head:10001")
    assert len(calls) == 3
    init_failing_with(ConnectionError("refused"))
    with pytest.raises(RealESRError, match="cannot reach a Ray cluster at ray://head:10001: refused"):
        connect("ray://head:10001")
    assert len(calls) == 1
