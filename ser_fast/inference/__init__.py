"""Inference: graph, batching, decoding, :class:`EmotionRecognizer` (``from_pretrained`` → ``predict``), batch jobs and
ONNX export (model files: ``ser_fast.runs``); the recognizer and the graph are imported on first use."""

from __future__ import annotations

import importlib
from typing import Any

from ser_fast.runs.model_files import FORMAT_VERSION, ModelFileError, read_model_files, write_model_files

_LAZY = {
    "EmotionRecognizer": "ser_fast.inference.recognizer",
    "Prediction": "ser_fast.inference.predictions",
    "WindowPrediction": "ser_fast.inference.predictions",
    "SegmentPrediction": "ser_fast.inference.predictions",
    "Segment": "ser_fast.inference.segments",
    "read_segments": "ser_fast.inference.segments",
    "speech_segments": "ser_fast.inference.segments",
    "AudioInputError": "ser_fast.inference.decoding",
    "decode_audio": "ser_fast.inference.decoding",
    "InferenceGraph": "ser_fast.inference.graph",
    "fold_batchnorm": "ser_fast.inference.graph",
    "length_buckets": "ser_fast.inference.batching",
    "export_onnx": "ser_fast.inference.onnx_export",
    "export_run": "ser_fast.inference.onnx_export",
    "read_metadata": "ser_fast.inference.onnx_export",
}

__all__ = ["FORMAT_VERSION", "ModelFileError", "read_model_files", "write_model_files", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
