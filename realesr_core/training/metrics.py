"""A run's metrics: `metrics.jsonl` (one JSON row per logged step, and a `setup` row of what the run's rules chose
at each start) and, when it is installed, TensorBoard with the same scalars. The losses and D's mean logits also go
under BasicSR's names (`l_g_pix` ... `out_d_fake`; in TensorBoard the losses as `losses/l_...`, as BasicSR's
logger writes them), so that tools made for BasicSR's logs read ours."""

from __future__ import annotations

import json
import math
import time
import warnings
from pathlib import Path
from typing import Any

# ours -> BasicSR's (RealESRGANModel.optimize_parameters's log_dict)
BASICSR_NAMES = {"pixel": "l_g_pix", "perceptual": "l_g_percep", "gan": "l_g_gan", "d_real": "l_d_real",
                 "d_fake": "l_d_fake", "d_real_logit": "out_d_real", "d_fake_logit": "out_d_fake"}


def with_basicsr_names(values: dict[str, Any]) -> dict[str, Any]:
    """`values` and, for each value BasicSR logs too, the same value under BasicSR's name."""
    return {**values, **{BASICSR_NAMES[name]: value for name, value in values.items() if name in BASICSR_NAMES}}


class MetricsLog:
    """`metrics.jsonl` in `output` (rows of a resumed run's steps after `first_step`, which were not checkpointed,
    are dropped), and TensorBoard under `output/tensorboard` when it is installed."""

    def __init__(self, output: Path, first_step: int) -> None:
        output.mkdir(parents=True, exist_ok=True)
        self.path = output / "metrics.jsonl"
        kept = []
        if self.path.exists():
            kept = [line for line in self.path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= first_step]
        self.path.write_text("".join(line + "\n" for line in kept))
        self.file = self.path.open("a")
        self.last_validation: dict[str, float] | None = None
        self.board = _tensorboard(output / "tensorboard")

    def write_setup(self, step: int, notes: list[str]) -> None:
        """What the run's rules chose (the pool, the EMA decay, where D started), as the run starts or resumes."""
        self._write_line({"step": step, "time": time.time(), "setup": notes})

    def write(self, step: int, row: dict[str, Any]) -> None:
        if "validation" in row:
            self.last_validation = row["validation"]
        row = with_basicsr_names(row)
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
        self._write_line({"step": step, "time": time.time(), **clean})
        if self.board is not None:
            scalars = {k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            scalars = {(f"losses/{k}" if k.startswith("l_") else k): v for k, v in scalars.items()}
            scalars.update({f"validation/{k}": v for k, v in row.get("validation", {}).items()})
            for name, value in scalars.items():
                self.board.add_scalar(name, value, step)

    def _write_line(self, row: dict[str, Any]) -> None:
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()
        if self.board is not None:
            self.board.close()


def _tensorboard(folder: Path) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(folder))
