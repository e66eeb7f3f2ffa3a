"""A run's metrics: `metrics.jsonl` (one JSON row per logged step) and, when it is installed, TensorBoard with the
same scalars."""

from __future__ import annotations

import json
import math
import time
import warnings
from pathlib import Path
from typing import Any


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

    def write(self, step: int, row: dict[str, Any]) -> None:
        if "validation" in row:
            self.last_validation = row["validation"]
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
        self.file.write(json.dumps({"step": step, "time": time.time(), **clean}) + "\n")
        self.file.flush()
        if self.board is not None:
            flat = {**{k: v for k, v in row.items() if k != "validation"},
                    **{f"validation/{k}": v for k, v in row.get("validation", {}).items()}}
            for name, value in flat.items():
                self.board.add_scalar(name, value, step)

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
