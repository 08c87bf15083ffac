"""A trained model (its kind, config, files, run folder, checkpoints and scores): the layer that training, evaluation
and inference share."""

from ser_fast.runs.config import MeritTrainConfig, TrainConfig
from ser_fast.runs.layout import model_folder
from ser_fast.runs.metrics import ClassificationScores
from ser_fast.runs.model_files import FORMAT_VERSION, ModelFileError, read_model_files, write_model_files
from ser_fast.runs.registry import ModelKind, kind_names, kind_of_config, kind_of_model, model_kind
from ser_fast.runs.saved import load_model, save_model
from ser_fast.runs.warm_start import WarmStart, warm_start

__all__ = ["FORMAT_VERSION", "ClassificationScores", "MeritTrainConfig", "ModelFileError", "ModelKind",
           "TrainConfig", "WarmStart", "kind_names", "kind_of_config", "kind_of_model", "load_model", "model_folder",
           "model_kind", "read_model_files", "save_model", "warm_start", "write_model_files"]
