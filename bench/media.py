"""Benchmark: 16-bit image files, read and written, against the previous code and OpenCV.

    python bench/media.py            # a 3-megapixel (2048x1536) 16-bit RGB photo as PNG and as TIFF

Rows: realesr's readers and writers (imagecodecs for 16-bit PNG, tifffile for TIFF); the pure-Python PNG and TIFF
codecs they replaced, loaded from the last commit that has them; OpenCV (`cv2.imread(IMREAD_UNCHANGED)` /
`cv2.imwrite`). Every reader reads the same file as other programs write it (OpenCV's PNG, with libpng's adaptive
filters; an LZW-compressed TIFF, the most common 16-bit export); every writer writes its own, whose size is shown.
Best of three, all in this process; "exact" says whether the reader got the pixels back.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from realesr_core.media import read_image, write_image  # noqa: E402

OLD_CODECS = ("realesr_core/media/png16.py", "realesr_core/media/tiff16.py")


def photo16() -> np.ndarray:
    from PIL import Image
    from skimage import data

    image = np.asarray(Image.fromarray(data.astronaut()).resize((2048, 1536), Image.LANCZOS)).astype(np.uint16)
    return image * 257 + np.random.default_rng(0).integers(0, 200, image.shape).astype(np.uint16)


def previous_codecs() -> dict[str, types.ModuleType]:
    """The replaced pure-Python codecs, as the last commit that has them wrote them."""
    modules = {}
    for path in OLD_CODECS:
        commit = subprocess.run(["git", "-C", str(ROOT), "log", "-n1", "--format=%H", "--", path],
                                capture_output=True, text=True, check=True).stdout.strip()
        source = ""
        for revision in (commit, f"{commit}^"):  # the commit that last had it, or the one before its deletion
            shown = subprocess.run(["git", "-C", str(ROOT), "show", f"{revision}:{path}"], capture_output=True,
                                   text=True)
            if shown.returncode == 0:
                source = shown.stdout
                break
        source = source.replace("from ..errors import ImageError", "from realesr_core.errors import ImageError")
        name = Path(path).stem
        module = types.ModuleType(name)
        exec(compile(source, f"{commit[:8]}:{path}", "exec"), module.__dict__)  # noqa: S102 - our own old code, benchmark only
        modules[name] = module
    return modules


def best(run, rounds: int = 3) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    pixels = photo16()
    tensor = torch.from_numpy(pixels.astype(np.float32) / 65535).permute(2, 0, 1)[None]
    old = previous_codecs()
    import cv2

    print(f"16-bit RGB, {pixels.shape[1]}x{pixels.shape[0]} ({pixels.shape[0] * pixels.shape[1] / 1e6:.1f} MP)\n")
    print("| format | code | read | write | read + write | exact | file size |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for suffix in (".png", ".tif"):
            reference = Path(folder) / f"reference{suffix}"
            if suffix == ".png":
                cv2.imwrite(str(reference), pixels[..., ::-1])
            else:
                import tifffile

                tifffile.imwrite(reference, pixels, photometric="rgb", compression="lzw")
            for name, read, write in codecs(reference, Path(folder) / f"x{suffix}", pixels, tensor, old, cv2):
                read_seconds, write_seconds = best(lambda r=read, p=reference: r(p)), best(write)
                exact = np.array_equal(read(reference, exact=True), pixels)
                size = (Path(folder) / f"x{suffix}").stat().st_size / 2**20
                print(f"| {suffix[1:].upper()} | {name} | {read_seconds:.3f} s | {write_seconds:.3f} s | "
                      f"{read_seconds + write_seconds:.3f} s | {'yes' if exact else 'NO'} | {size:.1f} MiB |", flush=True)


def codecs(reference: Path, target: Path, pixels: np.ndarray, tensor: torch.Tensor, old: dict, cv2) -> list:
    """(name, read(path, exact=False) -> pixels, write()) for each implementation. realesr's reader returns the
    float tensor it gives the engine; `exact=True` turns it back into 16-bit values for the comparison."""
    kind = "png16" if reference.suffix == ".png" else "tiff16"

    def ours(path: Path, exact: bool = False):
        tensor = read_image(path).tensor
        return np.round(tensor[0].permute(1, 2, 0).numpy() * 65535).astype(np.uint16) if exact else tensor

    def previous(path: Path, exact: bool = False):
        try:
            return getattr(old[kind], f"read_{kind}")(path)
        except Exception as error:  # noqa: BLE001 - the old TIFF reader refuses compressed files
            return error

    return [("realesr", ours, lambda: write_image(target, tensor, 16)),
            ("previous (pure Python)", previous, lambda: getattr(old[kind], f"write_{kind}")(target, pixels)),
            ("OpenCV", lambda path, exact=False: cv2.imread(str(path), cv2.IMREAD_UNCHANGED)[..., ::-1],
             lambda: cv2.imwrite(str(target), pixels[..., ::-1]))]

if __name__ == "__main__":
    main()
