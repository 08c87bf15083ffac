"""How well a run's confidence is calibrated on what it was evaluated on: the expected calibration error of its pooled
test predictions before (the plain softmax) and after (each fold's saved temperature, ``ser_fast.runs.calibration``),
with the probabilities behind them for the reliability plot."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import softmax

from ser_fast.runs.calibration import ECE_BINS, expected_calibration_error


@dataclass(frozen=True)
class ConfidenceScores:
    """``before`` and ``after``: class probabilities ``[N, C]`` of the pooled test items without and with the folds'
    temperatures; ``labels [N]``; ``temperatures``: each fold's T (1.0 for a fold saved without one)."""

    labels: np.ndarray
    before: np.ndarray
    after: np.ndarray
    temperatures: dict[str, float]

    @classmethod
    def from_folds(cls, logits: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                   temperatures: dict[str, float]) -> ConfidenceScores:
        """Each fold's ``logits [N_f, C]`` and ``labels [N_f]``, in ``temperatures``' order, pooled."""
        if len(logits) != len(temperatures) or len(labels) != len(temperatures):
            raise ValueError(f"expected logits and labels of {len(temperatures)} folds, got {len(logits)} and "
                             f"{len(labels)}")
        before = [softmax(np.asarray(z, np.float64), axis=1) for z in logits]
        after = [softmax(np.asarray(z, np.float64) / t, axis=1) for z, t in zip(logits, temperatures.values())]
        return cls(np.concatenate(labels).astype(np.int64), np.concatenate(before), np.concatenate(after),
                   dict(temperatures))

    @property
    def ece_before(self) -> float:
        return expected_calibration_error(self.before, self.labels)

    @property
    def ece_after(self) -> float:
        return expected_calibration_error(self.after, self.labels)

    def as_dict(self) -> dict:
        return {"ece_before": self.ece_before, "ece_after": self.ece_after, "ece_bins": ECE_BINS,
                "temperatures": self.temperatures, "utterances": int(self.labels.size)}
