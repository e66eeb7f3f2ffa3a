"""A training step reads its logged values from the device twice (G's, to skip a non-finite loss before its
backward; D's), not once per value: on a GPU each `.item()` makes the host wait for the device."""

from __future__ import annotations

import copy

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from realesr_core.models.archs.discriminator import UNetDiscriminatorSN
from realesr_core.training import StepOptions, TrainingStep
from realesr_core.training import step as step_module


class ScalarReads(TorchDispatchMode):
    """Counts `.item()`-style reads of one value (what makes a host wait on a GPU, once each)."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.__name__.startswith("_local_scalar_dense"):
            self.reads += 1
        return func(*args, **(kwargs or {}))


def test_a_gan_step_reads_its_logged_values_in_two_transfers(compact, monkeypatch) -> None:
    torch.manual_seed(0)
    options = StepOptions(stage="net", losses={"gan": 0.1}, discriminator_warmup=0, precision="fp32",
                          channels_last=False, patch=32, pool_size=2)
    step = TrainingStep(copy.deepcopy(compact.module).float(), options, discriminator=UNetDiscriminatorSN(num_feat=8))
    transfers = []
    read_all = step_module.read_all
    monkeypatch.setattr(step_module, "read_all", lambda values: transfers.append(len(values)) or read_all(values))
    ground_truths, low = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 8, 8)
    step(ground_truths, 0, low=low)  # the first step builds what it needs
    transfers.clear()
    with ScalarReads() as counted:
        logged = step(ground_truths, 1, low=low)
    assert counted.reads == 0
    assert len(transfers) == 3  # G's losses (before its backward), G's totals, D's totals: no value read alone
    assert {"pixel", "gan", "d_real", "d_fake", "d_real_logit", "d_fake_logit"} <= set(logged)
