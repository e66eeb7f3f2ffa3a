"""The real distributed path: `torchrun -m realesr_core finetune` with 2 gloo processes on the CPU keeps both ranks'
weights identical and matches one process trained on the combined batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from realesr_core.training import load_generator

from helpers import photo

FRESH = "new:srvgg:num_feat=8,num_conv=2,scale=2"


def _finetune(root: Path, output: str, batch: int, processes: int) -> None:
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
                if processes > 1 else [sys.executable])
    command = [*launcher, "-m", "realesr_core", "finetune", FRESH,
               str(root / "hr"), "--lr-dir", str(root / "lr"), "-o", str(root / output), "--stage", "gan",
               "--loss", "perceptual=0", "--steps", "3", "--batch", str(batch), "--patch", "32", "--lr", "1e-3",
               "--precision", "fp32", "--set", "workers=0", "--set", "discriminator_feat=8"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow  # two torchrun processes: about 8 s
def test_two_gloo_ranks_stay_identical_and_match_one_process_with_the_combined_batch(tmp_path: Path) -> None:
    (tmp_path / "hr").mkdir()
    (tmp_path / "lr").mkdir()
    for index, name in enumerate(("astronaut", "chelsea", "coffee", "rocket")):
        high = Image.fromarray(photo(64, name, 100 + 10 * index, 150))
        high.save(tmp_path / "hr" / f"{name}.png")
        high.resize((32, 32), Image.BICUBIC).save(tmp_path / "lr" / f"{name}.png")
    _finetune(tmp_path, "ddp", batch=2, processes=2)
    _finetune(tmp_path, "single", batch=4, processes=1)
    ranks = [torch.load(tmp_path / "ddp" / "state" / f"rank{rank}.pt", weights_only=True)["training"]
             for rank in (0, 1)]
    for network in ("generator", "discriminator", "ema"):
        assert all(torch.equal(tensor, ranks[1][network][key]) for key, tensor in ranks[0][network].items())
    for name in ("model", "generator", "discriminator"):
        ddp, single = load_file(tmp_path / "ddp" / f"{name}.safetensors"), load_file(
            tmp_path / "single" / f"{name}.safetensors")
        for key, tensor in single.items():
            torch.testing.assert_close(ddp[key], tensor, rtol=1e-4, atol=1e-5, msg=f"{name}: {key}")
    start = load_generator(FRESH, seed=0).network.state_dict()  # the weights both runs started from
    trained = load_file(tmp_path / "single" / "generator.safetensors")
    assert not all(torch.equal(tensor, trained[key]) for key, tensor in start.items())  # it did train
