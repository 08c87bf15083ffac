"""The metrics equal scikit-learn's on random predictions, and bad input is explained."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from helpers import assert_close
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, f1_score, recall_score

from ser_fast.runs.metrics import ClassificationScores

CLASSES = ("neutral", "happy", "sad", "angry")


@pytest.mark.parametrize("seed", range(25), ids=lambda s: f"seed{s}")
def test_equal_to_sklearn_on_random_predictions(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 300))
    present = rng.choice(4, size=int(rng.integers(1, 5)), replace=False)  # some classes may be absent
    labels = rng.choice(present, n)
    predictions = np.where(rng.random(n) < 0.4, labels, rng.integers(0, 4, n))
    scores = ClassificationScores.from_predictions(labels, predictions, CLASSES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns about classes absent from the labels
        assert_close(scores.uar, balanced_accuracy_score(labels, predictions), atol=1e-12, msg="UAR")
        assert_close(scores.macro_f1, f1_score(labels, predictions, average="macro", zero_division=0.0), atol=1e-12,
                     msg="macro-F1")
        assert_close(scores.wa, np.mean(labels == predictions), atol=1e-12, msg="WA")
        expected_recall = recall_score(labels, predictions, labels=present, average=None, zero_division=0.0)
        assert_close(scores.recall[present], expected_recall, atol=1e-12, msg="per-class recall")
    assert np.array_equal(scores.confusion, confusion_matrix(labels, predictions, labels=range(4)))


def test_report_forms():
    scores = ClassificationScores.from_predictions([0, 1, 2, 3, 3], [0, 1, 2, 3, 0], CLASSES)
    d = scores.as_dict()
    assert d["recall"]["angry"] == 0.5 and d["support"]["angry"] == 2 and d["confusion"][3][0] == 1
    assert "UAR 87.50 %" in scores.to_markdown() and "| angry" in scores.to_markdown()


@pytest.mark.parametrize("labels, predictions, error, pattern", [
    pytest.param([0, 1], [0], ValueError, "differ in length", id="length"),
    pytest.param([], [], ValueError, "no predictions", id="empty"),
    pytest.param([0, 4], [0, 1], ValueError, "outside 0..3", id="out-of-range"),
    pytest.param([0.0, 1.0], [0, 1], TypeError, "integer class indices", id="float-labels"),
    pytest.param([[0, 1]], [[0, 1]], ValueError, "1-D", id="2d"),
])
def test_bad_input(labels, predictions, error, pattern):
    with pytest.raises(error, match=pattern):
        ClassificationScores.from_predictions(labels, predictions, CLASSES)
