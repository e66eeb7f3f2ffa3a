"""Hyper-parameters come from shapes alone, including those spandrel assumes (num_grow_ch)."""

from __future__ import annotations

import io
import pickle
import random
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from realesr_core import ModelLoadError, interpolate_models, load_model, save_model
from realesr_core.cli import main as cli_main
from realesr_core.models.archs import RRDBNet, SRVGGNetCompact

from helpers import photo, random_parameters, randomized, spandrel_model, spandrel_network


def test_descriptor_facts() -> None:
    model = load_model(RRDBNet(scale=2, num_feat=8, num_block=1, num_grow_ch=4).state_dict())
    assert (model.architecture, model.scale, model.in_channels, model.out_channels) == ("RRDBNet", 2, 3, 3)
    assert model.size_multiple == 2 and "unshuffle" in model.tags
    assert model.supports_bf16 and model.supports_fp16
    assert model.source == "state dict"
    assert load_model(RRDBNet(scale=1, num_feat=8, num_block=1, num_grow_ch=4).state_dict()).size_multiple == 4


def assert_same_network(a, b) -> None:
    assert (a.architecture, a.hyperparameters, a.scale, a.output_rescale) == (
        b.architecture, b.hyperparameters, b.scale, b.output_rescale)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("suffix", [".pth", ".pt", ".ckpt", ".bin"])
def test_pickle_checkpoints_load(tmp_path: Path, tiny_rrdbnet: RRDBNet, suffix: str) -> None:
    path = tmp_path / f"model{suffix}"
    torch.save({"params_ema": tiny_rrdbnet.state_dict(), "params": tiny_rrdbnet.state_dict()}, path)
    model = load_model(path)
    assert model.hyperparameters["num_grow_ch"] == 4
    assert model.source == str(path)


@pytest.mark.parametrize("suffix", [".safetensors", ".sft"])
def test_foreign_safetensors_load(tmp_path: Path, tiny_srvgg: SRVGGNetCompact, suffix: str) -> None:
    path = tmp_path / f"model{suffix}"
    save_file(tiny_srvgg.state_dict(), path)
    assert load_model(str(path)).hyperparameters["num_conv"] == 3


def test_save_load_round_trip_is_exact(tmp_path: Path, tiny_rrdbnet: RRDBNet) -> None:
    original = load_model(tiny_rrdbnet.state_dict())
    path = save_model(original, tmp_path / "out" / "m.safetensors")
    reloaded = load_model(path)
    assert_same_network(original, reloaded)
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(original.module(x), reloaded.module(x))


def test_metadata_removes_the_guessing(tmp_path: Path) -> None:
    """A 4-in/1-out net would be read as pixel-unshuffle from shapes; the metadata we write says otherwise."""
    from realesr_core.models.descriptor import ModelDescriptor

    hyperparameters = {"num_in_ch": 4, "num_out_ch": 1, "scale": 4, "num_feat": 8, "num_block": 1,
                       "num_grow_ch": 4, "unshuffle": 1}
    net = randomized(RRDBNet(**hyperparameters))
    assert load_model(net.state_dict()).hyperparameters["unshuffle"] == 2  # what shapes alone suggest
    descriptor = ModelDescriptor(net, "RRDBNet", hyperparameters, 4, 4, 1, 1, True, True, "test")
    reloaded = load_model(save_model(descriptor, tmp_path / "m.safetensors"))
    assert reloaded.hyperparameters == hyperparameters


def test_bundled_round_trip_and_rescale_survive(tmp_path: Path) -> None:
    original = load_model("realesr-animevideov3-x3")
    reloaded = load_model(save_model(original, tmp_path / "v3x3.safetensors"))
    assert_same_network(original, reloaded)
    assert reloaded.scale == 3 and reloaded.output_rescale == 0.75


def test_convert_command_round_trip(tmp_path: Path, tiny_rrdbnet: RRDBNet, capsys: pytest.CaptureFixture) -> None:
    source = tmp_path / "in.pth"
    torch.save({"params": tiny_rrdbnet.state_dict()}, source)
    assert cli_main(["convert", str(source), str(tmp_path / "out.safetensors")]) == 0
    assert_same_network(load_model(source), load_model(tmp_path / "out.safetensors"))
    assert cli_main(["convert", str(tmp_path / "nothing.pth"), str(tmp_path / "x.safetensors")]) == 2
    assert "neither an existing file nor a bundled model" in capsys.readouterr().err


def test_interpolation_blends_every_weight(tiny_srvgg: SRVGGNetCompact) -> None:
    other = randomized(SRVGGNetCompact(num_feat=8, num_conv=3), seed=1)
    blended = interpolate_models(tiny_srvgg.state_dict(), other.state_dict(), 0.3)
    for key, value in blended.state_dict().items():
        torch.testing.assert_close(value, 0.3 * tiny_srvgg.state_dict()[key] + 0.7 * other.state_dict()[key])
    assert_same_network(interpolate_models(tiny_srvgg.state_dict(), other.state_dict(), 1.0),
                        load_model(tiny_srvgg.state_dict()))


def test_interpolation_refuses_different_networks(tiny_srvgg: SRVGGNetCompact, tiny_rrdbnet: RRDBNet) -> None:
    with pytest.raises(ModelLoadError, match="different networks"):
        interpolate_models(tiny_srvgg.state_dict(), tiny_rrdbnet.state_dict(), 0.5)
    with pytest.raises(ModelLoadError, match="within 0..1"):
        interpolate_models(tiny_srvgg.state_dict(), tiny_srvgg.state_dict(), 1.5)


def test_file_errors_say_what_was_wrong(tmp_path: Path) -> None:
    (tmp_path / "empty.pth").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("hello")
    cases = {
        tmp_path: "is a directory",
        tmp_path / "empty.pth": "empty file",
        tmp_path / "notes.txt": "unknown model file type .txt",
        tmp_path / "missing.safetensors": "neither an existing file",
    }
    for source, message in cases.items():
        with pytest.raises(ModelLoadError, match=message):
            load_model(source)
    with pytest.raises(ModelLoadError, match="not int"):
        load_model(42)  # type: ignore[arg-type]


class Hostile:
    """A pickle whose loading would run code: it would create a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


class OsSystem:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_hostile_pickle_never_runs(tmp_path: Path, tiny_rrdbnet: RRDBNet) -> None:
    marker = tmp_path / "pwned"
    for payload in (Hostile(marker), OsSystem(marker), {"params": {"conv_first.weight": OsSystem(marker)}}):
        for legacy in (False, True):
            path = tmp_path / "evil.pth"
            torch.save(payload, path, _use_new_zipfile_serialization=not legacy)
            with pytest.raises(ModelLoadError, match="refused"):
                load_model(path)
            assert not marker.exists()


def _mutations(tmp_path: Path, net: torch.nn.Module) -> list[tuple[str, object]]:
    """At least 500 malformed or hostile model sources, each labelled."""
    rng = random.Random(1234)
    state = net.state_dict()
    good = tmp_path / "good.safetensors"
    save_file(state, good)
    blob = good.read_bytes()
    header_end = 8 + int.from_bytes(blob[:8], "little")
    cases: list[tuple[str, object]] = []

    def file(name: str, data: bytes) -> Path:
        path = tmp_path / name
        path.write_bytes(data)
        return path

    for i, cut in enumerate(sorted(rng.sample(range(1, len(blob)), 150))):
        cases.append((f"truncated safetensors at {cut}", file(f"trunc{i}.safetensors", blob[:cut])))
    for i in range(150):  # bit flips in the length prefix and the JSON header
        data = bytearray(blob)
        position = rng.randrange(header_end)
        data[position] ^= 1 << rng.randrange(8)
        cases.append((f"header bit flip at {position}", file(f"flip{i}.safetensors", bytes(data))))
    for i in range(40):  # data corrupted into NaN / Inf
        data = bytearray(blob)
        position = header_end + 4 * rng.randrange((len(blob) - header_end) // 4)
        data[position : position + 4] = rng.choice([b"\x00\x00\xc0\x7f", b"\x00\x00\x80\x7f", b"\x00\x00\x80\xff"])
        cases.append((f"non-finite weight at {position}", file(f"nan{i}.safetensors", bytes(data))))
    for key in state:
        cases.append((f"missing {key}", {k: v for k, v in state.items() if k != key}))
        wrong = dict(state)
        wrong[key] = torch.zeros(*state[key].shape[:-1], state[key].shape[-1] + 1)
        cases.append((f"wrong shape {key}", wrong))
        cases.append((f"integer {key}", dict(state, **{key: state[key].to(torch.int32)})))
    for extra in ("conv_extra.weight", "body.0.rdb4.conv1.weight", "conv_up9.bias", "body.0.rdb1.conv6.weight"):
        cases.append((f"extra key {extra}", dict(state, **{extra: torch.zeros(3)})))
    marker = tmp_path / "pwned"
    for i, payload in enumerate([OsSystem(marker), Hostile(marker), [OsSystem(marker)], {"params": Hostile(marker)}]):
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        cases.append((f"hostile pickle {i}", file(f"evil{i}.pth", buffer.getvalue())))
        cases.append((f"hostile raw pickle {i}", file(f"raw{i}.pth", pickle.dumps(payload))))
    for i, payload in enumerate([[1, 2], 3, "text", {"a": "b"}, {"params": 5}, None, {}, {"params": {}}]):
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        cases.append((f"non-model pickle {payload!r}", file(f"plain{i}.pth", buffer.getvalue())))
    buffer = io.BytesIO()
    torch.save(state, buffer)
    pth = buffer.getvalue()
    for i, cut in enumerate(sorted(rng.sample(range(1, len(pth)), 60))):
        cases.append((f"truncated pth at {cut}", file(f"trunc{i}.pth", pth[:cut])))
    for i in range(20):
        cases.append((f"random bytes {i}", file(f"random{i}.{rng.choice(['pth', 'safetensors', 'ckpt'])}",
                                                 rng.randbytes(rng.randrange(1, 4000)))))
    with zipfile.ZipFile(tmp_path / "zip.pth", "w") as archive:
        archive.writestr("data.pkl", b"not a pickle")
    cases.append(("zip without a torch archive", tmp_path / "zip.pth"))
    cases.append(("empty file", file("empty.safetensors", b"")))
    cases.append(("directory", tmp_path))
    return cases


def test_fuzz_every_malformed_source_ends_in_our_error(tmp_path: Path, tiny_rrdbnet: RRDBNet) -> None:
    reference = load_model(tiny_rrdbnet.state_dict())
    cases = _mutations(tmp_path, tiny_rrdbnet)
    refused = 0
    for label, source in cases:
        try:
            model = load_model(source)
        except ModelLoadError:
            refused += 1
            continue
        # A flip that lands in a don't-care byte (header padding) must still give the exact same network.
        try:
            assert_same_network(model, reference)
        except AssertionError as exc:
            raise AssertionError(f"{label}: loaded as a different network") from exc
    assert not (tmp_path / "pwned").exists()
    assert len(cases) >= 500
    assert refused >= 500, f"only {refused} of {len(cases)} malformed inputs were refused"


def _save(network: torch.nn.Module, path: Path) -> Path:
    """A model file as people share them: safetensors of the state dict, or a .pth with the weights under params."""
    state = {k: v.contiguous().clone() for k, v in network.state_dict().items()}
    if path.suffix == ".safetensors":
        save_file(state, path)
    else:
        torch.save({"params": state}, path)
    return path


@pytest.mark.parametrize("name,suffix", [("SwinIR", ".pth"), ("SPAN", ".safetensors"), ("DRUNet", ".safetensors"),
                                         ("DnCNN-gray", ".pth")])
def test_other_architectures_load_through_spandrel(tmp_path: Path, name: str, suffix: str) -> None:
    """Every architecture spandrel loads is a model of ours too, run by spandrel's descriptor. A gray DnCNN's keys
    (model.0, model.2, ...) look like the old ESRGAN layout: it is not taken for one."""
    spandrel = pytest.importorskip("spandrel")
    network = spandrel_network(name)
    model = load_model(_save(network, tmp_path / f"{name}{suffix}"))
    assert isinstance(model.spandrel_descriptor, spandrel.ImageModelDescriptor)
    assert model.architecture == model.spandrel_descriptor.architecture.name and model.source.endswith(suffix)
    assert model.in_channels == (1 if name.endswith("gray") else 3)
    image = torch.rand(1, model.in_channels, 16, 16)
    with torch.inference_mode():
        torch.testing.assert_close(model.spandrel_descriptor(image), spandrel_model(name)(image))
        assert model.module(image).shape == (1, model.out_channels, 16 * model.scale, 16 * model.scale)


def test_without_spandrel_the_error_says_what_the_file_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    span = _save(spandrel_network("SPAN"), tmp_path / "span.safetensors")
    dncnn = _save(spandrel_network("DnCNN-gray"), tmp_path / "dncnn.pth")
    monkeypatch.setitem(sys.modules, "spandrel", None)
    with pytest.raises(ModelLoadError, match=r"span.safetensors: not an ESRGAN-family model .*another architecture, "
                                             r"which needs spandrel: pip install 'realesr\[spandrel\]'"):
        load_model(span)
    with pytest.raises(ModelLoadError, match=r"dncnn.pth: .*old-ESRGAN.*another architecture loads with spandrel"):
        load_model(dncnn)


def test_a_model_nobody_knows_is_named_as_such() -> None:
    with pytest.raises(ModelLoadError, match="nor an architecture spandrel .* knows; found 2 keys such as "
                                             "decoder.bias, decoder.weight"):
        load_model({"decoder.weight": torch.zeros(3, 3), "decoder.bias": torch.zeros(3)})


def test_other_architectures_save_and_blend(tmp_path: Path) -> None:
    """Saved as spandrel loads them (attention index tables kept as integers) and blended weight by weight."""
    pytest.importorskip("spandrel")
    swinir = load_model(spandrel_network("SwinIR").state_dict())
    reloaded = load_model(save_model(swinir, tmp_path / "swinir.safetensors"))
    assert reloaded.architecture == "SwinIR" and reloaded.name == "swinir"
    for key, value in swinir.state_dict().items():
        assert torch.equal(reloaded.state_dict()[key], value), key
    a, b = (load_model(spandrel_network("SPAN", seed).state_dict()) for seed in (1, 2))
    blended = interpolate_models(a, b, 0.25)
    assert blended.architecture == "SPAN"
    for key, value in blended.state_dict().items():
        torch.testing.assert_close(value, 0.25 * a.state_dict()[key] + 0.75 * b.state_dict()[key])
    with pytest.raises(ModelLoadError, match="different networks"):
        interpolate_models(a, swinir, 0.5)


def test_the_command_line_upscales_a_span_file(tmp_path: Path, capsys: pytest.CaptureFixture,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A real SPAN x4 file (random weights) from the command line; without spandrel a one-line error naming the
    extra, before any work."""
    from PIL import Image

    SPAN = pytest.importorskip("spandrel.architectures.SPAN").SPAN
    model = _save(random_parameters(SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=4)),
                  tmp_path / "4x_span.safetensors")
    Image.fromarray(photo(24)).save(tmp_path / "in.png")
    out = tmp_path / "out.png"
    assert cli_main(["upscale", str(tmp_path / "in.png"), "-m", str(model), "-o", str(out)]) == 0
    assert Image.open(out).size == (96, 96)
    monkeypatch.setitem(sys.modules, "spandrel", None)
    assert cli_main(["upscale", str(tmp_path / "in.png"), "-m", str(model), "-o", str(tmp_path / "no.png")]) == 2
    error = capsys.readouterr().err
    assert "4x_span.safetensors: not an ESRGAN-family model" in error and "realesr[spandrel]" in error
    assert "Traceback" not in error and not (tmp_path / "no.png").exists()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_a_non_finite_weight_is_named_by_its_key(bad: float, dtype: torch.dtype) -> None:
    state = {key: value.to(dtype) for key, value in SRVGGNetCompact(num_feat=8, num_conv=2).state_dict().items()}
    state["body.2.weight"][0, 0] = bad
    with pytest.raises(ModelLoadError, match=r"body\.2\.weight contains NaN or infinite values: the file is damaged"):
        load_model(state)
