"""A run's checkpoints: the model files a user takes away (`model.safetensors`, the EMA generator;
`generator.safetensors`; `discriminator.safetensors`) and `state/`, one file per rank with everything the next steps
depend on, written whole before it replaces the last one; and the resume that reads them back, refusing another
run's state."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..files import write_atomically
from ..models import ModelDescriptor, save_model
from ..models.rescaled import OutputRescaled
from . import distributed
from .config import ConfigError, TrainingConfig
from .step import TrainingStep

# options a resumed run may change; any other difference means another run
CHANGEABLE_ON_RESUME = {"steps", "val_every", "checkpoint_every", "log_every", "samples", "workers", "device",
                        "val_dir", "val_lr_dir", "val_luma", "val_crop_border"}


def state_folder(output: Path) -> Path | None:
    """`state/`, or `state.old/` when a save was cut between its two renames."""
    for name in ("state", "state.old"):
        if (output / name / "rank0.pt").is_file():
            return output / name
    return None


def check_output(output: Path, resume: bool) -> None:
    """A resume needs an earlier run's state; a new run must not overwrite one."""
    has_state = state_folder(output) is not None
    if resume and not has_state:
        raise ConfigError(f"nothing to resume in {output}: it holds no state/ folder from an earlier run")
    if not resume and has_state:
        raise ConfigError(f"{output} already holds a run (state/): resume it (--resume) or choose another output "
                          f"folder")


@dataclasses.dataclass
class Checkpoints:
    """The checkpoints of the run in `output`, written and read by process `rank` of `world`."""

    output: Path
    rank: int
    world: int
    device: torch.device

    def save(self, done: int, config: TrainingConfig, step: TrainingStep, descriptor: ModelDescriptor) -> None:
        """Model files (rank 0) and every rank's state, swapped in only when complete."""
        fresh, current, old = (self.output / name for name in ("state.tmp", "state", "state.old"))
        if self.rank == 0:
            shutil.rmtree(fresh, ignore_errors=True)
            fresh.mkdir(parents=True)
        distributed.barrier()
        state = {"step": done, "world": self.world, "config": config.to_dict(), "training": step.state_dict(),
                 "torch_rng": torch.get_rng_state(),
                 "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else []}
        torch.save(state, fresh / f"rank{self.rank}.pt")
        distributed.barrier()
        if self.rank == 0:
            self._save_models(step, descriptor)
            if current.exists():
                current.rename(old)
            fresh.rename(current)
            shutil.rmtree(old, ignore_errors=True)
        distributed.barrier()

    def _save_models(self, step: TrainingStep, descriptor: ModelDescriptor) -> None:
        base = descriptor.name or descriptor.architecture  # what loaders and the command line show
        for module, file, name in ((step.ema.module, "model", f"{base}-finetuned"),
                                   (step.generator, "generator", f"{base}-finetuned-raw")):
            rescale = descriptor.output_rescale
            wrapped = OutputRescaled(module, rescale) if rescale else module
            save_model(dataclasses.replace(descriptor, module=wrapped, name=name,
                                           source=f"trained from {descriptor.name or descriptor.source}"),
                       self.output / f"{file}.safetensors")
        if step.discriminator is not None:
            state = {k: v.detach().cpu().contiguous() for k, v in step.discriminator.state_dict().items()}
            write_atomically(self.output / "discriminator.safetensors",
                             lambda temporary: save_file(state, str(temporary)), ".tmp")

    def resume(self, config: TrainingConfig, step: TrainingStep) -> int:
        """Loads this rank's state into `step` (and the RNGs) after checking it is this run's; the steps done."""
        path = state_folder(self.output) / f"rank{self.rank}.pt"
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except (OSError, RuntimeError, EOFError) as exc:
            raise ConfigError(f"cannot read the training state {path}: {exc}") from exc
        if state["world"] != self.world:
            raise ConfigError(f"the run was trained by {state['world']} process(es); resume it with as many "
                              f"(each keeps its own pair pool), not {self.world}")
        saved, ours = state["config"], config.to_dict()
        changed = sorted(k for k in ours if k not in CHANGEABLE_ON_RESUME and saved.get(k) != ours[k])
        if changed:
            details = ", ".join(f"{k}: {saved.get(k)!r} -> {ours[k]!r}" for k in changed)
            raise ConfigError(f"this is not the run in {self.output} ({details}); only "
                              f"{', '.join(sorted(CHANGEABLE_ON_RESUME))} may change on resume")
        step.load_state_dict(state["training"])
        torch.set_rng_state(state["torch_rng"].cpu())
        if state["cuda_rng"]:
            torch.cuda.set_rng_state_all([rng.cpu() for rng in state["cuda_rng"]])
        return int(state["step"])
