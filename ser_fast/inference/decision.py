"""What a prediction decides among and how sure it must be: a subset of the model's classes (their probabilities
renormalised to sum to one) and a minimum confidence below which the label is ``"uncertain"`` (the probabilities are
kept, so a caller can still see what the model leaned to)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

UNCERTAIN = "uncertain"


@dataclass(frozen=True)
class Decision:
    """``classes``: the classes decided among, in the model's order, at ``indices`` of its outputs;
    ``min_confidence``: the least top probability (after renormalising) that gets a class label, or None."""

    classes: tuple[str, ...]
    indices: tuple[int, ...]
    min_confidence: float | None = None

    def probabilities(self, probabilities: np.ndarray) -> np.ndarray:
        """``[..., C_model]`` model probabilities as ``[..., len(classes)]``, renormalised over ``classes``."""
        if len(self.indices) == probabilities.shape[-1]:  # all of them: the model's own probabilities, as they are
            return probabilities
        kept = probabilities[..., list(self.indices)].astype(np.float64)
        total = kept.sum(axis=-1, keepdims=True)
        # A window the model gives (numerically) no mass on any kept class: uniform over them, not NaN.
        return np.where(total > 0, kept / np.where(total > 0, total, 1.0), 1.0 / len(self.indices))

    def label(self, probabilities: np.ndarray) -> str:
        """The label of ``[len(classes)]`` probabilities: the most probable class, or ``"uncertain"`` below
        ``min_confidence``."""
        best = int(np.argmax(probabilities))
        if self.min_confidence is not None and probabilities[best] < self.min_confidence:
            return UNCERTAIN
        return self.classes[best]


def make_decision(model_classes: Sequence[str], classes: Sequence[str] | str | None = None,
                  min_confidence: float | None = None) -> Decision:
    """A :class:`Decision` for a model with ``model_classes``; ``classes``: a subset of them (a sequence, or one
    comma-separated string), None for all; ``min_confidence``: in (0, 1], or None. ValueError / TypeError saying what
    is wrong."""
    model_classes = tuple(model_classes)
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
    return Decision(chosen, tuple(model_classes.index(name) for name in chosen), min_confidence)
