"""What DSNet's subspaces encode, measured: the paper's Fig. 3 claim is that z_er separates emotions across speakers
while z_ei groups each speaker's utterances whatever their emotion.

For each space (h, z_er, z_ei) of a set of held-out utterances:

- ``dead_fraction``: the share of features that do not vary over the utterances (a ReLU unit that is 0 for all of them,
  or any constant feature). A dead branch satisfies a z-scored orthogonality loss for free (issue 17).
- ``emotion_probe_uar``: a logistic regression from the vectors to the emotion, cross-validated with speakers as groups
  (no speaker is in both the probe's training and test folds), scored as UAR on the pooled held-out predictions.
- ``speaker_probe_accuracy``: the same regression to the speaker, folds stratified by speaker, scored as accuracy.

The probes standardise each feature first (a constant feature stays 0), so they read what the vectors encode, not
their scale.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

import numpy as np

logger = logging.getLogger(__name__)

# A feature is dead when its standard deviation over the utterances is at most DEAD_RELATIVE times the space's median
# feature spread (or DEAD_STD, whichever is larger): a ReLU unit that never fires is exactly constant, and a projection
# that has shrunk a feature to nothing is as useless though not exactly constant.
DEAD_STD = 1e-6
DEAD_RELATIVE = 1e-3
PROBE_FOLDS = 5
DEAD_WARNING = 0.5  # the share of dead features in a branch at which training warns


def dead_fraction(vectors: np.ndarray) -> float:
    """The share of the columns of ``vectors [N, D]`` (N >= 2) that do not vary over the rows (``DEAD_RELATIVE``); NaN
    when ``vectors`` holds NaN or infinite values (a diverged model: nothing to measure, and nothing to stop for)."""
    vectors = _matrix(vectors, "vectors")
    if len(vectors) < 2:
        raise ValueError(f"dead_fraction needs at least 2 rows to see a feature vary, got {len(vectors)}")
    if not np.isfinite(vectors).all():
        return math.nan
    spread = vectors.astype(np.float64).std(axis=0)
    return float(np.mean(spread <= max(DEAD_STD, DEAD_RELATIVE * float(np.median(spread)))))


def probe_scores(vectors: np.ndarray, emotions: Sequence[int], speakers: Sequence[str], *,
                 folds: int = PROBE_FOLDS, seed: int = 0) -> dict[str, float | None]:
    """``{"emotion_probe_uar", "speaker_probe_accuracy"}`` of ``vectors [N, D]`` (module docstring), in [0, 1]. A
    probe that cannot be cross-validated is None: fewer than 2 speakers (emotion: or 2 emotions, or a training split
    with a single emotion; speaker: after leaving out speakers with a single utterance), or non-finite vectors."""
    vectors = _matrix(vectors, "vectors")
    emotions, speakers = np.asarray(emotions), np.asarray(speakers)
    if emotions.shape != (len(vectors),) or speakers.shape != (len(vectors),):
        raise ValueError(f"emotions and speakers must have one entry per row of vectors ({len(vectors)}), got "
                         f"{emotions.shape} and {speakers.shape}")
    scores: dict[str, float | None] = {"emotion_probe_uar": None, "speaker_probe_accuracy": None}
    if not np.isfinite(vectors).all():
        return scores
    from sklearn.metrics import accuracy_score, balanced_accuracy_score
    from sklearn.model_selection import GroupKFold, StratifiedKFold

    names = np.unique(speakers)
    if len(names) >= 2 and len(np.unique(emotions)) >= 2:
        splits = GroupKFold(n_splits=min(folds, len(names)))
        predicted = _cross_validated(vectors, emotions, splits, seed, groups=speakers)
        if predicted is not None:
            scores["emotion_probe_uar"] = float(balanced_accuracy_score(emotions, predicted))
    names, counts = np.unique(speakers, return_counts=True)
    kept = np.isin(speakers, names[counts >= 2])
    if len(names[counts >= 2]) >= 2:
        smallest = int(counts[counts >= 2].min())
        splits = StratifiedKFold(n_splits=min(folds, smallest), shuffle=True, random_state=seed)
        predicted = _cross_validated(vectors[kept], speakers[kept], splits, seed)
        if predicted is not None:
            scores["speaker_probe_accuracy"] = float(accuracy_score(speakers[kept], predicted))
    return scores


def disentanglement(spaces: Mapping[str, np.ndarray], emotions: Sequence[int], speakers: Sequence[str], *,
                    seed: int = 0) -> dict[str, dict[str, float | None]]:
    """``{space: {"dead_fraction", "emotion_probe_uar", "speaker_probe_accuracy"}}`` for each of ``spaces`` (e.g. h,
    z_er and z_ei of the same utterances)."""
    return {name: {"dead_fraction": dead_fraction(vectors), **probe_scores(vectors, emotions, speakers, seed=seed)}
            for name, vectors in spaces.items()}


def mean_over_folds(per_fold: Sequence[Mapping[str, Mapping[str, float | None]]]) -> dict[str, dict[str, float | None]]:
    """The mean of each score over the folds that have it (None where none has)."""
    if not per_fold:
        raise ValueError("mean_over_folds needs at least one fold's scores")
    means: dict[str, dict[str, float | None]] = {}
    for space in per_fold[0]:
        means[space] = {}
        for score in per_fold[0][space]:
            values = [fold[space][score] for fold in per_fold if fold[space][score] is not None]
            means[space][score] = float(np.mean(values)) if values else None
    return means


def warn_if_dead(fractions: Mapping[str, float], where: str) -> None:
    """Log a warning for each branch whose dead share passes ``DEAD_WARNING``."""
    for name, fraction in fractions.items():
        if fraction > DEAD_WARNING:
            logger.warning("%s: %.0f%% of %s's features are dead (constant over the validation utterances); the "
                           "branch has collapsed and the losses that read it are satisfied without disentangling",
                           where, 100 * fraction, name)


def _cross_validated(vectors: np.ndarray, targets: np.ndarray, splits, seed: int, groups=None) -> np.ndarray | None:
    """Each row's prediction by a probe fitted on the other folds; None when a training fold has a single class."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if any(len(np.unique(targets[train])) < 2 for train, _ in splits.split(vectors, targets, groups)):
        return None
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    return cross_val_predict(probe, vectors, targets, groups=groups, cv=splits)


def _matrix(vectors: object, name: str) -> np.ndarray:
    array = np.asarray(vectors)
    if array.ndim != 2 or 0 in array.shape or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{name} must be a non-empty numeric [N, D] matrix, got shape {array.shape} and dtype "
                         f"{array.dtype}")
    return array
