"""Metrics of speech emotion recognition. Classification, from one confusion matrix: UAR (unweighted average recall;
scikit-learn's balanced accuracy) is the field's headline metric; WA (weighted accuracy) is plain accuracy; macro-F1 is
Sparse MERIT's. Predictions of several folds are concatenated before scoring, as the DSNet paper does. Dimensional
(arousal, valence, dominance): CCC, Pearson's r and MAE per dimension."""

from __future__ import annotations

import warnings
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


def concordance(targets, predictions) -> np.ndarray:
    """Lin's concordance correlation coefficient per column of ``[N, D]`` arrays (or of two 1-D arrays):
    ``2 cov(x, y) / (var x + var y + (mean x - mean y)^2)`` with population moments, as Lin (1989) and audmetric
    define it (torchmetrics' ``ConcordanceCorrCoef`` uses sample moments, which differ by O(1/N)). NaN where both
    columns are the same constant (0/0); 0 where one is constant and the means differ."""
    x, y = (np.asarray(v, dtype=np.float64) for v in (targets, predictions))
    if x.shape != y.shape or x.ndim not in (1, 2) or len(x) == 0:
        raise ValueError(f"targets {x.shape} and predictions {y.shape} must be the same non-empty [N] or [N, D]")
    mean_x, mean_y = x.mean(axis=0), y.mean(axis=0)
    covariance = ((x - mean_x) * (y - mean_y)).mean(axis=0)
    denominator = x.var(axis=0) + y.var(axis=0) + (mean_x - mean_y) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return 2 * covariance / denominator


@dataclass(frozen=True)
class DimensionalScores:
    """Scores of dimensional predictions (arousal, valence, dominance, ...) against their targets, per dimension: CCC
    (the field's headline metric, MSP-Podcast's challenge metric), Pearson's r and the mean absolute error, on the
    scale the values are given in."""

    dimensions: tuple[str, ...]
    ccc: np.ndarray
    pearson: np.ndarray
    mae: np.ndarray
    count: int

    @classmethod
    def from_predictions(cls, targets, predictions, dimensions: Sequence[str]) -> DimensionalScores:
        dimensions = tuple(dimensions)
        x = _as_values(targets, "targets", len(dimensions))
        y = _as_values(predictions, "predictions", len(dimensions))
        if x.shape != y.shape:
            raise ValueError(f"targets {x.shape} and predictions {y.shape} differ in shape")
        if len(x) < 2:
            raise ValueError(f"dimensional scores need at least 2 predictions, got {len(x)}")
        centred_x, centred_y = x - x.mean(axis=0), y - y.mean(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            pearson = (centred_x * centred_y).sum(axis=0) / np.sqrt((centred_x ** 2).sum(axis=0)
                                                                   * (centred_y ** 2).sum(axis=0))
        return cls(dimensions, concordance(x, y), pearson, np.abs(x - y).mean(axis=0), len(x))

    @classmethod
    def mean_of(cls, scores: Sequence[DimensionalScores]) -> DimensionalScores:
        """The mean of several models' scores of the same utterances (each fold model of a run on another corpus, as
        the class scores are averaged there); ``count`` stays the utterances'."""
        if not scores or len({(s.dimensions, s.count) for s in scores}) != 1:
            raise ValueError("mean_of needs one or more scores of the same dimensions and utterances")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a column NaN in every fold stays NaN
            return cls(scores[0].dimensions, *(np.nanmean([getattr(s, name) for s in scores], axis=0)
                                               for name in ("ccc", "pearson", "mae")), scores[0].count)

    @property
    def mean_ccc(self) -> float:
        """The mean CCC over the dimensions (NaN counted as 0: a constant prediction agrees with nothing)."""
        return float(np.nan_to_num(self.ccc).mean())

    def as_dict(self) -> dict:
        def per_dimension(values: np.ndarray) -> dict:
            return {d: (None if np.isnan(v) else float(v)) for d, v in zip(self.dimensions, values)}

        return {"mean_ccc": self.mean_ccc, "ccc": per_dimension(self.ccc), "pearson": per_dimension(self.pearson),
                "mae": per_dimension(self.mae), "count": self.count, "dimensions": list(self.dimensions)}

    def to_markdown(self) -> str:
        def shown(value: float) -> str:
            return "—" if np.isnan(value) else f"{value:.3f}"

        rows = [(d, shown(c), shown(r), shown(m)) for d, c, r, m in
                zip(self.dimensions, self.ccc, self.pearson, self.mae)]
        table = tabulate(rows, headers=["dimension", "CCC", "Pearson r", "MAE"], tablefmt="github")
        return f"mean CCC {self.mean_ccc:.3f} over {self.count} utterances\n\n" + table


def _as_values(values, name: str, dimensions: int) -> np.ndarray:
    array = np.asarray(values.detach().cpu() if hasattr(values, "detach") else values, dtype=np.float64)
    if array.ndim == 1 and dimensions == 1:
        array = array[:, None]
    if array.ndim != 2 or array.shape[1] != dimensions:
        raise ValueError(f"{name} must be [utterances, {dimensions}] (one column per dimension), got shape "
                         f"{array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} hold NaN or infinite values")
    return array
