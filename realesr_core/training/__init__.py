"""Training and fine-tuning: the options at the bottom (`config`: StepOptions, TrainingConfig, presets), losses, EMA,
the training-pair pool, data, one iteration of the official recipe (`step`), validation metrics, and the whole run
(`trainer`, with `checkpoints`, `metrics` and `distributed`). Builds on `models/` (networks, the discriminator,
loading) and `degradation/` (pairs made on the fly)."""

from .config import (
    LOSS_NAMES,
    STAGE_LOSSES,
    TRAINING_PRESETS,
    ConfigError,
    LossWeights,
    StepOptions,
    TrainingConfig,
    apply_setting,
    build_config,
    decay_for_run,
    finetune_degradation,
    load_config_file,
    preset,
)
from .data import TrainingImages, find_training_images, load_rgb, paired_random_crop
from .distributed import start_distributed
from .ema import ModelEMA
from .history import LossHistory, loss_graph
from .losses import PerceptualLoss, gan_loss, l1_loss, vgg19_features, vgg19_weights_path
from .pool import TrainingPairPool
from .step import NonFiniteLossError, TrainingStep, training_dtype
from .trainer import TrainingResult, TrainingRun, load_generator, train
from .validation import psnr

__all__ = ["LOSS_NAMES", "TRAINING_PRESETS", "STAGE_LOSSES", "ConfigError", "LossHistory", "LossWeights", "ModelEMA",
           "NonFiniteLossError", "PerceptualLoss", "StepOptions", "TrainingConfig", "TrainingImages",
           "TrainingPairPool", "TrainingResult", "TrainingRun", "TrainingStep", "apply_setting", "build_config",
           "decay_for_run", "find_training_images", "finetune_degradation", "gan_loss", "l1_loss",
           "load_config_file", "load_generator", "load_rgb", "loss_graph", "paired_random_crop", "psnr", "preset",
           "start_distributed", "train", "training_dtype", "vgg19_features", "vgg19_weights_path"]
