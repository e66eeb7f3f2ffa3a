"""The Export Upscale Model node: files in ComfyUI's output folder, never overwritten, named for Upscayl, checked by
their runtime on request; models from ComfyUI's own loader too."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import torch

from nodes import NODE_CLASS_MAPPINGS
from nodes.upscale_model import to_upscale_model
from realesr_core import load_model
from realesr_core.export import ExportError, run_exported

from helpers import bhwc, spandrel_model

NCNN, ONNX = "ncnn (.param + .bin)", "ONNX (.onnx)"


@pytest.fixture
def output_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """ComfyUI's folder_paths with its output directory."""
    module = types.ModuleType("folder_paths")
    module.get_output_directory = lambda: str(tmp_path / "output")
    monkeypatch.setitem(sys.modules, "folder_paths", module)
    return tmp_path / "output"


def export(model, **changes) -> list[str]:
    node = NODE_CLASS_MAPPINGS["RealESR_ExportModel"]
    widgets = {name: options.get("default") for name, (_, options) in node.INPUT_TYPES()["required"].items()
               if name != "upscale_model"}
    widgets.update(changes)
    return node().export(model, **widgets)["ui"]["text"]


def test_writes_into_the_output_folder_and_never_overwrites(compact, output_folder: Path) -> None:
    model = to_upscale_model(compact)
    first = export(model, filename_prefix="mine/anime")
    second = export(model, filename_prefix="mine/anime")
    assert first == [str(output_folder / "mine" / "anime.param"), str(output_folder / "mine" / "anime.bin")]
    assert second == [str(output_folder / "mine" / "anime_001.param"), str(output_folder / "mine" / "anime_001.bin")]
    assert load_model(second[0]).state_dict()["body.0.weight"].equal(compact.state_dict()["body.0.weight"])
    onnx = export(model, filename_prefix="mine/anime", format=ONNX, precision="fp16", onnx_width=32, onnx_height=16)
    assert onnx == [str(output_folder / "mine" / "anime.onnx")]
    assert run_exported(onnx[0], bhwc(32)[:, :16].movedim(-1, 1)).shape == (1, 3, 64, 128)


def test_ncnn_names_carry_the_scale_upscayl_reads(output_folder: Path) -> None:
    model = to_upscale_model(load_model("realesr-animevideov3-x2"))
    (param, _), again = export(model, filename_prefix="anime"), export(model, filename_prefix="anime")
    assert Path(param).name == "anime-x2.param" and Path(again[0]).name == "anime-x2_001.param"


def test_check_image_reports_the_runtimes_figure(compact, output_folder: Path) -> None:
    for format_name, runtime in ((NCNN, "ncnn"), (ONNX, "onnxruntime")):
        lines = export(to_upscale_model(compact), format=format_name, check_image=bhwc(40))
        assert lines[-1].startswith(f"checked with {runtime} (CPU): ") and float(lines[-1].split()[4]) >= 50


def test_comfyuis_own_loader_models_export(output_folder: Path) -> None:
    """ComfyUI's Load Upscale Model gives spandrel descriptors: ESRGAN and Compact are rebuilt as ours, other
    architectures are named."""
    esrgan = spandrel_model("ESRGAN")
    (param, _) = export(esrgan, filename_prefix="esrgan")
    with torch.inference_mode():
        expected = esrgan(bhwc(12).movedim(-1, 1))
    torch.testing.assert_close(run_exported(param, bhwc(12).movedim(-1, 1)).clamp(0, 1), expected, atol=1e-5, rtol=0)
    with pytest.raises(ExportError, match="own RRDBNet and SRVGGNetCompact networks; this model is SwinIR"):
        export(spandrel_model("SwinIR"), filename_prefix="swinir")
    assert sorted(p.name for p in output_folder.iterdir()) == ["esrgan.bin", "esrgan.param"]


def test_validation_messages() -> None:
    node = NODE_CLASS_MAPPINGS["RealESR_ExportModel"]
    assert node.VALIDATE_INPUTS(filename_prefix="realesr/model", onnx_width=0, onnx_height=0) is True
    for prefix in ("../x", "/etc/x", " ", "a\\..\\b"):
        assert "relative name" in node.VALIDATE_INPUTS(filename_prefix=prefix, onnx_width=0, onnx_height=0)
    assert "both" in node.VALIDATE_INPUTS(filename_prefix="m", onnx_width=64, onnx_height=0)


def test_without_comfyui_the_output_folder_is_the_working_directory(compact, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "folder_paths", None)
    (param, _) = export(to_upscale_model(compact))
    assert Path(param) == tmp_path / "output" / "realesr" / "upscale_model.param"
