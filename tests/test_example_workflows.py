"""The example workflows: valid UI JSON, known node types, widgets that match our INPUT_TYPES, typed links, and
(for those without a checkpoint) a real run of the API-format prompt through our nodes and stand-ins."""

from __future__ import annotations

import json
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nodes import NODE_CLASS_MAPPINGS

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from make_workflows import TRAINING_FOLDER  # noqa: E402

from helpers import make_clip, photo  # noqa: E402
from workflow_format import BUILTINS, CONTROL, FREE_CANVAS, UPLOAD, node_box, signature, to_api  # noqa: E402

WORKFLOWS = sorted((ROOT / "example_workflows").glob("*.json"))


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def test_there_are_nine_with_thumbnails() -> None:
    assert len(WORKFLOWS) == 9
    for path in WORKFLOWS:
        thumbnail = path.with_suffix(".jpg")
        assert thumbnail.exists(), f"{path.name} has no thumbnail"
        assert Image.open(thumbnail).format == "JPEG"


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_ui_format(path: Path) -> None:
    workflow = load(path)
    assert workflow["version"] == 0.4
    ids = [n["id"] for n in workflow["nodes"]]
    assert len(set(ids)) == len(ids) and workflow["last_node_id"] == max(ids)
    assert workflow["last_link_id"] == max((link[0] for link in workflow["links"]), default=0)
    nodes = {n["id"]: n for n in workflow["nodes"]}
    for link_id, source, source_slot, target, target_slot, kind in workflow["links"]:
        output = nodes[source]["outputs"][source_slot]
        target_input = nodes[target]["inputs"][target_slot]
        assert output["type"] == target_input["type"] == kind, f"link {link_id} joins mismatched types"
        assert link_id in output["links"] and target_input["link"] == link_id
    for node in workflow["nodes"]:
        assert node["type"] in NODE_CLASS_MAPPINGS or node["type"] in BUILTINS, f"unknown node type {node['type']}"
        sig = signature(node["type"])
        assert [i["name"] for i in node["inputs"]] == [name for name, _ in sig["inputs"]]
        assert [(o["name"], o["type"]) for o in node["outputs"]] == [tuple(o) for o in sig["outputs"]]


@pytest.fixture
def comfy_input(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """ComfyUI's input directory holding the folder the fine-tuning workflow trains on (the dataset node lists the
    folders there)."""
    (tmp_path / TRAINING_FOLDER).mkdir()
    module = types.ModuleType("folder_paths")
    module.get_input_directory = lambda: str(tmp_path)
    module.get_input_subfolders = lambda: [TRAINING_FOLDER]
    monkeypatch.setitem(sys.modules, "folder_paths", module)


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_our_widgets_match_input_types(path: Path, comfy_input: None) -> None:
    for node in load(path)["nodes"]:
        if node["type"] not in NODE_CLASS_MAPPINGS:
            assert len(node["widgets_values"]) == len(BUILTINS[node["type"]]["widgets"])
            continue
        sig = signature(node["type"])
        values = node["widgets_values"]
        assert len(values) == len(sig["widgets"]), node["type"]
        for name, value in zip(sig["widgets"], values, strict=False):
            if name == CONTROL:
                assert value in ("fixed", "increment", "decrement", "randomize")
                continue
            kind, options = sig["widget_specs"][name]
            if isinstance(kind, list):
                assert value in kind, f"{node['type']}.{name}: {value!r} is not a choice"
            else:
                expected = {"INT": int, "FLOAT": (int, float), "STRING": str, "BOOLEAN": bool}[kind]
                assert isinstance(value, expected) and not (kind != "BOOLEAN" and isinstance(value, bool))
                if kind in ("INT", "FLOAT"):
                    assert options.get("min", -np.inf) <= value <= options.get("max", np.inf)
        if hasattr(NODE_CLASS_MAPPINGS[node["type"]], "VALIDATE_INPUTS"):
            cls = NODE_CLASS_MAPPINGS[node["type"]]
            named = dict(zip(sig["widgets"], values, strict=False))
            wanted = cls.VALIDATE_INPUTS.__code__.co_varnames[1 : cls.VALIDATE_INPUTS.__code__.co_argcount]
            assert cls.VALIDATE_INPUTS(**{k: named[k] for k in wanted if k in named}) is True


# ------------------------------------------------------------------------------------------- running the prompts


class StandIns:
    """LoadImage / SaveImage / PreviewImage, LoadVideo / SaveVideo (a VIDEO is a file path without ComfyUI) and
    ComfyUI's own upscale loader and node, minimal but real."""

    saved: list = []
    clip: Path | None = None

    @staticmethod
    def LoadImage(image: str):
        array = photo(64, "astronaut", 100, 180)
        tensor = torch.from_numpy(array).float()[None] / 255
        return tensor, torch.zeros(64, 64)

    @classmethod
    def SaveImage(cls, images, filename_prefix="ComfyUI"):
        cls.saved.append(images)
        return ()

    PreviewImage = SaveImage

    @classmethod
    def LoadVideo(cls, file: str):
        return (cls.clip,)

    @classmethod
    def SaveVideo(cls, video, filename_prefix="ComfyUI", format="auto", codec="auto"):
        cls.saved.append(video)
        return ()

    @staticmethod
    def UpscaleModelLoader(model_name: str):
        spandrel = pytest.importorskip("spandrel")
        from realesr_core import load_model

        return (spandrel.ModelLoader().load_from_state_dict(load_model(model_name.removesuffix(".safetensors"))
                                                            .state_dict()).eval(),)

    @staticmethod
    def ImageUpscaleWithModel(upscale_model, image):
        with torch.inference_mode():
            return (upscale_model(image.movedim(-1, 1)).clamp(0, 1).movedim(1, -1),)


def execute(prompt: dict) -> None:
    results: dict[str, tuple] = {}

    def run(node_id: str) -> tuple:
        if node_id not in results:
            node = prompt[node_id]
            inputs = {k: run(v[0])[v[1]] if isinstance(v, list) else v for k, v in node["inputs"].items()}
            cls = NODE_CLASS_MAPPINGS.get(node["class_type"])
            if cls is None:  # a built-in; ComfyUI passes only its declared inputs, not the frontend's extras
                extras = BUILTINS[node["class_type"]].get("prompt_extras", {})
                declared = {k: v for k, v in inputs.items() if k not in extras}
                results[node_id] = getattr(StandIns, node["class_type"])(**declared)
            else:
                out = getattr(cls(), cls.FUNCTION)(**inputs)
                results[node_id] = out if isinstance(out, tuple) else ()
        return results[node_id]

    for node_id, node in prompt.items():
        if BUILTINS.get(node["class_type"], {}).get("output_node") or getattr(
                NODE_CLASS_MAPPINGS.get(node["class_type"]), "OUTPUT_NODE", False):
            run(node_id)


EXPECTED = {  # output sizes for a 64x64 input (1000 wide takes two x4 passes, then a downscale)
    "realesr_upscale_x4": [(256, 256)],
    "realesr_upscale_exact_size": [(128, 128), (1000, 1000)],
    "realesr_degradation_pair": [(64, 64), (64, 64)],
    "realesr_degrade_for_realism": [(64, 64)],
    "realesr_interop": [(256, 256), (256, 256)],
}


# The graph, its widgets and the sizes it produces are what these runs test (the models have tests of their own), so
# the loaders get the compact model in place of x4plus: the exact-size workflow's two x4 passes take 14 s with x4plus.
FAST_MODEL = "realesr-animevideov3"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_workflows_execute(name: str) -> None:
    prompt = to_api(load(ROOT / "example_workflows" / f"{name}.json"))
    assert all(UPLOAD not in n["inputs"] and CONTROL not in n["inputs"] for n in prompt.values())
    for node in prompt.values():
        if "model_name" in node["inputs"]:
            node["inputs"]["model_name"] = FAST_MODEL
    StandIns.saved = []
    execute(prompt)
    sizes = sorted((int(img.shape[2]), int(img.shape[1])) for img in StandIns.saved)
    assert sizes == sorted(EXPECTED[name])
    for image in StandIns.saved:
        assert torch.isfinite(image).all() and 0 <= image.min() and image.max() <= 1


def test_video_workflow_executes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Load Video -> our loader -> Upscale Video -> Save Video: every frame x4, the audio kept."""
    av = pytest.importorskip("av")
    prompt = to_api(load(ROOT / "example_workflows" / "realesr_upscale_video.json"))
    assert [n["class_type"] for n in prompt.values()] == ["LoadVideo", "RealESR_LoadModel", "RealESR_UpscaleVideo",
                                                          "SaveVideo"]
    monkeypatch.setattr(StandIns, "clip", make_clip(tmp_path / "clip.mp4", frames=6))
    monkeypatch.setattr(StandIns, "saved", [])
    execute(prompt)
    [video] = StandIns.saved
    with av.open(str(video)) as container:
        frames = list(container.decode(video=0))
        assert [s.type for s in container.streams] == ["video", "audio"]
    assert len(frames) == 6 and (frames[0].width, frames[0].height) == (128, 96)
    shutil.rmtree(video.parent)


def test_generation_workflows_use_the_checkpoint_chain() -> None:
    for name in ("realesr_txt2img_upscale", "realesr_hires_fix"):
        prompt = to_api(load(ROOT / "example_workflows" / f"{name}.json"))
        types = [n["class_type"] for n in prompt.values()]
        assert "CheckpointLoaderSimple" in types and "RealESR_Upscale" in types and "Note" not in types


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_layout_opens_readable(path: Path) -> None:
    """No node (title bar included) overlaps another, and the saved view puts every node inside the canvas area
    that the frontend's toolbars, side bar, Run panel and minimap leave free."""
    workflow = load(path)
    boxes = {n["id"]: node_box(n) for n in workflow["nodes"]}
    overlapping = [(a, b) for a in boxes for b in boxes if a < b and boxes[a][0] < boxes[b][2] and
                   boxes[b][0] < boxes[a][2] and boxes[a][1] < boxes[b][3] and boxes[b][1] < boxes[a][3]]
    assert not overlapping
    view = workflow["extra"]["ds"]
    free_left, free_top, free_right, free_bottom = FREE_CANVAS
    for left, top, right, bottom in boxes.values():
        screen = [(x + view["offset"][0]) * view["scale"] for x in (left, right)]
        screen += [(y + view["offset"][1]) * view["scale"] for y in (top, bottom)]
        assert free_left - 0.5 <= screen[0] and screen[1] <= free_right + 0.5
        assert free_top - 0.5 <= screen[2] and screen[3] <= free_bottom + 0.5
    assert view["scale"] >= 0.6, "too small to read"
