"""Training the models: features, folds, the trainer with resumable checkpoints (Baseline, DSNet,
EDRL-MEA) and the noisy-pair trainer of Sparse MERIT (merit_trainer)."""

from ser_fast.training.config import TrainConfig
from ser_fast.training.features import FeatureTable, extract_features
from ser_fast.training.run import PROTOCOLS, load_fold_model, make_folds, train_run
from ser_fast.training.trainer import FoldData, train_fold

__all__ = ["PROTOCOLS", "FeatureTable", "FoldData", "TrainConfig", "extract_features", "load_fold_model",
           "make_folds", "train_fold", "train_run"]
