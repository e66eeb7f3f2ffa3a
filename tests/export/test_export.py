"""Exported ONNX and ncnn files run by their own runtimes (onnxruntime, the ncnn package) against our PyTorch networks,
read back by our ncnn reader, and refused where they could not be right."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest
import torch

from realesr_core import ModelLoadError, RealESRError, load_model, save_model
from realesr_core.export import (
    ExportError,
    export_fidelity,
    export_model,
    names_scale,
    ncnn_stem,
    psnr,
    run_exported,
    run_ncnn,
    run_onnx,
)
from realesr_core.export.exporter import upscayl_scale
from realesr_core.models import ModelDescriptor, describe, new_model, zoo
from realesr_core.models.archs import RRDBNet

from helpers import fine_tuned, photo, randomized, spandrel_model, to_tensor, unshuffled_x4plus

# Every form our registry builds: RRDBNet with 0-3 upsamples, pixel-unshuffled x2 / x1 and native x2, other channel
# counts; SRVGGNetCompact with each activation, x1 (no shuffle) and gray in / colour out.
TINY = {
    "rrdb-x4": ("rrdb", dict(num_feat=8, num_block=2, num_grow_ch=4, scale=4)),
    "rrdb-x2-unshuffle": ("rrdb", dict(num_feat=8, num_block=1, num_grow_ch=4, scale=2)),
    "rrdb-x1-unshuffle": ("rrdb", dict(num_feat=8, num_block=1, num_grow_ch=4, scale=1)),
    "rrdb-x2-native": ("rrdb", dict(num_feat=8, num_block=1, num_grow_ch=4, scale=2, unshuffle=1)),
    "rrdb-x8-rgba": ("rrdb", dict(num_in_ch=4, num_out_ch=4, num_feat=8, num_block=1, num_grow_ch=4, scale=8)),
    "srvgg-x4": ("srvgg", dict(num_feat=8, num_conv=3, scale=4)),
    "srvgg-x1": ("srvgg", dict(num_feat=8, num_conv=2, scale=1)),
    "srvgg-x3-relu": ("srvgg", dict(num_feat=8, num_conv=2, scale=3, act_type="relu")),
    "srvgg-x2-leaky": ("srvgg", dict(num_feat=8, num_conv=2, scale=2, act_type="leakyrelu")),
    "srvgg-x2-gray-in": ("srvgg", dict(num_in_ch=1, num_out_ch=3, num_feat=8, num_conv=2, scale=2)),
}


def tiny(name: str, seed: int = 0) -> ModelDescriptor:
    architecture, hyperparameters = TINY[name]
    with warnings.catch_warnings():  # "activation not stored in the file": here it is given
        warnings.simplefilter("ignore")
        model = new_model(architecture, **hyperparameters)
    randomized(model.network, seed)
    return model


def photo_batch(size: int, channels: int = 3) -> torch.Tensor:
    image = to_tensor(photo(size))
    return image[:, :1] if channels == 1 else torch.cat([image, image[:, :1]], 1) if channels == 4 else image


@pytest.mark.parametrize("suffix", [".onnx", ".param"])
@pytest.mark.parametrize("name", list(TINY))
def test_every_form_runs_in_its_runtime_as_in_pytorch(name: str, suffix: str, tmp_path: Path) -> None:
    model = tiny(name)
    image = photo_batch(16, model.in_channels)
    with torch.inference_mode():
        expected = model.module(image)
    for precision, tolerance in (("fp32", 1e-5), ("fp16", 2e-2)):
        path = tmp_path / f"m-x{model.scale}-{precision}{suffix}"
        export_model(model, path, precision=precision)
        output = run_exported(path, image)
        assert output.shape == expected.shape
        error = (output - expected).abs().max().item() / expected.abs().max().item()
        assert error < tolerance, f"{precision}: relative error {error:.2e}"


@pytest.mark.parametrize("name", ["rrdb-x4", "rrdb-x2-unshuffle", "rrdb-x1-unshuffle", "rrdb-x2-native", "srvgg-x4",
                                  "srvgg-x1"])
def test_safetensors_to_ncnn_to_safetensors_is_exact_in_fp32(name: str, tmp_path: Path) -> None:
    source = save_model(tiny(name), tmp_path / "trained.safetensors")
    export_model(source, tmp_path / f"m-x{tiny(name).scale}.param")
    back = save_model(load_model(tmp_path / f"m-x{tiny(name).scale}.param"), tmp_path / "back.safetensors")
    original, returned = load_model(source), load_model(back)
    assert returned.hyperparameters == original.hyperparameters
    a, b = original.state_dict(), returned.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


def test_other_activations_come_back_as_the_prelu_they_equal(tmp_path: Path) -> None:
    model = tiny("srvgg-x3-relu")
    export_model(model, tmp_path / "m-x3.param")
    back = load_model(tmp_path / "m-x3.param")
    assert back.hyperparameters["act_type"] == "prelu" and not back.state_dict()["body.1.weight"].any()
    image = photo_batch(12)
    with torch.inference_mode():
        assert torch.equal(back.module(image), model.module(image))


def test_bundled_model_pth_and_state_dict_sources(compact: ModelDescriptor, tmp_path: Path) -> None:
    """From a bundled name, a safetensors file, an official-style .pth (through the weights-only loader) and a
    state dict: the same weights, the same file."""
    pth = tmp_path / "realesr-animevideov3.pth"
    torch.save({"params": compact.state_dict()}, pth)
    safetensors = save_model(compact, tmp_path / "compact.safetensors")
    written = []
    for index, source in enumerate(["realesr-animevideov3", safetensors, pth, compact.state_dict()]):
        written.append(export_model(source, tmp_path / f"m{index}.param").files[1].read_bytes())
    assert all(data == written[0] for data in written)


def test_compact_on_a_real_photo_meets_the_goals(compact: ModelDescriptor, tmp_path: Path) -> None:
    image = to_tensor(photo(48, "chelsea", 100, 150))
    for suffix in (".onnx", ".param"):
        for precision, goal in (("fp32", 50.0), ("fp16", 40.0)):
            path = tmp_path / f"compact-{precision}{suffix}"
            export_model(compact, path, precision=precision)
            assert export_fidelity(compact, path, image) >= goal


def test_output_resize_models_meet_the_goals(tmp_path: Path) -> None:
    """realesr-animevideov3-x3: x4, then a bicubic resize by 0.75 in the graph, as the official files end."""
    model = load_model("realesr-animevideov3-x3")
    image = to_tensor(photo(32, "coffee", 80, 200))
    for suffix in (".onnx", ".param"):
        path = tmp_path / f"anime-x3{suffix}"
        export_model(model, path)
        assert export_fidelity(model, path, image) >= 50.0
    assert load_model(tmp_path / "anime-x3.param").output_rescale == 0.75


@pytest.mark.parametrize("name", ["realesr-animevideov3", "realesr-animevideov3-x2"])
def test_fp16_ncnn_of_an_official_model_is_the_official_file(name: str, tmp_path: Path) -> None:
    """The official files hold fp16 weights: exporting the model converted from them gives the same .bin bytes, and
    the same pixels through ncnn."""
    official = zoo.packaged_param_file(zoo.PRETRAINED[name])[0]
    ours = export_model(name, tmp_path / f"{name}.param", precision="fp16").files[0]
    assert ours.with_suffix(".bin").read_bytes() == official.with_suffix(".bin").read_bytes()
    image = to_tensor(photo(32))
    assert torch.equal(run_ncnn(ours, image), run_ncnn(official, image))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["RealESRGAN_x4plus", "RealESRGAN_x4plus_anime_6B"])
def test_rrdbnet_official_models(name: str, tmp_path: Path) -> None:
    official = zoo.packaged_param_file(zoo.PRETRAINED[name])[0]
    model = load_model(name)
    image = to_tensor(photo(24, "chelsea", 100, 150))
    ours = export_model(model, tmp_path / f"{name}.param", precision="fp16").files[0]
    assert ours.with_suffix(".bin").read_bytes() == official.with_suffix(".bin").read_bytes()
    assert torch.equal(run_ncnn(ours, image), run_ncnn(official, image))
    for precision, goal in (("fp32", 50.0), ("fp16", 40.0)):
        path = export_model(model, tmp_path / f"{name}-{precision}.onnx", precision=precision).files[0]
        assert export_fidelity(model, path, image) >= goal


@pytest.mark.slow
@pytest.mark.parametrize("scale", [2, 1])
def test_unshuffled_rrdbnet_with_real_weights(scale: int, x4plus: ModelDescriptor, tmp_path: Path) -> None:
    model = unshuffled_x4plus(x4plus, scale)
    assert model.scale == scale and model.hyperparameters["unshuffle"] == 4 // scale
    image = to_tensor(photo(22, "coffee", 100, 200))  # not a multiple of 4: padded as the engine pads
    for suffix in (".onnx", ".param"):
        path = export_model(model, tmp_path / f"trunk-x{scale}{suffix}").files[0]
        assert export_fidelity(model, path, image) >= 50.0


@pytest.mark.slow
def test_a_fine_tuned_model_meets_the_goals(tmp_path: Path) -> None:
    """A training run's model.safetensors (the bundled Compact fine-tuned a few steps, so its weights are no longer
    the official fp16 values)."""
    trained = fine_tuned("realesr-animevideov3", tmp_path)
    model = load_model(trained)
    assert not torch.equal(model.state_dict()["body.0.weight"], load_model("realesr-animevideov3").state_dict()[
        "body.0.weight"])
    image = to_tensor(photo(48, "chelsea", 100, 150))
    for suffix in (".onnx", ".param"):
        for precision, goal in (("fp32", 50.0), ("fp16", 40.0)):
            path = export_model(trained, tmp_path / f"tuned-{precision}{suffix}", precision=precision).files[0]
            assert export_fidelity(model, path, image) >= goal


def test_a_model_the_engine_made_channels_last_exports_the_same(tmp_path: Path) -> None:
    model = tiny("rrdb-x2-unshuffle")
    plain = export_model(model, tmp_path / "a-x2.param").files[1].read_bytes()
    model.module.to(memory_format=torch.channels_last)
    assert export_model(model, tmp_path / "b-x2.param").files[1].read_bytes() == plain


def test_onnx_dynamic_and_fixed_shapes(tmp_path: Path) -> None:
    import onnx

    model = tiny("rrdb-x2-unshuffle")
    dynamic = onnx.load(export_model(model, tmp_path / "d.onnx").files[0])
    dims = [d.dim_param or d.dim_value for d in dynamic.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    assert run_onnx(tmp_path / "d.onnx", photo_batch(12).repeat(2, 1, 1, 1)).shape == (2, 3, 24, 24)
    fixed = onnx.load(export_model(model, tmp_path / "f.onnx", size=(8, 12)).files[0])
    assert [d.dim_value for d in fixed.graph.output[0].type.tensor_type.shape.dim] == [1, 3, 16, 24]
    assert run_onnx(tmp_path / "f.onnx", photo_batch(12)[..., :8, :]).shape == (1, 3, 16, 24)
    with pytest.raises(ExportError, match="multiples of 2"):
        export_model(model, tmp_path / "odd.onnx", size=(9, 12))
    props = {p.key: p.value for p in fixed.metadata_props}
    assert props["realesr.architecture"] == "RRDBNet" and props["realesr.scale"] == "2"


def test_onnx_shape_inference_gives_the_scale(tmp_path: Path) -> None:
    """chaiNNer (and TensorRT) find an ONNX model's scale by shape inference on a concrete input size."""
    import onnx

    for name in ("rrdb-x2-unshuffle", "srvgg-x3-relu"):
        model = onnx.load(export_model(tiny(name), tmp_path / f"{name}.onnx").files[0])
        for dim, value in zip(model.graph.input[0].type.tensor_type.shape.dim, (1, 3, 64, 64), strict=True):
            dim.dim_value = value
        del model.graph.output[:]
        model.graph.output.append(onnx.helper.make_empty_tensor_value_info("output"))
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
        shape = [d.dim_value for d in inferred.graph.output[0].type.tensor_type.shape.dim]
        assert shape == [1, 3, 64 * tiny(name).scale, 64 * tiny(name).scale]


@pytest.mark.parametrize("opset", [11, 13, 18])
def test_onnx_opsets(opset: int, tmp_path: Path) -> None:
    import onnx

    model = tiny("srvgg-x4")
    path = export_model(model, tmp_path / "m.onnx", opset=opset).files[0]
    written = onnx.load(path)
    assert written.opset_import[0].version == opset
    assert written.ir_version == onnx.helper.find_min_ir_version_for(list(written.opset_import))
    with torch.inference_mode():
        torch.testing.assert_close(run_onnx(path, photo_batch(8)), model.module(photo_batch(8)), atol=1e-5, rtol=0)


def chainner_ncnn_scale(param: Path) -> float:
    """An ncnn model's scale as chaiNNer reads it off the .param: each Interp multiplies by its factor unless a
    BinaryOp follows it (a residual), each PixelShuffle by its factor, each convolution divides by its stride."""
    lines = [line.split() for line in param.read_text().splitlines()[2:]]
    scale = 1.0
    for index, fields in enumerate(lines):
        params = dict(item.split("=", 1) for item in fields[4 + int(fields[2]) + int(fields[3]) :])
        if fields[0] == "Interp" and not (index + 1 < len(lines) and lines[index + 1][0] == "BinaryOp"):
            scale *= float(params["1"])
        elif fields[0] == "PixelShuffle":
            scale *= int(params["0"])
        elif fields[0] == "Convolution":
            scale /= int(params.get("3", 1))
    return scale


@pytest.mark.parametrize("name", list(TINY))
def test_ncnn_layout_for_realesrgan_ncnn_vulkan_upscayl_and_chainner(name: str, tmp_path: Path) -> None:
    model = tiny(name)
    param = export_model(model, tmp_path / f"m-x{model.scale}.param").files[0]
    lines = param.read_text().splitlines()
    assert lines[0] == "7767517"
    layers = [line.split() for line in lines[2:]]
    assert layers[0][:5] == ["Input", "input", "0", "1", "data"]  # the blob names the programs feed and read
    produced = [blob for fields in layers for blob in fields[4 + int(fields[2]) : 4 + int(fields[2]) + int(fields[3])]]
    consumed = [blob for fields in layers for blob in fields[4 : 4 + int(fields[2])]]
    assert produced[-1] == "output" and len(produced) == len(set(produced))
    assert len(consumed) == len(set(consumed))  # every blob read more than once goes through a Split
    assert lines[1].split() == [str(len(layers)), str(len(produced))]
    assert chainner_ncnn_scale(param) == model.scale


def test_upscayl_reads_the_scale_from_the_name() -> None:
    assert [upscayl_scale(n) for n in ("model", "RealESRGAN_x4plus", "4x_foo", "foo-x2", "x1_thing", "3x")] == [
        4, 4, 4, 2, 1, 3]
    assert names_scale("foo-x2", 2) and not names_scale("foo", 2) and not names_scale("foo-X2", 2)
    assert names_scale("foo", 4) and not names_scale("foo_x2", 4)
    assert ncnn_stem("foo", 4) == "foo" and ncnn_stem("foo", 2) == "foo-x2"
    assert ncnn_stem("RealESRGAN_x2plus_tuned", 4) == "RealESRGAN_plus_tuned-x4"
    assert all(names_scale(ncnn_stem(stem, s), s) for stem in ("a", "b_x3", "4x-c", "x16") for s in (1, 2, 3, 4, 8))


def test_a_name_upscayl_would_misread_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"would take this one for x4; the model is x2: name it mine-x2.param"):
        export_model(tiny("rrdb-x2-unshuffle"), tmp_path / "mine.param")
    assert not list(tmp_path.iterdir())


def test_refusals_before_anything_is_written(tmp_path: Path) -> None:
    model = tiny("srvgg-x4")
    cases = [
        (dict(path=tmp_path / "m.txt"), "should end in .onnx"),
        (dict(path=tmp_path / "m.param", opset=13), "no opset"),
        (dict(path=tmp_path / "m.param", size=(8, 8)), "any image size"),
        (dict(path=tmp_path / "m.onnx", opset=9), "opset must be within 11"),
        (dict(path=tmp_path / "m.onnx", precision="bf16"), "precision must be one of"),
    ]
    for arguments, message in cases:
        with pytest.raises(ExportError, match=message):
            export_model(model, **arguments)
    huge = tiny("srvgg-x4")
    with torch.no_grad():
        huge.network.body[0].weight[0, 0, 0, 0] = 1e5
    with pytest.raises(ExportError, match="beyond fp16's range"):
        export_model(huge, tmp_path / "m.onnx", precision="fp16")
    assert not list(tmp_path.iterdir())


def test_networks_export_cannot_reproduce_are_refused(tmp_path: Path) -> None:
    """Another loader's network (its own call function), and a subclass of ours (its forward may differ)."""
    swinir = describe(spandrel_model("SwinIR"))
    with pytest.raises(ExportError, match="SwinIR"):
        export_model(swinir, tmp_path / "m.onnx")

    class Brighter(RRDBNet):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x) + 0.1

    model = tiny("rrdb-x4")
    model.module = Brighter(num_feat=8, num_block=2, num_grow_ch=4)
    with pytest.raises(ExportError, match="Brighter"):
        export_model(model, tmp_path / "m.param")
    assert not list(tmp_path.iterdir())


def test_an_existing_pair_is_replaced_whole(tmp_path: Path) -> None:
    first, second = tiny("srvgg-x4", seed=1), tiny("srvgg-x4", seed=2)
    path = tmp_path / "m.param"
    export_model(first, path)
    export_model(second, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bin", "m.param"]  # no temporaries left
    assert torch.equal(load_model(path).state_dict()["body.0.weight"], second.state_dict()["body.0.weight"])


def test_a_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(RealESRError, match=r"writing an ONNX file needs .*pip install 'realesr\[export\]'"):
        export_model(tiny("srvgg-x4"), tmp_path / "m.onnx")
    export_model(tiny("srvgg-x4"), tmp_path / "m.param")  # ncnn files need no extra
    monkeypatch.setitem(sys.modules, "ncnn", None)
    with pytest.raises(RealESRError, match=r"running an ncnn model needs"):
        run_ncnn(tmp_path / "m.param", photo_batch(8))


def test_the_reader_refuses_a_graph_it_does_not_know(tmp_path: Path) -> None:
    path = export_model(tiny("rrdb-x2-unshuffle"), tmp_path / "m-x2.param").files[0]
    text = path.read_text()
    path.write_text(text.replace(" 3=2 4=2 ", " 3=2 4=1 ", 1))  # a strided conv that is no folded unshuffle
    with pytest.raises(ModelLoadError, match="padding 1 is no convolution"):
        load_model(path)


def test_ncnn_default_options_give_the_same_figure(compact: ModelDescriptor, tmp_path: Path) -> None:
    """ncnn's own default options (which may store activations in reduced precision where the CPU allows)."""
    path = export_model(compact, tmp_path / "c.param").files[0]
    image = to_tensor(photo(24))
    with torch.inference_mode():
        reference = compact.module(image)
    assert psnr(run_ncnn(path, image, fp32_compute=False), reference) >= 50.0
