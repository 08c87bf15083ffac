"""EmoBox's metric set, so that a run on EmoBox's folds (``--protocol emobox``) compares with its leaderboard: WA
(accuracy), UA (macro recall), micro-F1 and macro-F1, computed by scikit-learn on each fold's test predictions, and
their mean over the folds, which is what EmoBox reports (ser_fast's own tables pool the folds' predictions instead)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, recall_score
from tabulate import tabulate

from ser_fast.evaluation.evaluate import ScoredItems

PROTOCOL = "emobox"
METRICS = ("wa", "ua", "micro_f1", "macro_f1")
HEADERS = ("WA %", "UA %", "micro-F1 %", "macro-F1 %")


def fold_metrics(labels: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """EmoBox's four metrics (fractions) of one fold's class indices, as scikit-learn computes them (macro averages
    over the classes present in the labels or the predictions)."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    if labels.ndim != 1 or labels.shape != predictions.shape or labels.size == 0:
        raise ValueError(f"labels and predictions must be 1-D of one non-zero length, got {labels.shape} and "
                         f"{predictions.shape}")
    return {"wa": float(accuracy_score(labels, predictions)),
            "ua": float(recall_score(labels, predictions, average="macro", zero_division=0)),
            "micro_f1": float(f1_score(labels, predictions, average="micro", zero_division=0)),
            "macro_f1": float(f1_score(labels, predictions, average="macro", zero_division=0))}


def emobox_scores(items: ScoredItems) -> dict:
    """``{"folds": {fold: metrics}, "mean": metrics}`` of the scored items, fold by fold (in their order)."""
    if not isinstance(items, ScoredItems):
        raise TypeError(f"items must be ScoredItems (a condition's .items), got {type(items).__name__}")
    folds = np.asarray(items.folds)
    per_fold = {fold: fold_metrics(items.labels[folds == fold], items.predictions[folds == fold])
                for fold in dict.fromkeys(items.folds)}
    return {"folds": per_fold, "mean": {m: float(np.mean([s[m] for s in per_fold.values()])) for m in METRICS}}


def emobox_table(entries: Sequence[tuple[str, dict]]) -> str:
    """One row per model and fold, then each model's mean over its folds, in %."""
    rows = []
    for label, scores in entries:
        for fold, metrics in scores["folds"].items():
            rows.append((label, fold, *(f"{100 * metrics[m]:.2f}" for m in METRICS)))
        rows.append((label, f"**mean of {len(scores['folds'])}**", *(f"**{100 * scores['mean'][m]:.2f}**"
                                                                      for m in METRICS)))
    return tabulate(rows, headers=["model", "fold", *HEADERS], tablefmt="github")


SECTION_NOTE = ("EmoBox's metrics on clean speech, each fold's test set scored alone and the folds averaged, as its "
                "leaderboard does (scikit-learn's accuracy, macro recall, micro-F1 and macro-F1), on the classes the "
                "run was trained on: the leaderboard's numbers are on every class of the dataset's label map "
                "(--classes emobox). The tables above pool the folds' predictions instead.")
