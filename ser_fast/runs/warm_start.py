"""Warm starts: a new run's network begins from a trained ser_fast model (``ser-fast train --init MODEL_DIR_OR_RUN``).

Every tensor of the trained model whose name and shape the new network shares is copied; the rest keep their fresh
initialisation. The output layers (each ``nn.Linear`` with one output per class) follow the class names: the same
classes in another order are permuted into this run's order, another class set is re-initialised even where its size
matches. So a model trained on another class set gives everything but its output layer, and a Baseline gives a DSNet
its shared encoder. Another target (``ser_fast.models.targets``) works the same way: a head the source lacks (the
regressor of a categorical model) starts afresh, one the new network lacks is not copied. What was kept and what was re-initialised is logged and returned. Models that read other
inputs (log-Mel features against waveforms) are refused, as is a source that shares no tensor of the encoder.
Nothing is unpickled: the source is read as safetensors + JSON (``ser_fast.runs.saved``)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ser_fast.runs.layout import model_folder
from ser_fast.runs.model_files import read_model_files
from ser_fast.runs.registry import kind_of_model, model_kind
from ser_fast.runs.saved import model_from_saved

logger = logging.getLogger(__name__)

# The part of each network that reads the input; a warm start must reach into it.
ENCODER_PREFIXES = ("encoder.", "ssl.", "se_ssl.", "ser_ssl.")


@dataclass(frozen=True)
class WarmStart:
    """What :func:`warm_start` did: the source folder and kind, the tensors copied and those left re-initialised
    (with the reason: absent from the source, or another shape)."""

    source: Path
    source_kind: str
    kept: tuple[str, ...]
    reinitialised: tuple[tuple[str, str], ...]

    def summary(self) -> str:
        groups = sorted({name.split(".")[0] for name, _ in self.reinitialised})
        return (f"warm start from {self.source} ({self.source_kind}): kept {len(self.kept)} tensors, re-initialised "
                f"{len(self.reinitialised)}" + (f" (in {', '.join(groups)})" if groups else ""))


def warm_start(model: torch.nn.Module, source: str | os.PathLike, classes: Sequence[str]) -> WarmStart:
    """Copy into ``model`` (in place; its outputs are ``classes``, in order) every tensor of the trained model at
    ``source`` (a run folder, whose best fold is taken, or a model folder) that has the same name and shape, the
    output layers by class name. Raises ValueError for a source of other inputs or one that shares none of the
    encoder; ModelFileError / FileNotFoundError for a folder that holds no model."""
    classes = tuple(classes)
    folder, trained, source_classes = _source(source, model)
    target_kind, source_kind = kind_of_model(model), kind_of_model(trained)
    theirs = dict(trained.state_dict())
    ours = model.state_dict()
    outputs = _output_tensors(model, len(classes)) & _output_tensors(trained, len(source_classes))
    if source_classes != classes and set(source_classes) == set(classes):
        order = torch.tensor([source_classes.index(c) for c in classes])
        theirs.update({name: theirs[name][order] for name in outputs})
    kept, reinitialised = [], []
    for name, tensor in ours.items():
        if name in outputs and set(source_classes) != set(classes):
            reinitialised.append((name, f"another class set (the source's: {', '.join(source_classes)})"))
        elif name not in theirs:
            reinitialised.append((name, "not in the source"))
        elif theirs[name].shape != tensor.shape:
            reinitialised.append((name, f"shape {tuple(theirs[name].shape)} in the source, {tuple(tensor.shape)} here"))
        else:
            kept.append(name)
    if not any(name.startswith(ENCODER_PREFIXES) for name in kept):
        raise ValueError(f"--init {folder}: the {source_kind.name} model shares no encoder tensor with this "
                         f"{target_kind.name} network (another architecture or size); nothing to start from")
    with torch.no_grad():
        for name in kept:
            ours[name].copy_(theirs[name])
    if hasattr(trained, "to_saved") and hasattr(model, "to_saved"):
        logger.info("warm start: EDRL-MEA's MB-PLS alignment is fitted anew after training, not copied")
    result = WarmStart(folder, source_kind.name, tuple(kept), tuple(reinitialised))
    logger.info("%s", result.summary())
    for name, reason in reinitialised:
        logger.info("  re-initialised %s: %s", name, reason)
    return result


def check_source(source: str | os.PathLike, kind: str) -> Path:
    """The model folder ``source`` names, checked before a run spends time on features: it holds a model, and one
    that reads what a ``kind`` model reads. Raises as :func:`warm_start`."""
    folder = model_folder(Path(_check_path(source)).expanduser())
    source_kind = model_kind(read_model_files(folder).kind)
    _check_inputs(folder, source_kind, model_kind(kind))
    return folder


def _source(source: object, model: torch.nn.Module) -> tuple[Path, torch.nn.Module, tuple[str, ...]]:
    folder = model_folder(Path(_check_path(source)).expanduser())
    trained, _, source_classes = model_from_saved(read_model_files(folder))
    _check_inputs(folder, kind_of_model(trained), kind_of_model(model))
    return folder, trained, tuple(source_classes)


def _check_path(source: object) -> str | os.PathLike:
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"init must be a model folder or run folder path, got {type(source).__name__}")
    return source


def _check_inputs(folder: Path, source_kind, target_kind) -> None:
    if target_kind.input != source_kind.input:
        raise ValueError(f"--init {folder}: a {source_kind.name} model reads {source_kind.input}, this run's "
                         f"{target_kind.name} reads {target_kind.input}; a warm start needs the same input features")


def _output_tensors(model: torch.nn.Module, num_classes: int) -> set[str]:
    """The weight and bias names of ``model``'s class output layers: each ``nn.Linear`` with ``num_classes`` outputs
    outside its dimensional regressor (whose 3 outputs are arousal, valence and dominance, whatever the classes)."""
    return {f"{name}.{part}" for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and module.out_features == num_classes
            and "regressor" not in name.split(".")
            for part in ("weight", "bias") if getattr(module, part) is not None}


def encoder_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The parameters of the part of ``model`` that reads the input (``ENCODER_PREFIXES``): what ``--freeze encoder``
    freezes and ``encoder_lr_scale`` slows."""
    return [p for name, p in model.named_parameters() if name.startswith(ENCODER_PREFIXES)]
