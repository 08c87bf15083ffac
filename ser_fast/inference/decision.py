"""What a prediction decides among and how sure it must be: a subset of the model's classes (their probabilities
renormalised to sum to one) and a minimum confidence below which the label is ``"uncertain"`` (the probabilities are
kept, so a caller can still see what the model leaned to); and, for a model with a dimensional head, the arousal,
valence and dominance values that follow its class probabilities in each window's outputs, restored to the scale its
training corpus rated on."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ser_fast.data.dimensions import DimensionScale

UNCERTAIN = "uncertain"


@dataclass(frozen=True)
class Decision:
    """``classes``: the classes decided among, in the model's order, at ``indices`` of its outputs;
    ``min_confidence``: the least top probability (after renormalising) that gets a class label, or None;
    ``model_classes``: how many class probabilities each output row starts with; ``dimensions``: the names of the
    values that follow them (none for a categorical model), on [0, 1] until :meth:`dimension_values` restores them
    to ``scale``."""

    classes: tuple[str, ...]
    indices: tuple[int, ...]
    min_confidence: float | None = None
    model_classes: int | None = None
    dimensions: tuple[str, ...] = ()
    scale: DimensionScale | None = None

    def probabilities(self, probabilities: np.ndarray) -> np.ndarray:
        """``[..., C_model (+ D)]`` model outputs as ``[..., len(classes) (+ D)]``, the probabilities renormalised
        over ``classes``, the dimension values as they are."""
        width = probabilities.shape[-1] if self.model_classes is None else self.model_classes
        if len(self.indices) == width:  # all of them: the model's own probabilities, as they are
            return probabilities
        kept = probabilities[..., list(self.indices)].astype(np.float64)
        total = kept.sum(axis=-1, keepdims=True)
        # A window the model gives (numerically) no mass on any kept class: uniform over them, not NaN.
        renormalised = np.where(total > 0, kept / np.where(total > 0, total, 1.0), 1.0 / len(self.indices))
        return np.concatenate([renormalised, probabilities[..., width:]], axis=-1)

    def label(self, probabilities: np.ndarray) -> str | None:
        """The label of ``[len(classes) (+ D)]`` outputs: the most probable class, or ``"uncertain"`` below
        ``min_confidence``; None for a model without classes."""
        if not self.classes:
            return None
        probabilities = probabilities[:len(self.classes)]
        best = int(np.argmax(probabilities))
        if self.min_confidence is not None and probabilities[best] < self.min_confidence:
            return UNCERTAIN
        return self.classes[best]

    def dimension_values(self, outputs: np.ndarray) -> dict[str, float]:
        """``{dimension: value}`` of ``[len(classes) + D]`` outputs on the model's rating scale; {} without
        dimensions."""
        if not self.dimensions:
            return {}
        values = self.scale.restore(outputs[len(self.classes):len(self.classes) + len(self.dimensions)])
        return {name: float(value) for name, value in zip(self.dimensions, values)}


def make_decision(model_classes: Sequence[str], classes: Sequence[str] | str | None = None,
                  min_confidence: float | None = None, *, dimensions: Sequence[str] = (),
                  scale: DimensionScale | None = None) -> Decision:
    """A :class:`Decision` for a model with ``model_classes`` (and ``dimensions`` rated on ``scale``); ``classes``: a
    subset of them (a sequence, or one comma-separated string), None for all; ``min_confidence``: in (0, 1], or None.
    ValueError / TypeError saying what is wrong."""
    model_classes, dimensions = tuple(model_classes), tuple(dimensions)
    if dimensions and scale is None:
        raise ValueError("a model with dimension outputs needs the scale they are restored to")
    if not model_classes:
        if classes is not None or min_confidence is not None:
            raise ValueError("this model predicts arousal, valence and dominance only (target 'dimensional'): it has "
                             "no classes to choose among or to be confident in; leave classes and min_confidence out")
        return Decision((), (), None, 0, dimensions, scale)
    if classes is None:
        chosen = model_classes
    else:
        if isinstance(classes, str):
            classes = [name.strip() for name in classes.split(",") if name.strip()]
        if not isinstance(classes, Sequence) or not all(isinstance(name, str) for name in classes):
            raise TypeError(f"classes must be class names (a sequence of str, or 'a,b,c'), got {classes!r}")
        unknown = [name for name in classes if name not in model_classes]
        if unknown:
            raise ValueError(f"classes {unknown} are not the model's; it predicts {', '.join(model_classes)}")
        if len(set(classes)) < 2:
            raise ValueError(f"classes must name at least two distinct classes to decide among, got {list(classes)}")
        chosen = tuple(name for name in model_classes if name in set(classes))
    if min_confidence is not None:
        if isinstance(min_confidence, bool) or not isinstance(min_confidence, numbers.Real) or not (
                0 < min_confidence <= 1 and math.isfinite(min_confidence)):
            raise ValueError(f"min_confidence must be a probability in (0, 1], got {min_confidence!r}")
        if UNCERTAIN in chosen:
            raise ValueError(f"the model has a class named {UNCERTAIN!r}, the label min_confidence gives; it cannot "
                             "be told apart")
        min_confidence = float(min_confidence)
    return Decision(chosen, tuple(model_classes.index(name) for name in chosen), min_confidence, len(model_classes),
                    dimensions, scale)
