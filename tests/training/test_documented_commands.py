"""Every training command and TOML file that README.md and docs/training.md show, and the training page's Python
example, runs as written, at tiny sizes: each command gets flags for a two-step run on small patches (after its own,
so they win), a folder of photos under the names it uses, and random VGG19 weights where torchvision's cache would
hold the real ones. The torchrun lines are the same command under DDP, which tests/training/test_distributed.py runs
with two processes."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import torch
from PIL import Image

from realesr_core.cli import main
from realesr_core.models import zoo
from realesr_core.models.archs.discriminator import UNetDiscriminatorSN

from helpers import photo

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", ROOT / "docs" / "training.md"]
PHOTOS = ("astronaut", "chelsea", "coffee")


def _blocks(language: str, documents: list[Path] = DOCUMENTS) -> list[str]:
    """The code blocks of `language`, each once (the README and the training page may show the same)."""
    found = []
    for document in documents:
        found += re.findall(rf"```{language}\n(.*?)```", document.read_text(), flags=re.DOTALL)
    return list(dict.fromkeys(found))


def _commands() -> list[list[str]]:
    commands = []
    for block in _blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words[:2] in (["realesr", "finetune"], ["realesr", "train"]) and words[1:] not in commands:
                commands.append(words[1:])
    return commands


def _photos(folder: Path, size: int = 192) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(PHOTOS):
        Image.fromarray(photo(size, name, 20 * index, 40)).save(folder / f"{name}.png")


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """What the documented commands name: photo folders, LR/HR pairs, the official D's file, VGG19's weights."""
    for folder in ("data/photos", "data/held_out"):  # the run file's
        _photos(tmp_path / folder)
    (tmp_path / "hr").mkdir()
    (tmp_path / "lr").mkdir()
    for name in PHOTOS:
        high = Image.fromarray(photo(64, name))
        high.save(tmp_path / "hr" / f"{name}.png")
        high.resize((16, 16), Image.BICUBIC).save(tmp_path / "lr" / f"{name}.png")  # x4 pairs
    torch.save({"params": UNetDiscriminatorSN().state_dict()}, tmp_path / "RealESRGAN_x4plus_netD.pth")
    from torchvision.models import vgg19

    (tmp_path / "torch" / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(vgg19(weights=None).state_dict(), tmp_path / "torch" / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_documents_show_commands_and_a_run_file() -> None:
    assert len(_commands()) >= 7 and any(words[0] == "train" for words in _commands())
    assert _blocks("toml") and all("preset =" in block for block in _blocks("toml"))


def _tiny(words: list[str], steps: int) -> list[str]:
    """Flags for a small run of `words`, after its own so that they win."""
    settings = ["workers=0", "precision='fp32'", "val_every=1", f"steps={steps}"]
    if words[0] == "train":
        return [f"--set={setting}" for setting in (*settings, "patch=32", "degrade_size=64")]
    patch = 176 if "ms_ssim=0.5" in words else 32  # MS-SSIM's five scales need 176 px
    return [*(f"--set={setting}" for setting in (*settings, f"degrade_size={max(64, patch)}")), "--patch", str(patch),
            "--batch", "2"]


@pytest.mark.parametrize("words", _commands(), ids=" ".join)
def test_every_documented_command_runs(words: list[str], workspace: Path, capsys: pytest.CaptureFixture) -> None:
    bundled = zoo.resolve_name(words[1])
    if words[0] == "finetune" and bundled is not None and zoo.bundled_source(bundled, {}) is None:
        pytest.skip(f"{words[1]}'s weights ship in no package installed here: the document should name another")
    inputs = [word for word, before in zip(words, ["", *words], strict=False) if word.endswith("/") and before != "-o"]
    for folder in inputs:
        if not (workspace / folder).exists():
            _photos(workspace / folder)
    run_files = _blocks("toml") if words[0] == "train" else [None]
    for index, run_file in enumerate(run_files):
        if run_file is not None:
            (workspace / words[1]).write_text(run_file.replace('"runs/photos"', f'"runs/toml{index}"'))
        if "--resume" in words:  # the documented run first, then its resume with more steps
            assert main([word for word in words if word != "--resume"] + _tiny(words, 2)) == 0, capsys.readouterr()
        assert main(words + _tiny(words, 3 if "--resume" in words else 2)) == 0, capsys.readouterr()
        assert "trained" in capsys.readouterr().out


def test_the_python_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (example,) = [block for block in _blocks("python", DOCUMENTS[1:]) if "TrainingStep" in block]
    monkeypatch.chdir(tmp_path)
    ground_truths = torch.stack([torch.from_numpy(photo(64, name)).permute(2, 0, 1).float() / 255 for name in PHOTOS])
    exec(example, {"batches": [ground_truths[:2], ground_truths[1:]]})  # noqa: S102 - the document's own code
    assert (tmp_path / "model.safetensors").stat().st_size > 0
