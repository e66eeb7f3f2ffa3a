"""Training and fine-tuning: losses, EMA, the training-pair pool, data, one iteration of the official recipe
(`step`), the run's options and presets (`config`), validation metrics, and the whole run (`trainer`). Builds on
`models/` (networks, the discriminator, loading) and `degradation/` (pairs made on the fly)."""

from .config import PRESETS, TrainingConfig, build_config, load_config_file
from .data import TrainingImages
from .trainer import TrainingResult, TrainingRun, train

__all__ = ["PRESETS", "TrainingConfig", "TrainingImages", "TrainingResult", "TrainingRun", "build_config",
           "load_config_file", "train"]
