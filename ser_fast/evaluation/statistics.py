"""Confidence intervals and significance tests for comparing speech-emotion-recognition systems.

A test set holds N items (utterances; cross-corpus, (fold, utterance) pairs), each with a class label in 0..K-1 and a
speaker. A system's predictions are an int array ``[S, N]``: one row per training seed, each row the pooled
predictions of all folds of that seed. Metrics ("uar", "wa", "macro_f1") are reported in percent.

Utterances of one speaker are not independent (a model that fails on a speaker fails on most of their utterances), so
an utterance-level bootstrap gives intervals that are too narrow. The intervals here come from a two-stage (speaker,
then utterance) bootstrap, in which the items that test one utterance (every fold's model on a cross-corpus
utterance) are drawn together when their ``utterances`` ids are given; the same resample weights are applied to every
seed, and, when two systems are compared, to both systems, so the interval describes the test-set sampling of the
seed-mean metric (or of the paired difference). Every resample is a weight vector over the items, so all resamples
of all seeds are scored by one matrix product. The p-value of a comparison comes from
:func:`scipy.stats.permutation_test` (paired: a's and b's predictions of the same item are swapped, the same swap for
every seed). The swaps are per item even where ``utterances`` groups items, so there the p-value is smaller than a
clustered test's; the interval, which the reports use to call a difference, is clustered.

:func:`summarize_values` and :func:`compare_values` do the same for a continuous per-utterance score (speech-enhancement
metrics: SSNR in dB, PESQ, STOI), ``float [S, N]`` in the caller's units, whose system value is the mean over the
utterances; NaN marks an utterance whose score could not be computed and is left out of the means.
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import permutation_test

METRICS = ("uar", "wa", "macro_f1")

CI_METHOD = ("95% percentile interval over a two-stage speaker bootstrap (speakers drawn with replacement, then each "
             "drawn speaker's utterances with replacement), the same resamples for every seed and both systems")
TEST_METHOD = ("two-sided paired permutation test (scipy.stats.permutation_test, permutation_type='samples'): the two "
               "systems' predictions of an item are swapped, the same swap for every seed; statistic = the seed-mean "
               "difference")

# Random draws (resamples x items) made at once by the bootstrap, and prediction entries (permutations x seeds x items)
# handed at once to the permutation statistic: large enough to be vectorised, small enough to stay within ~100 MB.
_MAX_DRAWS = 1 << 22
_MAX_PERMUTED_ENTRIES = 1 << 22
# scipy 1.15 renamed permutation_test's random_state to rng; the project allows scipy >= 1.10.
_RNG_KEYWORD = "rng" if "rng" in inspect.signature(permutation_test).parameters else "random_state"


def _check_count(value, name: str, minimum: int) -> int:
    """A positive count (resamples, permutations, classes); bools and floats are mistakes, not counts."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def _check_seed(seed) -> int:
    """Seeds are non-negative ints, so that a report can state them and a rerun reproduces every number."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be a non-negative int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed}")
    return int(seed)


def _check_metric(metric) -> str:
    if not isinstance(metric, str):
        raise TypeError(f"metric must be a str, one of {METRICS}, got {type(metric).__name__}")
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
    return metric


def _check_classes(values: ArrayLike, name: str, num_classes: int) -> np.ndarray:
    """Class indices as int64; floats and bools are rejected rather than truncated, since they mean a caller passed
    scores or masks instead of predicted classes."""
    array = np.asarray(values)
    if array.size == 0:
        raise ValueError(f"{name} is empty; expected at least one item")
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name} must hold integer class indices, got dtype {array.dtype}")
    if array.min() < 0 or array.max() >= num_classes:
        raise ValueError(f"{name} holds class indices outside 0..{num_classes - 1} "
                         f"(found {array.min()}..{array.max()}); expected num_classes={num_classes} to cover them")
    return array.astype(np.int64)


def _check_labels(labels: ArrayLike, num_classes: int) -> np.ndarray:
    labels = _check_classes(labels, "labels", num_classes)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D [N], got shape {labels.shape}")
    return labels


def _check_predictions(predictions: ArrayLike, name: str, num_items: int, num_classes: int) -> np.ndarray:
    """Predictions as given, [N] or [S, N], checked against the N labels."""
    predictions = _check_classes(predictions, name, num_classes)
    if predictions.ndim not in (1, 2):
        raise ValueError(f"{name} must be [N] or [S, N] (seeds x items), got shape {predictions.shape}")
    if predictions.shape[-1] != num_items:
        raise ValueError(f"{name} has {predictions.shape[-1]} items but there are {num_items} labels; expected "
                         "predictions of the same items, in the same order")
    return predictions


def _seed_rows(predictions: np.ndarray) -> np.ndarray:
    return predictions[None] if predictions.ndim == 1 else predictions


def _speaker_codes(speakers: ArrayLike) -> tuple[np.ndarray, int]:
    """Speaker ids as codes 0..G-1. A speaker bootstrap of one speaker would only resample utterances and hide the
    between-speaker variance, so at least two speakers are required."""
    speakers = np.asarray(speakers, dtype=object)
    if speakers.ndim != 1 or speakers.size == 0:
        raise ValueError(f"speakers must be a non-empty 1-D sequence of speaker ids, got shape {speakers.shape}")
    if not all(isinstance(s, str) for s in speakers):
        kinds = sorted({type(s).__name__ for s in speakers if not isinstance(s, str)})
        raise TypeError(f"speakers must be str ids, got {', '.join(kinds)}")
    names, codes = np.unique(speakers.astype(str), return_inverse=True)
    if names.size < 2:
        raise ValueError(f"a speaker bootstrap needs at least 2 distinct speakers, got {names.size}")
    return codes.reshape(-1).astype(np.int64), int(names.size)


def _check_weights(weights: ArrayLike, num_items: int) -> np.ndarray:
    weights = np.asarray(weights)
    if weights.ndim != 2 or weights.shape[1] != num_items:
        raise ValueError(f"weights must be [R, N] with N={num_items} items, got shape {weights.shape}")
    if not (np.issubdtype(weights.dtype, np.floating) or np.issubdtype(weights.dtype, np.integer)):
        raise TypeError(f"weights must be real numbers, got dtype {weights.dtype}")
    weights = weights.astype(np.float64)
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise ValueError("weights must be finite and non-negative (counts of how often an item was drawn)")
    return weights


def _check_confusions(confusions: ArrayLike) -> np.ndarray:
    confusions = np.asarray(confusions)
    if confusions.ndim < 2 or confusions.shape[-1] != confusions.shape[-2]:
        raise ValueError(f"confusions must be [..., K, K], got shape {confusions.shape}")
    if not (np.issubdtype(confusions.dtype, np.floating) or np.issubdtype(confusions.dtype, np.integer)):
        raise TypeError(f"confusions must be real numbers, got dtype {confusions.dtype}")
    confusions = confusions.astype(np.float64)
    if not np.all(np.isfinite(confusions)) or np.any(confusions < 0):
        raise ValueError("confusions must be finite and non-negative (weighted counts)")
    return confusions


def _as_generator(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        return np.random.default_rng(_check_seed(rng))
    raise TypeError(f"rng must be a numpy Generator or a non-negative int seed, got {type(rng).__name__}")


def _streams(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Independent generators for the bootstrap and the permutations, so that summarize_system and compare_systems
    with one seed draw the same bootstrap resamples."""
    bootstrap, permutation = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(bootstrap), np.random.default_rng(permutation)


def speaker_bootstrap_weights(speakers: ArrayLike, n_resamples: int, rng: np.random.Generator | int,
                              utterances: ArrayLike | None = None) -> np.ndarray:
    """Item weights ``[R, N]`` (float counts) of a two-stage speaker bootstrap.

    Each resample draws as many speakers as there are, with replacement, then for each drawn speaker as many of that
    speaker's utterances as they have, with replacement; an item's weight is how often it was drawn. Resampling the
    speakers carries the between-speaker variance that dominates emotion-recognition test sets; resampling the
    utterances as well keeps speakers with few utterances from being treated as exactly known. ``rng`` is a Generator
    or an int seed.

    ``utterances`` (optional, one id per item) names the utterance each item is a test of, where one utterance is
    tested more than once: across corpora by every fold's model, or under several noise types. The items of one
    utterance are then drawn together, as one unit of the second stage, since they share the utterance's difficulty.
    """
    if utterances is not None:
        return _utterance_bootstrap_weights(speakers, n_resamples, rng, utterances)
    codes, num_speakers = _speaker_codes(speakers)
    n_resamples = _check_count(n_resamples, "n_resamples", 1)
    rng = _as_generator(rng)
    order = np.argsort(codes, kind="stable")  # items grouped by speaker
    sizes = np.bincount(codes, minlength=num_speakers)
    starts = np.cumsum(sizes) - sizes
    block = max(1, _MAX_DRAWS // codes.size)
    weights = np.empty((n_resamples, codes.size))
    for first in range(0, n_resamples, block):
        count = min(block, n_resamples - first)
        weights[first:first + count] = _two_stage_block(count, order, sizes, starts, rng)
    return weights


def _utterance_bootstrap_weights(speakers: ArrayLike, n_resamples: int, rng: np.random.Generator | int,
                                 utterances: ArrayLike) -> np.ndarray:
    """The two-stage bootstrap over utterances, each utterance's weight given to every item that tests it."""
    codes, _ = _speaker_codes(speakers)
    utterances = np.asarray(utterances, dtype=object)
    if utterances.ndim != 1 or utterances.size != codes.size:
        raise ValueError(f"utterances must name one utterance per item ({codes.size}), got shape {utterances.shape}")
    if not all(isinstance(u, str) for u in utterances):
        kinds = sorted({type(u).__name__ for u in utterances if not isinstance(u, str)})
        raise TypeError(f"utterances must be str ids, got {', '.join(kinds)}")
    _, first, unit = np.unique(utterances.astype(str), return_index=True, return_inverse=True)
    unit = unit.reshape(-1)
    mixed = np.flatnonzero(codes != codes[first][unit])
    if mixed.size:
        raise ValueError(f"utterance {utterances[mixed[0]]!r} is given more than one speaker; expected each "
                         "utterance's items to share its speaker")
    speakers = np.asarray(speakers, dtype=object)
    return speaker_bootstrap_weights(speakers[first], n_resamples, rng)[:, unit]


def _two_stage_block(n_resamples: int, order: np.ndarray, sizes: np.ndarray, starts: np.ndarray,
                     rng: np.random.Generator) -> np.ndarray:
    """``n_resamples`` rows of bootstrap weights, drawn without a Python loop over resamples or speakers: every
    utterance draw of every drawn speaker of every resample is one entry of flat arrays, counted by one bincount."""
    num_speakers, num_items = sizes.size, order.size
    drawn = rng.integers(0, num_speakers, size=(n_resamples, num_speakers)).ravel()  # stage 1: speakers
    per_speaker = sizes[drawn]  # stage 2 draws sizes[g] utterances for each drawn speaker g
    speaker_of_draw = np.repeat(drawn, per_speaker)
    resample_of_draw = np.repeat(np.repeat(np.arange(n_resamples), num_speakers), per_speaker)
    item = order[starts[speaker_of_draw] + rng.integers(0, sizes[speaker_of_draw])]
    counts = np.bincount(resample_of_draw * num_items + item, minlength=n_resamples * num_items)
    return counts.reshape(n_resamples, num_items).astype(np.float64)


def weighted_confusions(labels: ArrayLike, predictions: ArrayLike, weights: ArrayLike, num_classes: int) -> np.ndarray:
    """Weighted confusion matrices, ``confusion[..., i, j]`` = total weight of items of class i predicted as j.

    ``predictions`` [N] gives ``[R, K, K]``; ``predictions`` [S, N] gives ``[S, R, K, K]`` (seeds first). One matrix
    product of the weights ``[R, N]`` with a one-hot of ``label * K + prediction`` scores every resample of every seed
    at once, which is what makes thousands of bootstrap resamples cheap.
    """
    num_classes = _check_count(num_classes, "num_classes", 2)
    labels = _check_labels(labels, num_classes)
    predictions = _check_predictions(predictions, "predictions", labels.size, num_classes)
    weights = _check_weights(weights, labels.size)
    one_hot = np.eye(num_classes * num_classes)[labels * num_classes + predictions]  # [(S,) N, K*K]
    counts = np.matmul(weights, one_hot)  # [(S,) R, K*K]
    return counts.reshape(*counts.shape[:-1], num_classes, num_classes)


def metric_from_confusions(confusions: ArrayLike, metric: str) -> np.ndarray:
    """``metric`` in percent for every confusion matrix of ``confusions`` [..., K, K], shape [...].

    UAR is the mean recall over the classes with support (sklearn's balanced accuracy), so a class that a resample
    happens to leave out does not count as recall 0; macro-F1 is the mean F1 over the classes present in the labels or
    the predictions (sklearn's macro F1 over those classes). A confusion matrix of total weight 0 gives NaN.
    """
    metric = _check_metric(metric)
    confusions = _check_confusions(confusions)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 100.0 * _METRIC_FUNCTIONS[metric](confusions)


def _uar(confusions: np.ndarray) -> np.ndarray:
    hits = np.diagonal(confusions, axis1=-2, axis2=-1)
    support = confusions.sum(axis=-1)
    has_support = support > 0
    recall = np.divide(hits, support, out=np.zeros_like(hits), where=has_support)
    return recall.sum(axis=-1) / has_support.sum(axis=-1)


def _wa(confusions: np.ndarray) -> np.ndarray:
    return np.trace(confusions, axis1=-2, axis2=-1) / confusions.sum(axis=(-2, -1))


def _macro_f1(confusions: np.ndarray) -> np.ndarray:
    hits = np.diagonal(confusions, axis1=-2, axis2=-1)
    denominator = confusions.sum(axis=-1) + confusions.sum(axis=-2)
    present = denominator > 0
    f1 = np.divide(2 * hits, denominator, out=np.zeros_like(hits), where=present)
    return f1.sum(axis=-1) / present.sum(axis=-1)


_METRIC_FUNCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {"uar": _uar, "wa": _wa, "macro_f1": _macro_f1}


def _unweighted_metric(labels: np.ndarray, predictions: np.ndarray, metric: str, num_classes: int) -> np.ndarray:
    """The metric of every row of ``predictions`` [..., N] (percent, shape [...]); one bincount for all rows, so the
    permutation test can score thousands of permuted prediction sets per call."""
    rows = predictions.reshape(-1, labels.size)
    cells = num_classes * num_classes
    codes = labels * num_classes + rows + cells * np.arange(rows.shape[0])[:, None]
    counts = np.bincount(codes.ravel(), minlength=rows.shape[0] * cells)
    confusions = counts.reshape(*predictions.shape[:-1], num_classes, num_classes).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 100.0 * _METRIC_FUNCTIONS[metric](confusions)


def _percentile_interval(values: np.ndarray) -> list[float]:
    low, high = np.percentile(values, [2.5, 97.5])
    return [float(low), float(high)]


def _bootstrap_seed_means(labels: np.ndarray, predictions: np.ndarray, weights: np.ndarray, metric: str,
                          num_classes: int) -> np.ndarray:
    """The seed-mean metric of each bootstrap resample, [R]; every seed is scored on the same resample."""
    confusions = weighted_confusions(labels, predictions, weights, num_classes)  # [S, R, K, K]
    return metric_from_confusions(confusions, metric).mean(axis=0)


def summarize_system(labels: ArrayLike, predictions: ArrayLike, speakers: ArrayLike, metric: str, num_classes: int,
                     *, n_resamples: int = 2000, seed: int = 0, utterances: ArrayLike | None = None) -> dict:
    """One system's ``metric`` over seeds, with a speaker-bootstrap 95% interval of the seed mean.

    ``mean`` and ``std`` (sample std, ddof=1; 0.0 for one seed) describe training-seed variation; ``ci95`` describes
    test-set sampling of the seed mean (see :data:`CI_METHOD`). Both are in percent. ``predictions`` is [N] or [S, N].
    ``utterances``: see :func:`speaker_bootstrap_weights`.
    """
    num_classes = _check_count(num_classes, "num_classes", 2)
    labels = _check_labels(labels, num_classes)
    predictions = _seed_rows(_check_predictions(predictions, "predictions", labels.size, num_classes))
    metric = _check_metric(metric)
    codes, num_speakers = _speaker_codes(speakers)
    if codes.size != labels.size:
        raise ValueError(f"speakers has {codes.size} items but there are {labels.size} labels; expected one speaker "
                         "per item")
    n_resamples = _check_count(n_resamples, "n_resamples", 1)
    bootstrap_rng, _ = _streams(_check_seed(seed))

    per_seed = _unweighted_metric(labels, predictions, metric, num_classes)
    weights = speaker_bootstrap_weights(speakers, n_resamples, bootstrap_rng, utterances)
    resampled = _bootstrap_seed_means(labels, predictions, weights, metric, num_classes)
    return {
        "mean": float(per_seed.mean()),
        "std": float(per_seed.std(ddof=1)) if per_seed.size > 1 else 0.0,
        "ci95": _percentile_interval(resampled),
        "seeds": int(predictions.shape[0]),
        "utterances": int(labels.size),
        "speakers": num_speakers,
    }


def compare_systems(labels: ArrayLike, predictions_a: ArrayLike, predictions_b: ArrayLike, speakers: ArrayLike,
                    metric: str, num_classes: int, *, n_resamples: int = 2000, n_permutations: int = 1999,
                    seed: int = 0, utterances: ArrayLike | None = None) -> dict:
    """System a against system b on the same items: ``diff`` = mean over seeds of metric(a) - metric(b) (percent
    points), its paired speaker-bootstrap 95% interval ``ci95`` and a paired permutation test's two-sided ``p``.

    Pairing (the same bootstrap weights for both systems, swaps of one item's two predictions in the test) removes the
    item difficulty that both systems share, which is most of the variance when two systems are close. a and b need
    the same number of seeds S; seed s of a is scored against the same items as seed s of b. ``utterances``: see
    :func:`speaker_bootstrap_weights`.
    """
    num_classes = _check_count(num_classes, "num_classes", 2)
    labels = _check_labels(labels, num_classes)
    predictions_a = _seed_rows(_check_predictions(predictions_a, "predictions_a", labels.size, num_classes))
    predictions_b = _seed_rows(_check_predictions(predictions_b, "predictions_b", labels.size, num_classes))
    if predictions_a.shape != predictions_b.shape:
        raise ValueError(f"predictions_a has {predictions_a.shape[0]} seeds but predictions_b has "
                         f"{predictions_b.shape[0]}; expected both systems trained with the same number of seeds")
    metric = _check_metric(metric)
    codes, _ = _speaker_codes(speakers)
    if codes.size != labels.size:
        raise ValueError(f"speakers has {codes.size} items but there are {labels.size} labels; expected one speaker "
                         "per item")
    n_resamples = _check_count(n_resamples, "n_resamples", 1)
    n_permutations = _check_count(n_permutations, "n_permutations", 1)
    bootstrap_rng, permutation_rng = _streams(_check_seed(seed))

    per_seed = (_unweighted_metric(labels, predictions_a, metric, num_classes)
                - _unweighted_metric(labels, predictions_b, metric, num_classes))
    weights = speaker_bootstrap_weights(speakers, n_resamples, bootstrap_rng, utterances)
    resampled = (_bootstrap_seed_means(labels, predictions_a, weights, metric, num_classes)
                 - _bootstrap_seed_means(labels, predictions_b, weights, metric, num_classes))
    p, permutations = _paired_permutation_p(labels, predictions_a, predictions_b, metric, num_classes, n_permutations,
                                            permutation_rng)
    return {
        "diff": float(per_seed.mean()),
        "ci95": _percentile_interval(resampled),
        "p": p,
        "test": (f"paired permutation test (scipy), {permutations}; "
                 f"CI: paired two-stage speaker bootstrap, {n_resamples} resamples"),
        "seeds": int(predictions_a.shape[0]),
        "utterances": int(labels.size),
    }


def _paired_permutation_p(labels: np.ndarray, predictions_a: np.ndarray, predictions_b: np.ndarray, metric: str,
                          num_classes: int, n_permutations: int, rng: np.random.Generator) -> tuple[float, str]:
    """Two-sided p of the seed-mean difference under exchangeability of a's and b's prediction of each item, and a
    phrase saying how many permutations scipy ran (it enumerates all 2^N when that is no more than asked for)."""

    def seed_mean_difference(a: np.ndarray, b: np.ndarray, axis: int) -> np.ndarray:
        a, b = np.moveaxis(a, axis, -1), np.moveaxis(b, axis, -1)  # [..., S, N]
        return (_unweighted_metric(labels, a, metric, num_classes).mean(axis=-1)
                - _unweighted_metric(labels, b, metric, num_classes).mean(axis=-1))

    batch = max(1, _MAX_PERMUTED_ENTRIES // predictions_a.size)
    result = permutation_test((predictions_a, predictions_b), seed_mean_difference, permutation_type="samples",
                              vectorized=True, n_resamples=n_permutations, batch=batch, alternative="two-sided",
                              axis=-1, **{_RNG_KEYWORD: rng})
    return float(result.pvalue), _permutation_count(result, labels.size, n_permutations)


def _permutation_count(result, num_items: int, n_permutations: int) -> str:
    """How many permutations scipy ran: all 2^N paired swaps when that is no more than asked for, else a sample."""
    count = int(np.size(result.null_distribution))
    exact = 2 ** num_items <= n_permutations
    return f"{'all ' if exact else ''}{count}{' (exact)' if exact else ''} permutations"


def _check_values(values: ArrayLike, name: str) -> np.ndarray:
    """Scores as float64, [N] or [S, N]; NaN marks a score that could not be computed, inf is a mistake."""
    array = np.asarray(values)
    if array.size == 0:
        raise ValueError(f"{name} is empty; expected at least one item")
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise TypeError(f"{name} must hold real-valued scores, got dtype {array.dtype}")
    if array.ndim not in (1, 2):
        raise ValueError(f"{name} must be [N] or [S, N] (seeds x items), got shape {array.shape}")
    array = array.astype(np.float64)
    if np.any(np.isinf(array)):
        raise ValueError(f"{name} holds {int(np.isinf(array).sum())} infinite values; expected finite scores, or NaN "
                         "for an utterance whose score could not be computed")
    return array


def _check_value_speakers(speakers: ArrayLike, num_items: int, name: str) -> None:
    codes, _ = _speaker_codes(speakers)
    if codes.size != num_items:
        raise ValueError(f"speakers has {codes.size} items but {name} has {num_items}; expected one speaker per item")


def _valued_items(valued: np.ndarray, name: str) -> np.ndarray:
    """The items [N] with a value in at least one seed; every seed needs at least one, or its mean is undefined."""
    empty = np.flatnonzero(~valued.any(axis=-1))
    if empty.size:
        raise ValueError(f"{name} is NaN for every item in seed(s) {empty.tolist()}; expected at least one utterance "
                         "with a score in every seed")
    return valued.any(axis=0)


def _kept(utterances: ArrayLike | None, keep: np.ndarray, num_items: int) -> np.ndarray | None:
    """The utterance ids of the items kept (None stays None)."""
    if utterances is None:
        return None
    utterances = np.asarray(utterances, dtype=object)
    if utterances.shape != (num_items,):
        raise ValueError(f"utterances must name one utterance per item ({num_items}), got shape {utterances.shape}")
    return utterances[keep]


def weighted_means(values: ArrayLike, weights: ArrayLike) -> np.ndarray:
    """Weighted means of ``values`` [N] or [S, N] under every weight row of ``weights`` [R, N]: [R] or [S, R].

    NaN values weigh 0; a row whose items with a value all weigh 0 gives NaN. Two matrix products (weighted sums and
    weighted counts of the items with a value) score every resample of every seed at once.
    """
    values = _check_values(values, "values")
    weights = _check_weights(weights, values.shape[-1])
    valued = ~np.isnan(values)
    totals = np.matmul(np.where(valued, values, 0.0), weights.T)  # [(S,) R]
    counts = np.matmul(valued.astype(np.float64), weights.T)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, totals / counts, np.nan)


def _bootstrap_interval(resampled: np.ndarray) -> list[float]:
    """The percentile interval over the resamples where the statistic is defined: a resample can, rarely, draw only
    utterances without a score for some seed, and is then left out."""
    defined = resampled[~np.isnan(resampled)]
    if defined.size == 0:
        raise ValueError("no bootstrap resample drew an utterance with a score in every seed; too few scores for an "
                         "interval")
    return _percentile_interval(defined)


def summarize_values(values: ArrayLike, speakers: ArrayLike, *, n_resamples: int = 2000, seed: int = 0,
                     utterances: ArrayLike | None = None) -> dict:
    """One system's mean per-utterance score over seeds, with a speaker-bootstrap 95% interval of the seed mean.

    ``values`` is [N] or [S, N], in the caller's units (dB, PESQ MOS, STOI). Each seed's value is the mean over the
    utterances where it is not NaN; ``mean`` and ``std`` (ddof=1; 0.0 for one seed) are over those seed values, and
    ``ci95`` is the percentile interval of the seed mean over the two-stage speaker bootstrap (see :data:`CI_METHOD`).
    An utterance NaN in every seed is left out entirely, as if not given: ``utterances`` and ``speakers`` count the
    utterances and speakers with a score.
    """
    values = _seed_rows(_check_values(values, "values"))
    _check_value_speakers(speakers, values.shape[-1], "values")
    n_resamples = _check_count(n_resamples, "n_resamples", 1)
    bootstrap_rng, _ = _streams(_check_seed(seed))

    keep = _valued_items(~np.isnan(values), "values")
    values, speakers = values[:, keep], np.asarray(speakers, dtype=object)[keep]
    utterances = _kept(utterances, keep, keep.size)
    _, num_speakers = _speaker_codes(speakers)
    per_seed = np.nanmean(values, axis=-1)
    weights = speaker_bootstrap_weights(speakers, n_resamples, bootstrap_rng, utterances)
    resampled = weighted_means(values, weights).mean(axis=0)
    return {
        "mean": float(per_seed.mean()),
        "std": float(per_seed.std(ddof=1)) if per_seed.size > 1 else 0.0,
        "ci95": _bootstrap_interval(resampled),
        "seeds": int(values.shape[0]),
        "utterances": int(values.shape[1]),
        "speakers": num_speakers,
    }


def compare_values(values_a: ArrayLike, values_b: ArrayLike, speakers: ArrayLike, *, n_resamples: int = 2000,
                   n_permutations: int = 1999, seed: int = 0, utterances: ArrayLike | None = None) -> dict:
    """System a against system b by a per-utterance score: ``diff`` = mean over seeds of mean(a) - mean(b) (the
    caller's units), its paired speaker-bootstrap 95% interval ``ci95`` and a paired permutation test's two-sided ``p``;
    ``relative_pct`` = 100 · diff / |mean(b)| with its interval ``relative_ci95`` over the same resamples (the papers
    report SSNR gains relative to the baseline's; None where b's mean is 0).

    An item NaN in either system (in a seed) is left out of both systems' means (of that seed), so both are taken over
    the same utterances; an item left out in every seed is left out entirely and not counted in ``utterances``. The
    bootstrap weights are the same for a and b; the permutation test swaps a's and b's score of an item, the same swap
    for every seed. a and b need the same shape, [N] or [S, N].
    """
    values_a = _seed_rows(_check_values(values_a, "values_a"))
    values_b = _seed_rows(_check_values(values_b, "values_b"))
    if values_a.shape != values_b.shape:
        raise ValueError(f"values_a has shape {values_a.shape} but values_b has {values_b.shape}; expected scores of "
                         "the same items, in the same order, from the same number of seeds")
    _check_value_speakers(speakers, values_a.shape[-1], "values_a")
    n_resamples = _check_count(n_resamples, "n_resamples", 1)
    n_permutations = _check_count(n_permutations, "n_permutations", 1)
    bootstrap_rng, permutation_rng = _streams(_check_seed(seed))

    valued = ~np.isnan(values_a) & ~np.isnan(values_b)
    keep = _valued_items(valued, "values_a or values_b")
    valued, speakers = valued[:, keep], np.asarray(speakers, dtype=object)[keep]
    utterances = _kept(utterances, keep, keep.size)
    # Zero both systems' scores of a left-out item: they then add nothing to the sums whether swapped or not.
    values_a = np.where(valued, values_a[:, keep], 0.0)
    values_b = np.where(valued, values_b[:, keep], 0.0)
    counts = valued.sum(axis=-1)  # [S]

    def seed_mean_difference(a: np.ndarray, b: np.ndarray, axis: int) -> np.ndarray:
        a, b = np.moveaxis(a, axis, -1), np.moveaxis(b, axis, -1)  # [..., S, N]
        return ((a - b).sum(axis=-1) / counts).mean(axis=-1)

    weights = speaker_bootstrap_weights(speakers, n_resamples, bootstrap_rng, utterances)
    resampled_a = weighted_means(np.where(valued, values_a, np.nan), weights).mean(axis=0)
    resampled_b = weighted_means(np.where(valued, values_b, np.nan), weights).mean(axis=0)
    resampled = resampled_a - resampled_b
    mean_b = float((values_b.sum(axis=-1) / counts).mean())
    with np.errstate(invalid="ignore", divide="ignore"):
        relative = 100.0 * resampled / np.abs(resampled_b)
    batch = max(1, _MAX_PERMUTED_ENTRIES // values_a.size)
    result = permutation_test((values_a, values_b), seed_mean_difference, permutation_type="samples",
                              vectorized=True, n_resamples=n_permutations, batch=batch, alternative="two-sided",
                              axis=-1, **{_RNG_KEYWORD: permutation_rng})
    return {
        "diff": float(seed_mean_difference(values_a, values_b, axis=-1)),
        "ci95": _bootstrap_interval(resampled),
        "relative_pct": 100.0 * float(seed_mean_difference(values_a, values_b, axis=-1)) / abs(mean_b)
        if mean_b != 0 else None,
        "relative_ci95": _percentile_interval(relative[np.isfinite(relative)]) if np.isfinite(relative).any() else None,
        "p": float(result.pvalue),
        "test": (f"paired permutation test (scipy), {_permutation_count(result, values_a.shape[-1], n_permutations)}; "
                 f"CI: paired two-stage speaker bootstrap, {n_resamples} resamples"),
        "seeds": int(values_a.shape[0]),
        "utterances": int(values_a.shape[-1]),
    }


def distinguishable(comparison: dict) -> bool:
    """Whether a comparison's 95 % CI (``ci95``) excludes 0: the only differences a report calls findings."""
    lo, hi = comparison["ci95"]
    return lo > 0 or hi < 0
