"""Training engine: trainer loop, optimisers, lr schedules, checkpoints, EMA, data loaders, and a
config's evaluation.

The config layout the engine reads is documented in :mod:`detkit.engine.trainer`; the ``train``
keys in :mod:`detkit.engine.settings`. ``tools/train.py`` drives :func:`run_training`,
``tools/test.py`` :func:`evaluate_config`; :func:`build_evaluator` picks a test dataset's evaluator.
"""

from detkit.engine.checkpoint import Checkpointer, atomic_torch_save, load_checkpoint
from detkit.engine.close_mosaic import CloseMosaic
from detkit.engine.console_log import TqdmLoggingHandler
from detkit.engine.data import (
    DataLoadingError, EpochBatchSampler, build_test_loader, build_train_loader,
)
from detkit.engine.early_stopping import EarlyStopping
from detkit.engine.ema import ModelEMA
from detkit.engine.evaluation import EvaluationReport, build_evaluator, config_evaluator, evaluate_config
from detkit.engine.hooks import Hook
from detkit.engine.metrics_log import MetricsLog, read_metrics
from detkit.engine.optim import build_optimizer, parameter_groups
from detkit.engine.runner import build_trainer, check_train_config, run_training
from detkit.engine.schedules import (
    ConstantLR, CosineLR, ExponentialLR, InverseSqrtLR, InverseTimeLR, LRSchedule, MultiStepLR,
    PolynomialLR,
)
from detkit.engine.settings import TrainSettings, default_train
from detkit.engine.tensorboard_log import TensorBoardLog, TensorBoardMissingError
from detkit.engine.trainer import NonFiniteLossError, Trainer
from detkit.engine.yolo_schedule import YOLOLinearLR

__all__ = [
    "Checkpointer", "CloseMosaic", "ConstantLR", "CosineLR", "DataLoadingError", "EarlyStopping", "EpochBatchSampler", "EvaluationReport", "ExponentialLR", "Hook",
    "InverseSqrtLR", "InverseTimeLR", "LRSchedule", "MetricsLog", "ModelEMA", "MultiStepLR",
    "NonFiniteLossError", "PolynomialLR", "TensorBoardLog", "TensorBoardMissingError", "TqdmLoggingHandler",
    "TrainSettings", "Trainer", "YOLOLinearLR", "atomic_torch_save",
    "build_evaluator", "build_optimizer", "build_test_loader", "build_train_loader", "build_trainer",
    "check_train_config",
    "config_evaluator", "default_train", "evaluate_config", "load_checkpoint", "parameter_groups", "read_metrics",
    "run_training",
]
