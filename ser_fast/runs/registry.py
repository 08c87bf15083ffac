"""The model kinds, listed once. Every model class has the same inference interface, ``encode(inputs, lengths) -> h``
and ``head(h) -> (logits, embedding)``; a new kind takes one :func:`register` call here plus its model class, config
class and trainer task. ``logits`` are the scores of the model's target: class logits, then arousal, valence and
dominance on [0, 1] for a model with a dimensional head (``ser_fast.models.targets``)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from ser_fast.models import EDRLMEA, Baseline, DSNet
from ser_fast.models.merit.model import MeritConfig, SEThenSER, SparseMERIT, build_merit
from ser_fast.models.targets import has_classes
from ser_fast.runs.names import ALIGNMENT_JSON, METRICS

FEATURES, WAVEFORM = "features", "waveform"


@dataclass(frozen=True)
class ModelKind:
    """One model kind.
    name: what config.json's ``model`` and the configs' ``model`` field say.
    config: ``"module:Class"`` of the settings saved beside the weights (``ser_fast.runs.config``, which checks its
        ``model`` field against this registry, so it is named, not imported).
    model_classes: the classes its builder returns.
    build: ``(config, num_classes) -> model``, freshly initialised (seed torch first).
    task: ``"module:Class"`` of its trainer task; training sits above this layer, so it is imported when a run is
        trained, as an entry point would be.
    input: ``"features"`` (log-Mel + Δ + ΔΔ ``[B, 3, T, 80]``, ``ser_fast.frontend.recipe``) or ``"waveform"``
        (``[B, S]`` at 16 kHz).
    selection: ``(file, key)`` pairs in a fold's folder that score it when a run's best fold is chosen
        (``ser_fast.runs.layout.validation_score``)."""

    name: str
    config: str
    model_classes: tuple[type[nn.Module], ...]
    build: Callable[[Any, int], nn.Module]
    task: str
    input: str
    selection: tuple[tuple[str, str], ...]

    @property
    def config_class(self) -> type:
        return _resolve(self.config)

    def trainer_task(self) -> type:
        return _resolve(self.task)


def _resolve(reference: str) -> Any:
    module, name = reference.split(":")
    return getattr(importlib.import_module(module), name)


_KINDS: dict[str, ModelKind] = {}


def register(kind: ModelKind) -> ModelKind:
    if kind.name in _KINDS:
        raise ValueError(f"model kind {kind.name!r} is registered already")
    if kind.input not in (FEATURES, WAVEFORM):
        raise ValueError(f"model kind {kind.name!r}: input must be {FEATURES!r} or {WAVEFORM!r}, got {kind.input!r}")
    _KINDS[kind.name] = kind
    return kind


def kind_names() -> tuple[str, ...]:
    return tuple(_KINDS)


def model_kind(name: object) -> ModelKind:
    """The registered kind called ``name``; a ValueError listing the kinds otherwise."""
    if not isinstance(name, str) or name not in _KINDS:
        raise ValueError(f"model {name!r}: expected one of {kind_names()}")
    return _KINDS[name]


def kind_of_config(config: object) -> ModelKind:
    """The kind a training config describes (its ``model`` field), checked against its class."""
    kind = model_kind(getattr(config, "model", None))
    if not isinstance(config, kind.config_class):
        raise TypeError(f"a {kind.name} model is configured with a {kind.config_class.__name__}, got a "
                        f"{type(config).__name__}")
    return kind


def kind_of_model(model: object) -> ModelKind:
    """The kind of a built model; a TypeError naming the model classes otherwise."""
    for kind in _KINDS.values():
        if isinstance(model, kind.model_classes):
            return kind
    known = ", ".join(cls.__name__ for kind in _KINDS.values() for cls in kind.model_classes)
    raise TypeError(f"model must be one of ser_fast's models ({known}), got {type(model).__name__}")


def _build_dsnet(config: Any, num_classes: int) -> DSNet:
    return DSNet(num_classes, alpha=config.alpha, beta=config.beta, gamma=config.gamma,
                 use_orthogonality=config.use_orthogonality, use_reconstruction=config.use_reconstruction,
                 use_calibration=config.use_calibration, projector_relu=config.projector_relu,
                 calibration=config.calibration, target=config.target)


def _build_merit(config: Any, num_classes: int) -> nn.Module:
    """A dimensional model is saved with no classes, and its network's ``num_classes`` (which it ignores) stays as
    configured, so the config stays valid."""
    network = config.network.to_dict()
    if has_classes(config.target):
        network["num_classes"] = num_classes
    return build_merit(MeritConfig.from_dict(network), target=config.target)


_TRAIN_CONFIG = "ser_fast.runs.config:TrainConfig"
_CNN_TASK = "ser_fast.training.cnn_task:CNNTask"
# A dimensional model (no classes) records no UAR: its folds are compared by the mean CCC.
_BEST_CCC = (METRICS, "val_ccc")
_BEST_UAR = ((METRICS, "val_uar"), _BEST_CCC)
register(ModelKind("baseline", _TRAIN_CONFIG, (Baseline,), lambda config, n: Baseline(n, target=config.target),
                   _CNN_TASK, FEATURES, _BEST_UAR))
register(ModelKind("dsnet", _TRAIN_CONFIG, (DSNet,), _build_dsnet, _CNN_TASK, FEATURES, _BEST_UAR))
register(ModelKind("edrl-mea", _TRAIN_CONFIG, (EDRLMEA,),
                   lambda config, n: EDRLMEA(n, variant=config.variant, n_components=config.n_components),
                   _CNN_TASK, FEATURES, ((ALIGNMENT_JSON, "aligned_val_uar"), *_BEST_UAR)))
register(ModelKind("merit", "ser_fast.runs.config:MeritTrainConfig", (SparseMERIT, SEThenSER), _build_merit,
                   "ser_fast.training.merit_task:MeritTask", WAVEFORM, ((METRICS, "val_macro_f1"), _BEST_CCC)))
