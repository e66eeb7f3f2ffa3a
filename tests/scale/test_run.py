"""`upscale --ray` on a real local Ray cluster: the same bytes as without Ray, a node lost mid-run, resuming, the GPU
request path on a logical GPU, the no-GPU error, and a corrupt input reported while the rest completes."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from realesr_core.cli import main
from realesr_core.errors import RealESRError
from realesr_core.media import video as video_module
from realesr_core.media.images import read_image
from realesr_core.models import zoo
from realesr_core.scale.run import WorkerPool, connect, plan_pool, run_units
from realesr_core.scale.units import MANIFEST_NAME, ImageUnit, Job
from realesr_core.upscaling import UpscaleOptions

from helpers import make_clip, photo

ray = pytest.importorskip("ray")
pytest.importorskip("av")

MODEL = ["-m", "realesr-animevideov3"]


def images(folder: Path, count: int, size: int = 20) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        Image.fromarray(photo(size, left=60 + 7 * index)).save(folder / f"photo{index:02d}.png")
    return folder


def outputs(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if not path.name.startswith(".")}


def manifest(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / MANIFEST_NAME).read_text().splitlines()]


def test_without_ray_the_error_names_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if it were not installed
    with pytest.raises(RealESRError, match=r"pip install 'realesr\[ray\]'"):
        connect("local")


def test_images_and_a_video_give_the_bytes_of_the_plain_run(cluster, tmp_path: Path, monkeypatch) -> None:
    """Three 8-bit photos, a 16-bit PNG and a clip cut into several keyframe segments (joined, audio muxed once)."""
    monkeypatch.setattr("realesr_core.media.video.segments.SEGMENT_SECONDS", 0.3)
    folder = images(tmp_path / "in", 3)
    Image.fromarray(photo(16).astype(np.uint16)[..., 0] * 257).save(folder / "deep.png")
    make_clip(folder / "clip.mkv", frames=10, keyframe_every=3)
    assert main(["upscale", str(folder), "-o", str(tmp_path / "plain"), *MODEL]) == 0
    assert main(["upscale", str(folder), "-o", str(tmp_path / "ray"), *MODEL, "--ray"]) == 0
    plain, spread = outputs(tmp_path / "plain"), outputs(tmp_path / "ray")
    assert sorted(spread) == ["clip_x4.mkv", "deep_x4.png", "photo00_x4.png", "photo01_x4.png", "photo02_x4.png"]
    assert spread == plain
    assert read_image(tmp_path / "ray" / "deep_x4.png").bit_depth == 16
    assert sorted(row["target"].rsplit("/", 1)[1] for row in manifest(tmp_path / "ray") if row["ok"]) == sorted(spread)
    assert [p.name for p in (tmp_path / "ray").iterdir() if p.name.startswith(".")] == [MANIFEST_NAME]  # no parts


def test_a_resumed_run_makes_only_what_is_missing(cluster, tmp_path: Path, capsys) -> None:
    folder = images(tmp_path / "in", 3)
    command = ["upscale", str(folder), "-o", str(tmp_path / "out"), *MODEL, "--ray"]
    assert main(command) == 0
    (tmp_path / "out" / "photo01_x4.png").unlink()
    kept = (tmp_path / "out" / "photo00_x4.png").stat().st_mtime_ns
    capsys.readouterr()
    assert main(command) == 0
    assert "1 output(s) made, 2 already done, 0 failed" in capsys.readouterr().out
    assert (tmp_path / "out" / "photo01_x4.png").exists()
    assert (tmp_path / "out" / "photo00_x4.png").stat().st_mtime_ns == kept


def test_a_corrupt_input_is_reported_and_the_rest_completes(cluster, tmp_path: Path, capsys) -> None:
    folder = images(tmp_path / "in", 2)
    whole = (folder / "photo01.png").read_bytes()
    (folder / "broken.png").write_bytes(whole[: len(whole) // 2])  # the header reads, the pixels do not
    (folder / "noise.png").write_bytes(b"not an image at all")
    assert main(["upscale", str(folder), "-o", str(tmp_path / "out"), *MODEL, "--ray"]) == 1
    assert sorted(outputs(tmp_path / "out")) == ["photo00_x4.png", "photo01_x4.png"]
    failed = {Path(row["path"]).name: row for row in manifest(tmp_path / "out") if not row["ok"]}
    assert sorted(failed) == ["broken.png", "noise.png"]
    assert "failed 2 times" in failed["broken.png"]["error"]  # retried, then reported
    assert "not an image" in failed["noise.png"]["error"]
    errors = capsys.readouterr().err
    assert "broken.png" in errors and "noise.png" in errors


def test_asking_a_cluster_without_gpus_for_them_fails_at_once(cluster, tmp_path: Path, capsys) -> None:
    folder = images(tmp_path / "in", 1)
    started = time.perf_counter()
    assert main(["upscale", str(folder), "-o", str(tmp_path / "out"), *MODEL, "--ray", "--device", "cuda"]) == 2
    assert time.perf_counter() - started < 30
    assert "asks for GPUs, but the Ray cluster has none" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_workers_that_cannot_start_stop_the_run_with_a_clear_error(cluster, tmp_path: Path) -> None:
    """A model every worker fails to load (here: a file only the driver could have had) ends the run with its reason,
    instead of Ray restarting the actors forever."""
    job = Job(str(tmp_path / "gone.pth"), UpscaleOptions(), video_module.VideoOptions(), None, 95, 10**8, None,
              str(zoo.cache_dir()))
    units = [ImageUnit(images(tmp_path / "in", 1) / "photo00.png", tmp_path / "out" / "photo00.png")]
    with pytest.raises(RealESRError, match="the Ray run stopped: .*gone.pth' is neither an existing file"):
        list(run_units(units, job, WorkerPool(1, 1, 0)))
    assert not (tmp_path / "out").exists()


def test_a_logical_gpu_gets_gpu_actors_that_compute_on_the_cpu(cluster, tmp_path: Path) -> None:
    """A node declaring one GPU (no CUDA behind it): one actor asks for it and falls back to the CPU."""
    assert plan_pool(None, None) == WorkerPool(workers=1, cpus=2, gpus=0)  # the 2-CPU head alone
    node = cluster.add_node(num_cpus=1, num_gpus=1)
    cluster.wait_for_nodes()
    try:
        assert plan_pool(None, 2) == WorkerPool(workers=2, cpus=1, gpus=0.5)  # two share the GPU
        pool = plan_pool(None, None)
        assert pool == WorkerPool(workers=1, cpus=1, gpus=1)
        folder = images(tmp_path / "in", 2)
        job = Job("realesr-animevideov3", UpscaleOptions(), video_module.VideoOptions(), None, 95, 10**8, None,
                  str(zoo.cache_dir()))
        units = [ImageUnit(source, tmp_path / "out" / source.name) for source in sorted(folder.iterdir())]
        statuses = list(run_units(units, job, pool))
        assert sorted(status["unit"] for status in statuses) == [0, 1]
        assert all(status["ok"] and status["device"] == "cpu" and status["node"] == node.node_id
                   for status in statuses)
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["photo00.png", "photo01.png"]
    finally:
        cluster.remove_node(node)
        cluster.wait_for_nodes()


def test_a_huge_image_is_spread_by_tile_rows_and_written_once(cluster, tmp_path: Path) -> None:
    """A tiled TIFF streamed in rows of tiles: the workers' rows, joined by the one writer, give the pixels of the
    plain streamed run (to within one level where two blend bands cross: the sums are added in another order)."""
    folder = tmp_path / "in"
    folder.mkdir()
    tifffile.imwrite(folder / "scan.tif", photo(72)[:, :56], photometric="rgb", tile=(16, 16), compression="zlib")
    options = [*MODEL, "--stream", "--tile", "16", "--precision", "fp32"]
    assert main(["upscale", str(folder / "scan.tif"), "-o", str(tmp_path / "plain.tif"), *options]) == 0
    assert main(["upscale", str(folder / "scan.tif"), "-o", str(tmp_path / "ray.tif"), *options, "--ray"]) == 0
    plain, spread = tifffile.imread(tmp_path / "plain.tif"), tifffile.imread(tmp_path / "ray.tif")
    assert spread.shape == (288, 224, 3)
    difference = np.abs(plain.astype(int) - spread.astype(int))
    assert difference.max() <= 1 and np.count_nonzero(difference) < 0.001 * difference.size
    assert not list(tmp_path.glob(".ray.tif.parts"))


def test_a_node_lost_mid_run_still_gives_every_output_once(cluster, tmp_path: Path) -> None:
    """Three one-CPU upscalers, one on a node that is removed as soon as it has made an output (its queued units
    go with it): Ray restarts that work elsewhere; every output exists once, is whole, and equals the plain run's."""
    folder = images(tmp_path / "in", 16, size=64)
    assert main(["upscale", str(folder), "-o", str(tmp_path / "plain"), *MODEL]) == 0
    node = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    out = tmp_path / "out"
    removed_after: list[int] = []

    def remove_once_it_worked() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                rows = manifest(out)
            except (OSError, ValueError):
                rows = []
            if any(node.node_id in row["nodes"] for row in rows):
                removed_after.append(len(rows))
                break
            time.sleep(0.02)
        cluster.remove_node(node)

    remover = threading.Thread(target=remove_once_it_worked)
    remover.start()
    try:
        assert main(["upscale", str(folder), "-o", str(out), *MODEL, "--ray", "--ray-workers", "3"]) == 0
    finally:
        remover.join()
    assert removed_after and removed_after[0] < 16  # the node worked, and was removed with work left
    assert outputs(out) == outputs(tmp_path / "plain")
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == [MANIFEST_NAME]  # no temporaries left
    made = [row for row in manifest(out) if row["ok"]]
    assert len(made) == 16 and len({row["target"] for row in made}) == 16
