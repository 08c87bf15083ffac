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
from collections.abc import Mapping, Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from sklearn.model_selection import GroupKFold, StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

logger = logging.getLogger(__name__)

SPACES = ("h", "z_er", "z_ei")
# A feature whose standard deviation over the utterances is at most this is dead: the values are O(0.1-10), and a
# ReLU unit that never fires is exactly constant.
DEAD_STD = 1e-6
PROBE_FOLDS = 5
DEAD_WARNING = 0.5  # the share of dead features in a branch at which training warns


def dead_fraction(vectors: np.ndarray) -> float:
    """The share of the columns of ``vectors [N, D]`` (N >= 2) whose standard deviation over the rows is at most
    ``DEAD_STD``."""
    vectors = _matrix(vectors, "vectors")
    if len(vectors) < 2:
        raise ValueError(f"dead_fraction needs at least 2 rows to see a feature vary, got {len(vectors)}")
    return float(np.mean(vectors.astype(np.float64).std(axis=0) <= DEAD_STD))


def probe_scores(vectors: np.ndarray, emotions: Sequence[int], speakers: Sequence[str], *,
                 folds: int = PROBE_FOLDS, seed: int = 0) -> dict[str, float | None]:
    """``{"emotion_probe_uar", "speaker_probe_accuracy"}`` of ``vectors [N, D]`` (module docstring), in [0, 1]. A
    probe that cannot be cross-validated (fewer than 2 speakers; for the speaker probe, a speaker with a single
    utterance) is None."""
    vectors = _matrix(vectors, "vectors")
    emotions, speakers = np.asarray(emotions), np.asarray(speakers)
    if emotions.shape != (len(vectors),) or speakers.shape != (len(vectors),):
        raise ValueError(f"emotions and speakers must have one entry per row of vectors ({len(vectors)}), got "
                         f"{emotions.shape} and {speakers.shape}")
    names, per_speaker = np.unique(speakers, return_counts=True)
    emotion = speaker = None
    if len(names) >= 2 and len(np.unique(emotions)) >= 2:
        splits = GroupKFold(n_splits=min(folds, len(names)))
        predicted = cross_val_predict(_probe(seed), vectors, emotions, groups=speakers, cv=splits)
        emotion = float(balanced_accuracy_score(emotions, predicted))
    if len(names) >= 2 and per_speaker.min() >= 2:
        splits = StratifiedKFold(n_splits=min(folds, int(per_speaker.min())), shuffle=True, random_state=seed)
        speaker = float(accuracy_score(speakers, cross_val_predict(_probe(seed), vectors, speakers, cv=splits)))
    return {"emotion_probe_uar": emotion, "speaker_probe_accuracy": speaker}


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


def _probe(seed: int):
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))


def _matrix(vectors: object, name: str) -> np.ndarray:
    array = np.asarray(vectors)
    if array.ndim != 2 or 0 in array.shape or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{name} must be a non-empty numeric [N, D] matrix, got shape {array.shape} and dtype "
                         f"{array.dtype}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return array
