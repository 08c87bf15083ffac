"""Training every model kind: one resumable epoch loop (``loop``), a trainer task per model family (``cnn_task``,
``merit_task``), runs over a protocol's folds (``run``), data-parallel training under torchrun (``distributed``)."""

from ser_fast.data.features import FeatureTable, extract_features
from ser_fast.runs.config import MeritTrainConfig, TrainConfig
from ser_fast.training.cnn_task import FoldData, train_fold
from ser_fast.training.merit_task import train_merit_fold
from ser_fast.training.run import PROTOCOLS, make_folds, train_run

__all__ = ["PROTOCOLS", "FeatureTable", "FoldData", "MeritTrainConfig", "TrainConfig", "extract_features",
           "make_folds", "train_fold", "train_merit_fold", "train_run"]
