"""Inference: safe model files, the inference-time graph, length-bucketed batching and
:class:`EmotionRecognizer` (``from_pretrained`` → ``predict``).

Only the model-file checks are imported eagerly (the training code writes through them); the
recognizer and the graph load torch models and are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from ser_fast.inference.model_files import FORMAT_VERSION, ModelFileError, read_model_files, write_model_files

_LAZY = {
    "EmotionRecognizer": "ser_fast.inference.recognizer",
    "Prediction": "ser_fast.inference.recognizer",
    "WindowPrediction": "ser_fast.inference.recognizer",
    "AudioInputError": "ser_fast.inference.recognizer",
    "decode_audio": "ser_fast.inference.recognizer",
    "InferenceGraph": "ser_fast.inference.graph",
    "fold_batchnorm": "ser_fast.inference.graph",
    "length_buckets": "ser_fast.inference.batching",
}

__all__ = ["FORMAT_VERSION", "ModelFileError", "read_model_files", "write_model_files", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
