"""The plan of an upscale of files, made before any work: every input found (sub-folders mirrored), identified by
its content, named once (never two inputs to one output, never an output over an input), what is skipped listed."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from realesr_core.jobs import IN_MEMORY, TILED, VIDEO, PlanError, UpscaleJob, check_device, check_job, plan_upscale

from helpers import make_clip, photo


def image(path: Path, size: int = 8, format: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(photo(size)).save(path, format=format)
    return path


def plan(*inputs: Path | str, scale: int = 4, **job: object) -> tuple[list, str]:
    """The planned entries as (source, target) names relative to the test folder's root, and the skipped line."""
    if "output" in job:
        job["output"] = str(job["output"])
    planned = plan_upscale(UpscaleJob("model", inputs=tuple(map(str, inputs)), **job), scale)
    return list(planned), planned.skipped.summary()


def names(entries: list, root: Path) -> dict[str, str]:
    return {str(e.source.relative_to(root)): str(e.target.relative_to(root)) if e.target else e.problem
            for e in entries}


def test_inputs_sharing_a_name_get_one_output_each_by_one_rule(tmp_path: Path) -> None:
    """A camera's JPEG and its edited PNG, two videos of one clip, a Live Photo (its still and its movie share the
    name but not the kind of output), names differing only in case, and a file already named like a renamed one."""
    pytest.importorskip("av")
    folder = tmp_path / "in"
    image(folder / "IMG_1.JPG", format="JPEG")
    image(folder / "IMG_1.PNG")
    image(folder / "img_2.png")
    image(folder / "IMG_2.jpg")
    image(folder / "IMG_3.HEIC.jpg")
    image(folder / "a.png")
    image(folder / "a.tif")
    image(folder / "a_png.png")  # the name the rule would give a.png: a.png takes a_png2
    image(folder / "live.jpg")
    make_clip(folder / "live.mov", frames=2)
    make_clip(folder / "clip.mp4", frames=2)
    make_clip(folder / "clip.avi", frames=2)
    entries, skipped = plan(folder, output=tmp_path / "out")
    assert names(entries, tmp_path) == {
        "in/IMG_1.JPG": "out/IMG_1_jpg_x4.png", "in/IMG_1.PNG": "out/IMG_1_png_x4.png",
        "in/IMG_2.jpg": "out/IMG_2_jpg_x4.png", "in/img_2.png": "out/img_2_png_x4.png",
        "in/IMG_3.HEIC.jpg": "out/IMG_3.HEIC_x4.png",
        "in/a.png": "out/a_png2_x4.png", "in/a.tif": "out/a_tif_x4.tif", "in/a_png.png": "out/a_png_x4.png",
        "in/live.jpg": "out/live_x4.png", "in/live.mov": "out/live_x4.mov",
        "in/clip.avi": "out/clip_avi_x4.mkv", "in/clip.mp4": "out/clip_mp4_x4.mp4"}
    assert len({e.target for e in entries}) == len(entries)
    renamed = {e.source.name: e.renamed for e in entries if e.renamed}
    assert renamed["IMG_1.PNG"] == "shares its name with IMG_1.JPG" and "live.jpg" not in renamed
    assert skipped == ""
    # the same names whatever the order the files were made in, and on a second plan
    assert names(plan(folder, output=tmp_path / "out")[0], tmp_path) == names(entries, tmp_path)


def test_sub_folders_are_mirrored_and_recursion_can_be_turned_off(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    image(photos / "top.png")
    image(photos / "2019" / "03" / "beach.jpg", format="JPEG")
    image(photos / "2019" / "03" / "beach.png")
    image(photos / "2020" / "beach.jpg", format="JPEG")  # the same name in another folder is another output
    entries, _ = plan(photos, output=tmp_path / "big")
    assert names(entries, tmp_path) == {
        "photos/top.png": "big/top_x4.png", "photos/2019/03/beach.jpg": "big/2019/03/beach_jpg_x4.png",
        "photos/2019/03/beach.png": "big/2019/03/beach_png_x4.png", "photos/2020/beach.jpg": "big/2020/beach_x4.png"}
    entries, skipped = plan(photos, output=tmp_path / "big", recursive=False)
    assert names(entries, tmp_path) == {"photos/top.png": "big/top_x4.png"}
    assert skipped == (f"skipped 2: 2 sub-folders (not searched: --no-recursive) ({photos / '2019'}, "
                       f"{photos / '2020'})")
    beside, _ = plan(photos)  # without -o: beside each input, in its own folder
    assert names(beside, tmp_path)["photos/2020/beach.jpg"] == "photos/2020/beach_x4.png"


def test_an_output_over_an_input_is_refused_before_any_work(tmp_path: Path) -> None:
    same = image(tmp_path / "same.png")
    with pytest.raises(PlanError, match="is the input itself"):
        plan(same, output=same)
    with pytest.raises(PlanError, match="is the input itself"):
        plan(same, output=tmp_path / "." / "same.png")
    # a re-run beside the inputs: the first run's result is now an input, and would be replaced
    folder = tmp_path / "photos"
    image(folder / "a.png")
    image(folder / "a_x4.png")
    with pytest.raises(PlanError, match=f"{folder / 'a_x4.png'} is an input of this run, and the output of "
                                        f"{folder / 'a.png'} would replace it"):
        plan(folder)
    assert len(plan(folder, output=tmp_path / "out")[0]) == 2  # elsewhere, both are upscaled
    # an earlier output that is not an input (a folder of results) is replaced as before
    image(tmp_path / "out" / "a_x4.png")
    assert len(plan(folder, output=tmp_path / "out")[0]) == 2


def test_an_output_folder_inside_the_input_folder_is_not_searched(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    image(folder / "a.png")
    image(folder / "big" / "a_x4.png")  # the last run's result
    entries, skipped = plan(folder, output=folder / "big")
    assert names(entries, tmp_path) == {"photos/a.png": "photos/big/a_x4.png"}
    assert skipped == f"skipped 1: 1 the output folder ({folder / 'big'})"


def test_what_a_file_is_comes_from_its_content_and_the_rest_is_listed(tmp_path: Path) -> None:
    pytest.importorskip("av")
    folder = tmp_path / "card"
    image(folder / "saved_as_png.jpg", format="PNG")
    make_clip(folder / "camera.mp4", frames=2)
    os.rename(folder / "camera.mp4", folder / "camera.dat")  # a video whatever its name
    (folder / "notes.txt").write_text("day 1")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    (folder / "garbage.png").write_bytes(b"definitely not a png")
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    os.symlink(tmp_path, folder / "loop")
    entries, skipped = plan(folder, output=tmp_path / "out")
    planned = {e.source.name: e for e in entries}
    assert planned["saved_as_png.jpg"].how == IN_MEMORY and planned["saved_as_png.jpg"].target.name == \
        "saved_as_png_x4.png"
    assert planned["camera.dat"].how == VIDEO and planned["camera.dat"].target.name == "camera_x4.mkv"
    assert planned["garbage.png"].problem == ("not an image or video this tool reads (damaged, or not what its name "
                                              "says)")
    assert "cannot read image" in planned["broken.jpg"].problem  # a JPEG by its first bytes, its header cut off
    assert skipped == (f"skipped 3: 1 hidden ({folder / '.DS_Store'}); 1 links to folders (not followed) "
                       f"({folder / 'loop'}); 1 not an image or video ({folder / 'notes.txt'})")


def test_files_and_folders_given_together(tmp_path: Path) -> None:
    """Two folders into one output (their same-named files renamed), a folder inside another (searched once), a
    file the folder search reaches anyway (planned once), and a file that does not exist (a failure, named)."""
    image(tmp_path / "a" / "x.png")
    image(tmp_path / "b" / "x.jpg", format="JPEG")
    image(tmp_path / "a" / "sub" / "y.png")
    entries, skipped = plan(tmp_path / "a", tmp_path / "b", tmp_path / "a" / "sub", tmp_path / "a" / "x.png",
                            tmp_path / "gone.png", output=tmp_path / "out")
    assert names(entries, tmp_path) == {"gone.png": "does not exist", "a/x.png": "out/x_png_x4.png",
                                        "b/x.jpg": "out/x_jpg_x4.png", "a/sub/y.png": "out/sub/y_x4.png"}
    assert skipped == f"skipped 1: 1 folders inside another input folder (searched with it) ({tmp_path / 'a/sub'})"


def test_the_stream_decision_and_the_label(tmp_path: Path) -> None:
    import tifffile

    tifffile.imwrite(tmp_path / "scan.tif", photo(8))
    image(tmp_path / "photo.png")
    entries, _ = plan(tmp_path / "scan.tif", tmp_path / "photo.png", stream=True)
    assert [(e.target.name, e.how, e.shape) for e in entries] == [("photo_x4.tif", TILED, (8, 8, 3)),
                                                                  ("scan_x4.tif", TILED, (8, 8, 3))]
    from realesr_core.upscaling import UpscaleOptions

    entries, _ = plan(tmp_path / "photo.png", options=UpscaleOptions(outscale=2.5))
    assert entries[0].target.name == "photo_x2.5.png" and entries[0].how == IN_MEMORY
    entries, _ = plan(tmp_path / "photo.png", output=tmp_path / "x.png", stream=True)
    assert "name the output .tif" in entries[0].problem


def test_planning_is_lazy_one_folder_at_a_time(tmp_path: Path) -> None:
    """The first input is planned before later folders are even listed: a file added to one after the first entry
    came is still found (a million-file archive starts at once, holding one folder's listing)."""
    image(tmp_path / "in" / "a" / "one.png")
    image(tmp_path / "in" / "b" / "two.png")
    entries = iter(plan_upscale(UpscaleJob("model", inputs=(str(tmp_path / "in"),), output=str(tmp_path / "o")), 4))
    assert next(entries).source.name == "one.png"
    image(tmp_path / "in" / "b" / "late.png")
    assert [entry.source.name for entry in entries] == ["late.png", "two.png"]


def test_checks_before_work_name_what_to_change(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("a file")
    source = str(image(tmp_path / "a.png"))

    def problems(output: str | None, **job: object) -> list[str]:
        return check_job(UpscaleJob("model", inputs=(source,), output=output, **job))

    assert problems("/sys/out.png") == ["-o /sys/out.png: cannot write in /sys (Permission denied); choose another "
                                        "output"]
    assert problems(f"{tmp_path}/notes.txt/out.png") == [f"-o {tmp_path}/notes.txt/out.png: {tmp_path}/notes.txt "
                                                         f"is a file, not a folder; choose another output"]
    assert problems(str(tmp_path / "new" / "deeper" / "out.png")) == []  # folders that do not exist yet are made
    assert problems(str(tmp_path / "x.jpg"), bits=16) == [
        "--bits 16: x.jpg is JPEG, which holds 8 bits per channel; name a .png or .tif output for 16-bit images"]
    assert check_job(UpscaleJob("model", inputs=(source,), output=str(tmp_path / "x.png")), quality_asked=True) == [
        "--quality is for JPEG and WebP outputs, and x.png is PNG, stored without loss: leave --quality out, or name "
        "a .jpg or .webp output"]
    assert check_job(UpscaleJob("model", inputs=(source,), output=str(tmp_path / "x.webp")), quality_asked=True) == []
    several = UpscaleJob("model", inputs=(source, source), output=str(tmp_path / "notes.txt"))
    assert check_job(several) == [f"-o {tmp_path / 'notes.txt'} is a file; with a folder or several inputs, -o names "
                                  f"the output folder"]


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_a_device_that_is_not_there_is_named_before_work() -> None:
    from realesr_core.errors import RealESRError

    with pytest.raises(RealESRError, match=r"--device cuda: .*; leave --device out \(or use --device cpu\)"):
        check_device("cuda")
    with pytest.raises(RealESRError, match="--device gpu is not a device: use cpu, cuda or cuda:N"):
        check_device("gpu")
    assert check_device("cpu").type == "cpu" and check_device(None).type == "cpu"


def test_the_skipped_line_keeps_a_few_names_of_many(tmp_path: Path) -> None:
    for index in range(12):
        (tmp_path / f"sidecar{index:02d}.xmp").write_text("<x:xmpmeta/>")
    image(tmp_path / "photo.png")
    _, skipped = plan(tmp_path, output=tmp_path / "out")
    shown = ", ".join(str(tmp_path / f"sidecar{index:02d}.xmp") for index in range(5))
    assert skipped == f"skipped 12: 12 not an image or video ({shown} and 7 more)"
    assert np.all(np.asarray(Image.open(tmp_path / "photo.png")) == photo(8))  # planning reads, never writes
