"""BasicSR 1.4.2 and Real-ESRGAN 0.3.0 themselves, as the reference our training step is measured against (a test
replays their step, `bench/training.py` times it). Never a dependency of realesr: they live in a venv of their own,
built here on first use from the registry.

The venv reuses this interpreter's torch and torchvision (a `.pth` file names this venv's site-packages, so no second
multi-GB torch is fetched), and takes BasicSR and Real-ESRGAN with `--no-build-isolation --no-deps` (their sdists
import torch in setup.py, and their declared dependencies would pull opencv-python, which needs libGL, and facexlib
and gfpgan, which the training code never imports). Then BasicSR's documented one-line fix for current torchvision:
`functional_tensor` is now `functional`. The `.cuda()` calls of their model are neutralised at run time by the
driver (`basicsr_step.py`), so everything runs on the CPU.

    python tools/basicsr_reference.py      # builds (or checks) the venv and prints its python

`REALESR_BASICSR_VENV` names the folder (default /work/venvs/basicsr, or ~/.cache/realesr/basicsr-venv where /work
is not writable)."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

PACKAGES = ("basicsr==1.4.2", "realesrgan==0.3.0", "addict", "yapf", "lmdb", "future")
DRIVER = Path(__file__).with_name("basicsr_step.py")
FUNCTIONAL_TENSOR_FIX = ("from torchvision.transforms.functional_tensor import rgb_to_grayscale",
                         "from torchvision.transforms.functional import rgb_to_grayscale")


def venv_folder() -> Path:
    if explicit := os.environ.get("REALESR_BASICSR_VENV"):
        return Path(explicit)
    shared = Path("/work/venvs")
    if os.access(shared if shared.exists() else shared.parent, os.W_OK):
        return shared / "basicsr"
    return Path.home() / ".cache" / "realesr" / "basicsr-venv"


def _python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _works(venv: Path) -> bool:
    if not _python(venv).exists():
        return False
    check = [str(_python(venv)), "-c", "import basicsr, realesrgan.models.realesrgan_model"]
    return subprocess.run(check, capture_output=True, cwd="/").returncode == 0


def ensure_venv(venv: Path | None = None) -> Path:
    """The reference venv's python, built first if it is missing or broken (a file lock keeps two builds apart)."""
    venv = venv or venv_folder()
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f".{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _works(venv):
            _build(venv)
    return _python(venv)


def _build(venv: Path) -> None:
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    python = str(_python(venv))
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "realesr_torch.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel"], check=True)
    subprocess.run([*pip, "--no-build-isolation", "--no-deps", *PACKAGES], check=True)
    degradations = site / "basicsr" / "data" / "degradations.py"
    degradations.write_text(degradations.read_text().replace(*FUNCTIONAL_TENSOR_FIX))
    if not _works(venv):
        raise RuntimeError(f"the BasicSR venv in {venv} was built but `import basicsr, realesrgan` still fails")


def run_driver(arguments: list[str], cwd: Path, timeout: float = 1800) -> subprocess.CompletedProcess:
    """`basicsr_step.py ARGUMENTS` in the reference venv, in `cwd` (where BasicSR looks for
    experiments/pretrained_models/vgg19-dcbb9e9d.pth); our own tree stays off its path."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return subprocess.run([str(ensure_venv()), str(DRIVER), *arguments], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


if __name__ == "__main__":
    print(ensure_venv())
