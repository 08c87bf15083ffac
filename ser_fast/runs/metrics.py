"""Classification metrics of speech emotion recognition, from one confusion matrix. UAR (unweighted average recall;
scikit-learn's balanced accuracy) is the field's headline metric; WA (weighted accuracy) is plain accuracy; macro-F1 is
Sparse MERIT's. Predictions of several folds are concatenated before scoring, as the DSNet paper does."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tabulate import tabulate


def _as_labels(values, name: str, num_classes: int) -> np.ndarray:
    array = np.asarray(values.detach().cpu() if hasattr(values, "detach") else values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of class indices, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name} must hold integer class indices, got {array.dtype}")
    if array.size and (array.min() < 0 or array.max() >= num_classes):
        raise ValueError(f"{name} holds class indices outside 0..{num_classes - 1}")
    return array.astype(np.int64)


@dataclass(frozen=True)
class ClassificationScores:
    """Scores of predictions against labels: ``confusion[i, j]`` counts class i predicted as j."""

    classes: tuple[str, ...]
    confusion: np.ndarray

    @classmethod
    def from_predictions(cls, labels, predictions, classes: Sequence[str]) -> ClassificationScores:
        classes = tuple(classes)
        labels = _as_labels(labels, "labels", len(classes))
        predictions = _as_labels(predictions, "predictions", len(classes))
        if labels.shape != predictions.shape:
            raise ValueError(f"labels ({labels.size}) and predictions ({predictions.size}) differ in length")
        if labels.size == 0:
            raise ValueError("no predictions to score")
        confusion = np.bincount(labels * len(classes) + predictions, minlength=len(classes) ** 2)
        return cls(classes, confusion.reshape(len(classes), len(classes)))

    @property
    def support(self) -> np.ndarray:
        return self.confusion.sum(axis=1)

    @property
    def recall(self) -> np.ndarray:
        """Per-class recall; NaN for a class with no true samples."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.diag(self.confusion) / self.support

    @property
    def uar(self) -> float:
        """Mean recall over the classes present in the labels (= sklearn's balanced accuracy)."""
        return float(np.nanmean(self.recall))

    @property
    def wa(self) -> float:
        return float(np.trace(self.confusion) / self.confusion.sum())

    @property
    def macro_f1(self) -> float:
        """Mean F1 over the classes present in labels or predictions (= sklearn's macro F1)."""
        tp = np.diag(self.confusion).astype(np.float64)
        predicted, actual = self.confusion.sum(axis=0), self.support
        denominator = predicted + actual
        present = denominator > 0
        f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=present)
        return float(f1[present].mean())

    def as_dict(self) -> dict:
        return {
            "uar": self.uar, "wa": self.wa, "macro_f1": self.macro_f1,
            "recall": {c: (None if np.isnan(r) else float(r)) for c, r in zip(self.classes, self.recall)},
            "support": {c: int(s) for c, s in zip(self.classes, self.support)},
            "confusion": self.confusion.tolist(), "classes": list(self.classes),
        }

    def to_markdown(self) -> str:
        rows = [(c, int(s), "—" if np.isnan(r) else f"{100 * r:.1f}") for c, s, r in
                zip(self.classes, self.support, self.recall)]
        table = tabulate(rows, headers=["class", "utterances", "recall %"], tablefmt="github")
        return (f"UAR {100 * self.uar:.2f} %, WA {100 * self.wa:.2f} %, macro-F1 {100 * self.macro_f1:.2f} %\n\n"
                + table)
