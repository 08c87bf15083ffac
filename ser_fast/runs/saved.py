"""One ``load`` and one ``save`` for every model kind: a model, its training config and its class names to and from a
saved model folder (safetensors + JSON, through ``ser_fast.runs.model_files``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ser_fast.runs.model_files import (
    CONFIG_FILE,
    MODEL_STATE_KEY,
    WEIGHTS_FILE,
    ModelFileError,
    SavedModel,
    load_weights,
    read_model_files,
    write_model_files,
)
from ser_fast.runs.registry import kind_of_config, model_kind


def save_model(folder: str | os.PathLike, model: torch.nn.Module, config: Any, classes: Sequence[str]) -> Path:
    """Write ``model`` with its training ``config`` and ``classes`` as a saved model folder (what :func:`load_model`
    reads); returns the folder. A model with state beyond its state dict (EDRL-MEA's MB-PLS) gives it through
    ``to_saved() -> (tensors, json_state)``."""
    kind = kind_of_config(config)
    if not isinstance(model, kind.model_classes):
        raise TypeError(f"a {kind.name} config describes a {' or '.join(c.__name__ for c in kind.model_classes)}, "
                        f"got a {type(model).__name__}")
    tensors, state = model.to_saved() if hasattr(model, "to_saved") else (model.state_dict(), None)
    return write_model_files(folder, tensors, kind=kind.name, classes=tuple(classes), settings=config.to_dict(),
                             extra=None if state is None else {MODEL_STATE_KEY: state})


def load_model(folder: str | os.PathLike) -> tuple[torch.nn.Module, Any, tuple[str, ...]]:
    """The model a saved folder holds (eval mode; EDRL-MEA aligned), its training config and class names: safetensors +
    JSON only, checked by ``read_model_files`` (a wrong, tampered or pickled file is a ``ModelFileError``)."""
    folder = Path(folder)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name} not found: is {folder} a trained fold?")
    return model_from_saved(read_model_files(folder))


def model_from_saved(saved: SavedModel) -> tuple[torch.nn.Module, Any, tuple[str, ...]]:
    """The model (eval mode), config and class names that a checked saved folder describes."""
    kind = model_kind(saved.kind)
    try:
        config = kind.config_class.from_dict(saved.settings)
        if config.model != saved.kind:
            raise ValueError(f"settings say model {config.model!r}, the file says {saved.kind!r}")
        model = kind.build(config, len(saved.classes))
    except (TypeError, ValueError) as error:
        raise ModelFileError(f"{saved.config_path}: its settings are not valid for a {saved.kind} model ({error}); "
                             "the file was edited or written by another version of ser_fast.") from None
    load_weights(model, saved)
    return model.eval(), config, saved.classes
