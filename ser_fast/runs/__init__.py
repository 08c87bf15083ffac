"""A trained model: the layer under training, evaluation and inference, which all three share.

- ``registry``: the model kinds, listed once (config class, builder, trainer task, input).
- ``config``: the training configs saved beside the weights.
- ``model_files``: safetensors + JSON model folders, checksummed and versioned; nothing unpickled.
- ``saved``: one ``load_model`` / ``save_model`` for every kind.
- ``layout``: the run folder (run.json, fold.json, metrics.jsonl) and the one rule that picks a fold.
- ``checkpoint``: resumable, checked checkpoints.
- ``metrics``: the classification scores validation and evaluation report.
- ``precision``: bf16 where the hardware is fast at it.
"""

from ser_fast.runs.config import MeritTrainConfig, TrainConfig
from ser_fast.runs.layout import model_folder
from ser_fast.runs.metrics import ClassificationScores
from ser_fast.runs.model_files import FORMAT_VERSION, ModelFileError, read_model_files, write_model_files
from ser_fast.runs.registry import ModelKind, kind_names, kind_of_config, kind_of_model, model_kind
from ser_fast.runs.saved import load_model, save_model

__all__ = ["FORMAT_VERSION", "ClassificationScores", "MeritTrainConfig", "ModelFileError", "ModelKind",
           "TrainConfig", "kind_names", "kind_of_config", "kind_of_model", "load_model", "model_folder",
           "model_kind", "read_model_files", "save_model", "write_model_files"]
