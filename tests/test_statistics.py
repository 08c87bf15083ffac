"""The comparison statistics: metrics equal scikit-learn's, the speaker bootstrap has its two-stage structure, known
differences between systems are recovered with intervals that cover the truth, continuous per-utterance scores (with
NaN for a score that could not be computed) get the same treatment, and bad input is explained."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from helpers import assert_close
from scipy import special, stats
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from ser_fast.evaluation.statistics import (
    CI_METHOD,
    METRICS,
    TEST_METHOD,
    compare_systems,
    compare_values,
    metric_from_confusions,
    speaker_bootstrap_weights,
    summarize_system,
    summarize_values,
    weighted_confusions,
    weighted_means,
)


def _speakers(sizes) -> np.ndarray:
    """Speaker ids for items grouped in runs of ``sizes``, then shuffled so that no code relies on grouping."""
    ids = np.repeat([f"spk{g:02d}" for g in range(len(sizes))], sizes)
    return np.random.default_rng(len(sizes)).permutation(ids)


def _dataset(seed: int, n: int, k: int, s: int, n_speakers: int, hit_rate: float = 0.6):
    """Labels [n], predictions [s, n] (right with ``hit_rate``, else uniform) and speakers of a random test set."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    predictions = np.where(rng.random((s, n)) < hit_rate, labels, rng.integers(0, k, (s, n)))
    speakers = np.array([f"spk{g}" for g in rng.integers(0, n_speakers, n)])
    speakers[:n_speakers] = [f"spk{g}" for g in range(n_speakers)]  # every speaker present
    return labels, predictions, speakers


def _sklearn(metric: str, labels, predictions, sample_weight=None) -> float:
    """The reference value in percent; macro-F1 over the classes present in labels or predictions (with weight)."""
    weight = np.ones(len(labels)) if sample_weight is None else sample_weight
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns about classes absent from the labels
        if metric == "uar":
            return 100 * balanced_accuracy_score(labels, predictions, sample_weight=sample_weight)
        if metric == "wa":
            return 100 * accuracy_score(labels, predictions, sample_weight=sample_weight)
        present = np.union1d(labels[weight > 0], predictions[weight > 0])
        return 100 * f1_score(labels, predictions, labels=present, average="macro", sample_weight=sample_weight,
                              zero_division=0.0)



# (num_classes, classes that occur in the labels, classes that occur in the predictions)
CLASS_CASES = {
    "k3-class0-never-predicted": (3, (0, 1, 2), (1, 2)),
    "k3-class2-no-support": (3, (0, 1), (0, 1, 2)),
    "k4-no-support-and-never-predicted": (4, (0, 1, 2), (1, 2, 3)),
    "k4-class3-absent-everywhere": (4, (0, 1, 2), (0, 1, 2)),
    "k4-all-classes": (4, (0, 1, 2, 3), (0, 1, 2, 3)),
}


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("case", CLASS_CASES, ids=str)
@pytest.mark.parametrize("seeds", [1, 3], ids=lambda s: f"S{s}")
def test_unit_weight_metrics_equal_sklearn(case, metric, seeds):
    k, label_classes, prediction_classes = CLASS_CASES[case]
    rng = np.random.default_rng(7)
    labels = rng.choice(label_classes, 37)
    predictions = np.where(rng.random((seeds, 37)) < 0.5, labels, rng.choice(prediction_classes, (seeds, 37)))
    predictions = np.where(np.isin(predictions, prediction_classes), predictions, prediction_classes[0])
    confusions = weighted_confusions(labels, predictions, np.ones((1, 37)), k)
    assert confusions.shape == (seeds, 1, k, k)
    expected = [[_sklearn(metric, labels, row)] for row in predictions]
    assert_close(metric_from_confusions(confusions, metric), expected, atol=1e-10, msg=f"{metric} {case}")


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("k", [3, 4], ids=lambda k: f"K{k}")
def test_bootstrap_weighted_metrics_equal_sklearn_sample_weight(metric, k):
    labels, predictions, speakers = _dataset(3, 37, k, 1, 5, hit_rate=0.4)
    weights = speaker_bootstrap_weights(speakers, 25, 11)
    values = metric_from_confusions(weighted_confusions(labels, predictions[0], weights, k), metric)
    expected = [_sklearn(metric, labels, predictions[0], sample_weight=w) for w in weights]
    assert_close(values, expected, atol=1e-10, msg=f"weighted {metric}")


@pytest.mark.parametrize("shape", [(37,), (3, 37)], ids=["N", "SxN"])
def test_weighted_confusions_match_a_loop(shape):
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 4, 37)
    predictions = rng.integers(0, 4, shape)
    weights = rng.random((6, 37))
    rows = np.atleast_2d(predictions)
    expected = np.zeros((rows.shape[0], 6, 4, 4))
    for s, row in enumerate(rows):
        for r in range(6):
            np.add.at(expected[s, r], (labels, row), weights[r])
    assert_close(weighted_confusions(labels, predictions, weights, 4), expected.reshape(*shape[:-1], 6, 4, 4),
                 atol=1e-12, msg="confusions")


def test_metrics_of_empty_confusions_are_nan_and_batch_dims_kept():
    confusions = np.zeros((2, 3, 4, 4))
    confusions[0, :, 1, 1] = 5.0
    for metric in METRICS:
        values = metric_from_confusions(confusions, metric)
        assert values.shape == (2, 3)
        assert np.all(values[0] == 100.0) and np.all(np.isnan(values[1])), metric



SPEAKER_CASES = {
    "37utt-5spk-uneven": (1, 3, 7, 11, 15),
    "37utt-2spk": (18, 19),
    "41utt-13spk-singletons": (1, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 5, 5),
}


@pytest.mark.parametrize("case", SPEAKER_CASES, ids=str)
def test_bootstrap_weights_are_two_stage(case):
    sizes = np.array(SPEAKER_CASES[case])
    speakers = _speakers(sizes)
    weights = speaker_bootstrap_weights(speakers, 3000, 0)
    assert weights.shape == (3000, sizes.sum()) and weights.dtype == np.float64
    assert np.all(weights >= 0) and np.all(weights == np.round(weights))
    # Per resample, a speaker's items together weigh (times the speaker was drawn) x (its utterances) ...
    names = [f"spk{g:02d}" for g in range(sizes.size)]
    per_speaker = np.stack([weights[:, speakers == name].sum(axis=1) for name in names], axis=1)
    times_drawn = per_speaker / sizes
    assert np.all(times_drawn == np.round(times_drawn))
    # ... and as many speakers are drawn as there are, so the total is the sum of the drawn speakers' sizes.
    assert np.all(times_drawn.sum(axis=1) == sizes.size)
    assert_close(weights.sum(axis=1), times_drawn @ sizes, atol=0, msg="total weight")
    # An undrawn speaker's items all weigh 0; speakers go undrawn at the rate of drawing G of G with replacement.
    undrawn = times_drawn == 0
    for g, name in enumerate(names):
        assert np.all(weights[undrawn[:, g]][:, speakers == name] == 0)
    assert_close(undrawn.mean(), (1 - 1 / sizes.size) ** sizes.size, atol=0.02, msg="undrawn rate")


@pytest.mark.parametrize("case", SPEAKER_CASES, ids=str)
def test_bootstrap_weight_moments_are_those_of_two_stages(case):
    """An item of a speaker with n utterances weighs Binomial(c * n, 1/n) given the speaker's draw count c: mean 1,
    variance (1 - 1/n) + (1 - 1/G). A one-stage (speaker-only) bootstrap would give only the second term."""
    sizes = np.array(SPEAKER_CASES[case])
    speakers = _speakers(sizes)
    weights = speaker_bootstrap_weights(speakers, 4000, np.random.default_rng(1))
    size_of_item = np.array([sizes[int(s[3:])] for s in speakers])
    assert_close(weights.mean(axis=0), np.ones(sizes.sum()), atol=0.1, msg="mean weight")
    expected_variance = (1 - 1 / size_of_item) + (1 - 1 / sizes.size)
    assert_close(weights.var(axis=0).mean(), expected_variance.mean(), atol=0.05, rtol=0.03, msg="variance")


def test_bootstrap_weights_are_reproducible():
    speakers = _speakers((4, 9, 2, 22))
    assert np.array_equal(speaker_bootstrap_weights(speakers, 50, 3), speaker_bootstrap_weights(speakers, 50, 3))
    assert np.array_equal(speaker_bootstrap_weights(speakers, 50, np.random.default_rng(3)),
                          speaker_bootstrap_weights(speakers, 50, np.random.default_rng(3)))
    assert not np.array_equal(speaker_bootstrap_weights(speakers, 50, 3), speaker_bootstrap_weights(speakers, 50, 4))




@pytest.mark.parametrize("copies", [2, 3], ids=lambda c: f"{c}-copies")
def test_the_items_of_one_utterance_are_drawn_together(copies):
    """Items that test one utterance (each fold model's test of a cross-corpus utterance) share every resample's
    weight, and that weight is the utterance's weight in the bootstrap of the utterances alone."""
    speakers = _speakers((4, 9, 2, 13))
    utterances = np.array([f"utt{i:03d}" for i in range(speakers.size)])
    order = np.random.default_rng(5).permutation(copies * speakers.size)  # copies interleaved, not in runs
    item_speakers, item_utterances = np.tile(speakers, copies)[order], np.tile(utterances, copies)[order]
    weights = speaker_bootstrap_weights(item_speakers, 400, 7, item_utterances)
    alone = speaker_bootstrap_weights(speakers, 400, 7)
    unit = np.searchsorted(utterances, item_utterances)
    assert_close(weights, alone[:, unit], atol=0, msg="weights of an utterance's items")


@pytest.mark.parametrize("metric", METRICS)
def test_duplicated_items_of_one_utterance_change_no_interval(metric):
    """Every utterance tested twice with the same prediction (two fold models that agree): drawn together, the
    interval is exactly that of one copy; drawn independently it would be narrower."""
    labels, predictions, speakers = _dataset(11, 60, 4, 2, 6)
    utterances = np.array([f"u{i}" for i in range(labels.size)])
    twice = {"labels": np.tile(labels, 2), "predictions": np.tile(predictions, 2), "speakers": np.tile(speakers, 2)}
    once = summarize_system(labels, predictions, speakers, metric, 4, n_resamples=600, utterances=utterances)
    together = summarize_system(*twice.values(), metric, 4, n_resamples=600, utterances=np.tile(utterances, 2))
    assert_close(together["ci95"], once["ci95"], atol=1e-9, msg="interval of duplicated items drawn together")
    apart = summarize_system(*twice.values(), metric, 4, n_resamples=600)
    assert apart["ci95"][1] - apart["ci95"][0] < once["ci95"][1] - once["ci95"][0]
    b = np.roll(predictions, 1, axis=1)
    paired_once = compare_systems(labels, predictions, b, speakers, metric, 4, n_resamples=600, n_permutations=99,
                                  utterances=utterances)
    paired_twice = compare_systems(twice["labels"], twice["predictions"], np.tile(b, 2), twice["speakers"], metric, 4,
                                   n_resamples=600, n_permutations=99, utterances=np.tile(utterances, 2))
    assert_close(paired_twice["ci95"], paired_once["ci95"], atol=1e-9, msg="paired interval")


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("seeds", [1, 3], ids=lambda s: f"S{s}")
def test_summary_fields(metric, seeds):
    labels, predictions, speakers = _dataset(1, 37, 4, seeds, 6)
    summary = summarize_system(labels, predictions, speakers, metric, 4, n_resamples=500, seed=2)
    per_seed = [_sklearn(metric, labels, row) for row in predictions]
    assert_close(summary["mean"], np.mean(per_seed), atol=1e-10, msg="mean")
    assert_close(summary["std"], np.std(per_seed, ddof=1) if seeds > 1 else 0.0, atol=1e-10, msg="std")
    low, high = summary["ci95"]
    assert low <= summary["mean"] <= high
    assert (summary["seeds"], summary["utterances"], summary["speakers"]) == (seeds, 37, 6)
    one_row = summarize_system(labels, predictions[0], speakers, metric, 4, n_resamples=500, seed=2)
    assert one_row["seeds"] == 1 and one_row["std"] == 0.0


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("k", [3, 4], ids=lambda k: f"K{k}")
@pytest.mark.parametrize("seeds", [1, 3], ids=lambda s: f"S{s}")
def test_identical_systems_differ_by_nothing(metric, k, seeds):
    labels, predictions, speakers = _dataset(4, 37, k, seeds, 5)
    result = compare_systems(labels, predictions, predictions.copy(), speakers, metric, k)
    assert result["diff"] == 0.0 and result["ci95"] == [0.0, 0.0] and result["p"] == 1.0
    assert (result["seeds"], result["utterances"]) == (seeds, 37)
    assert "permutation" in result["test"] and "bootstrap" in result["test"]


def _exact_gain(metric: str, labels: np.ndarray, before: np.ndarray, fixed: np.ndarray) -> float:
    """metric(after) - metric(before) in percent points when the ``fixed`` items of each seed, wrong before, are made
    right: each such item adds 1/N to WA and 1/(support of its class) / (classes with support) to UAR."""
    gains = []
    for row in before:
        newly_right = fixed & (row != labels)
        if metric == "wa":
            gains.append(newly_right.sum() / labels.size)
        else:
            support = np.bincount(labels)
            gains.append(sum(newly_right[labels == c].sum() / support[c] for c in np.flatnonzero(support))
                         / np.count_nonzero(support))
    return 100 * float(np.mean(gains))


@pytest.mark.parametrize("metric", ["wa", "uar"])
@pytest.mark.parametrize("k", [3, 4], ids=lambda k: f"K{k}")
@pytest.mark.parametrize("seeds", [1, 3], ids=lambda s: f"S{s}")
def test_a_known_shift_is_recovered(metric, k, seeds):
    labels, a, speakers = _dataset(8, 301, k, seeds, 23, hit_rate=0.5)
    fixed = np.random.default_rng(9).random(301) < 0.35  # the same items fixed in every seed
    b = np.where(fixed, labels, a)
    expected = _exact_gain(metric, labels, a, fixed)
    result = compare_systems(labels, b, a, speakers, metric, k, n_resamples=1000, n_permutations=999)
    assert_close(result["diff"], expected, atol=1e-9, msg="diff")
    low, high = result["ci95"]
    assert 0 < low <= expected <= high, (low, expected, high)
    assert result["p"] <= 0.01
    flipped = compare_systems(labels, a, b, speakers, metric, k, n_resamples=1000, n_permutations=999)
    assert_close(flipped["diff"], -expected, atol=1e-9, msg="flipped diff")


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("seeds", [1, 3], ids=lambda s: f"S{s}")
def test_a_small_random_perturbation_is_not_a_difference(metric, seeds):
    labels, a, speakers = _dataset(12, 199, 4, seeds, 17)
    rng = np.random.default_rng(13)
    redrawn = np.where(rng.random((seeds, 199)) < 0.6, labels, rng.integers(0, 4, (seeds, 199)))
    b = np.where(rng.random((seeds, 199)) < 0.05, redrawn, a)  # 5% of predictions redrawn from the same process
    result = compare_systems(labels, a, b, speakers, metric, 4, n_resamples=1000, n_permutations=999, seed=1)
    low, high = result["ci95"]
    assert low < 0 < high, (low, high)
    assert low <= result["diff"] <= high and 0.05 < result["p"] <= 1.0


def test_comparison_agrees_with_the_two_summaries():
    labels, a, speakers = _dataset(20, 37, 3, 3, 7)
    _, b, _ = _dataset(21, 37, 3, 3, 7)
    result = compare_systems(labels, a, b, speakers, "uar", 3, n_resamples=300, n_permutations=99)
    mean_a = summarize_system(labels, a, speakers, "uar", 3, n_resamples=300)["mean"]
    mean_b = summarize_system(labels, b, speakers, "uar", 3, n_resamples=300)["mean"]
    assert_close(result["diff"], mean_a - mean_b, atol=1e-10, msg="diff of means")
    assert isinstance(CI_METHOD, str) and isinstance(TEST_METHOD, str) and "permutation" in TEST_METHOD


def test_wa_interval_covers_the_population_value():
    """Simulated corpora whose speakers differ in difficulty (a logit-normal random effect): the 95% interval of the
    seed-mean WA must cover the population accuracy E[p] in at least 85% of 40 corpora."""
    mu, sigma, n_speakers, k = special.logit(0.65), 0.8, 20, 4
    truth = 100 * stats.norm.expect(lambda z: special.expit(mu + sigma * z))
    rng = np.random.default_rng(2024)
    covered = 0
    for trial in range(40):
        sizes = rng.integers(3, 26, n_speakers)
        speaker_rate = special.expit(mu + sigma * rng.standard_normal(n_speakers))
        speakers = np.repeat([f"spk{g}" for g in range(n_speakers)], sizes)
        labels = rng.integers(0, k, sizes.sum())
        right = rng.random((2, sizes.sum())) < np.repeat(speaker_rate, sizes)
        predictions = np.where(right, labels, (labels + rng.integers(1, k, (2, sizes.sum()))) % k)
        low, high = summarize_system(labels, predictions, speakers, "wa", k, n_resamples=1000, seed=trial)["ci95"]
        covered += low <= truth <= high
    assert covered >= 34, f"the 95% interval covered the population WA in {covered} of 40 corpora"



_L, _P, _SPK = _dataset(0, 37, 3, 2, 4)

BAD_INPUTS = {
    "predictions-shorter": (lambda: summarize_system(_L, _P[:, :36], _SPK, "uar", 3), ValueError,
                            "predictions has 36 items but there are 37 labels"),
    "speakers-shorter": (lambda: summarize_system(_L, _P, _SPK[:36], "uar", 3), ValueError,
                         "speakers has 36 items but there are 37 labels"),
    "weights-wrong-length": (lambda: weighted_confusions(_L, _P, np.ones((2, 36)), 3), ValueError,
                             r"weights must be \[R, N\] with N=37"),
    "label-out-of-range": (lambda: summarize_system(np.where(_L == 2, 3, _L), _P, _SPK, "uar", 3), ValueError,
                           r"labels holds class indices outside 0\.\.2"),
    "negative-prediction": (lambda: compare_systems(_L, _P, -_P - 1, _SPK, "wa", 3), ValueError,
                            r"predictions_b holds class indices outside 0\.\.2"),
    "float-predictions": (lambda: summarize_system(_L, _P.astype(float), _SPK, "uar", 3), TypeError,
                          "predictions must hold integer class indices, got dtype float64"),
    "bool-labels": (lambda: weighted_confusions(_L > 0, _P, np.ones((1, 37)), 3), TypeError,
                    "labels must hold integer class indices"),
    "3d-predictions": (lambda: summarize_system(_L, _P[None], _SPK, "uar", 3), ValueError, r"\[N\] or \[S, N\]"),
    "empty-labels": (lambda: summarize_system([], [], [], "uar", 3), ValueError, "labels is empty"),
    "unknown-metric": (lambda: summarize_system(_L, _P, _SPK, "f1", 3), ValueError, "unknown metric 'f1'"),
    "unknown-metric-confusions": (lambda: metric_from_confusions(np.eye(3), "accuracy"), ValueError,
                                  "unknown metric 'accuracy'"),
    "metric-not-str": (lambda: metric_from_confusions(np.eye(3), None), TypeError, "metric must be a str"),
    "one-speaker": (lambda: summarize_system(_L, _P, ["spk"] * 37, "uar", 3), ValueError,
                    "at least 2 distinct speakers, got 1"),
    "int-speakers": (lambda: speaker_bootstrap_weights(list(range(37)), 10, 0), TypeError,
                     "speakers must be str ids, got int"),
    "zero-resamples": (lambda: summarize_system(_L, _P, _SPK, "uar", 3, n_resamples=0), ValueError,
                       "n_resamples must be at least 1, got 0"),
    "float-resamples": (lambda: speaker_bootstrap_weights(_SPK, 10.0, 0), TypeError, "n_resamples must be an int"),
    "zero-permutations": (lambda: compare_systems(_L, _P, _P, _SPK, "uar", 3, n_permutations=0), ValueError,
                          "n_permutations must be at least 1"),
    "different-seed-counts": (lambda: compare_systems(_L, _P, _P[:1], _SPK, "uar", 3), ValueError,
                              "predictions_a has 2 seeds but predictions_b has 1"),
    "one-class": (lambda: summarize_system(_L * 0, _P * 0, _SPK, "uar", 1), ValueError,
                  "num_classes must be at least 2"),
    "negative-seed": (lambda: summarize_system(_L, _P, _SPK, "uar", 3, seed=-1), ValueError, "seed must be"),
    "bad-rng": (lambda: speaker_bootstrap_weights(_SPK, 10, "zero"), TypeError, "rng must be a numpy Generator"),
    "negative-weights": (lambda: weighted_confusions(_L, _P, -np.ones((1, 37)), 3), ValueError, "non-negative"),
    "non-square-confusions": (lambda: metric_from_confusions(np.ones((2, 3)), "wa"), ValueError,
                              r"confusions must be \[\.\.\., K, K\]"),
    "utterance-of-two-speakers": (lambda: summarize_system(_L, _P, _SPK, "uar", 3, utterances=["u"] * 37),
                                  ValueError, "utterance 'u' is given more than one speaker"),
    "utterances-wrong-length": (lambda: compare_systems(_L, _P, _P, _SPK, "uar", 3, utterances=["u"] * 36),
                                ValueError, r"utterances must name one utterance per item \(37\)"),
    "int-utterances": (lambda: speaker_bootstrap_weights(_SPK, 10, 0, list(range(37))), TypeError,
                       "utterances must be str ids, got int"),
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=str)
def test_bad_input_is_explained(case):
    call, error, message = BAD_INPUTS[case]
    with pytest.raises(error, match=message):
        call()




def _scores(seed: int, n: int, s: int, n_speakers: int, speaker_sd: float = 2.0, noise_sd: float = 3.0):
    """Per-utterance scores [s, n] (an SSNR-like dB value: a per-speaker offset plus utterance noise) and speakers."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, n_speakers, n)
    codes[:n_speakers] = np.arange(n_speakers)  # every speaker present
    values = 5.0 + rng.normal(0.0, speaker_sd, n_speakers)[codes] + rng.normal(0.0, noise_sd, (s, n))
    return values, np.array([f"spk{g}" for g in codes])


def _with_nan_columns(values: np.ndarray, columns) -> np.ndarray:
    values = values.copy()
    values[:, columns] = np.nan
    return values


NAN_COLUMNS = [0, 5, 6, 20, 36]  # includes the first and the last item


@pytest.mark.parametrize("shape", [(37,), (3, 37)], ids=["N", "SxN"])
@pytest.mark.parametrize("with_nan", [False, True], ids=["finite", "with-NaN"])
def test_weighted_means_match_numpy(shape, with_nan):
    rng = np.random.default_rng(6)
    values = rng.normal(2.0, 1.5, shape)
    missing = [0, 3, 11, 30] if with_nan else []
    values[..., missing] = np.nan
    valued = ~np.isnan(values)
    unit = weighted_means(values, np.ones((1, 37)))
    assert unit.shape == (*shape[:-1], 1)
    assert_close(unit[..., 0], np.nanmean(values, axis=-1), atol=1e-12, msg="unit weights")
    weights = speaker_bootstrap_weights(_scores(6, 37, 1, 5)[1], 20, 4)
    expected = [[np.average(row[ok], weights=w[ok]) for w in weights] for row, ok in
                zip(np.atleast_2d(values), np.atleast_2d(valued))]
    assert_close(weighted_means(values, weights), np.reshape(expected, (*shape[:-1], 20)), atol=1e-12,
                 msg="bootstrap weights")
    only_nan = np.isin(np.arange(37), missing).astype(float)[None]
    assert np.all(np.isnan(weighted_means(values, only_nan)))  # no weight on an item with a value


@pytest.mark.parametrize("seeds", [1, 3], ids=lambda s: f"S{s}")
def test_value_summary_fields(seeds):
    values, speakers = _scores(1, 37, seeds, 6)
    summary = summarize_values(values, speakers, n_resamples=500, seed=2)
    per_seed = values.mean(axis=1)
    assert_close(summary["mean"], per_seed.mean(), atol=1e-12, msg="mean")
    assert_close(summary["std"], np.std(per_seed, ddof=1) if seeds > 1 else 0.0, atol=1e-12, msg="std")
    low, high = summary["ci95"]
    assert low <= summary["mean"] <= high
    assert (summary["seeds"], summary["utterances"], summary["speakers"]) == (seeds, 37, 6)
    one_row = summarize_values(values[0], speakers, n_resamples=500, seed=2)
    assert one_row["seeds"] == 1 and one_row["std"] == 0.0
    assert_close(one_row["mean"], values[0].mean(), atol=1e-12, msg="[N] mean")


@pytest.mark.parametrize("with_nan", [False, True], ids=["finite", "with-NaN"])
@pytest.mark.parametrize("seeds", [1, 3], ids=lambda s: f"S{s}")
def test_identical_value_systems_differ_by_nothing(seeds, with_nan):
    values, speakers = _scores(4, 37, seeds, 5)
    if with_nan:
        values[0, [2, 9]] = np.nan
    result = compare_values(values, values.copy(), speakers)
    assert result["diff"] == 0.0 and result["ci95"] == [0.0, 0.0] and result["p"] == 1.0
    assert (result["seeds"], result["utterances"]) == (seeds, 35 if with_nan and seeds == 1 else 37)
    assert "permutation" in result["test"] and "bootstrap" in result["test"]


@pytest.mark.parametrize("shift", [0.37, -2.5], ids=lambda c: f"shift{c:+g}")
@pytest.mark.parametrize("seeds", [1, 3], ids=lambda s: f"S{s}")
def test_a_constant_value_shift_is_recovered(seeds, shift):
    """b = a + c on every item: diff is exactly -c, with no sampling variance, and the shift is significant."""
    a, speakers = _scores(8, 37, seeds, 7)
    result = compare_values(a, a + shift, speakers, n_resamples=1000, n_permutations=999)
    assert_close(result["diff"], -shift, atol=1e-12, msg="diff")
    low, high = result["ci95"]
    assert low - 1e-12 <= -shift <= high + 1e-12, (low, -shift, high)
    assert_close(result["ci95"], [-shift, -shift], atol=1e-12, msg="interval of a constant shift")
    assert result["p"] <= 0.01
    flipped = compare_values(a + shift, a, speakers, n_resamples=1000, n_permutations=999)
    assert_close(flipped["diff"], shift, atol=1e-12, msg="flipped diff")
    mean_a = summarize_values(a, speakers, n_resamples=10)["mean"]
    mean_b = summarize_values(a + shift, speakers, n_resamples=10)["mean"]
    assert_close(result["diff"], mean_a - mean_b, atol=1e-12, msg="diff of means")


def test_duplicated_scores_of_one_utterance_change_no_interval():
    """The per-utterance scores of each utterance given twice (one utterance NaN in one copy only): drawn together,
    the intervals are those of one copy, with the NaN left out as everywhere."""
    a, speakers = _scores(12, 37, 2, 7)
    b = a - 0.5 + np.random.default_rng(2).normal(0, 1, a.shape)
    utterances = np.array([f"u{i}" for i in range(37)])
    once = {"summary": summarize_values(a, speakers, n_resamples=500, utterances=utterances),
            "comparison": compare_values(a, b, speakers, n_resamples=500, n_permutations=99, utterances=utterances)}
    twice = {"summary": summarize_values(np.tile(a, 2), np.tile(speakers, 2), n_resamples=500,
                                         utterances=np.tile(utterances, 2)),
             "comparison": compare_values(np.tile(a, 2), np.tile(b, 2), np.tile(speakers, 2), n_resamples=500,
                                          n_permutations=99, utterances=np.tile(utterances, 2))}
    for name in once:
        assert_close(twice[name]["ci95"], once[name]["ci95"], atol=1e-9, msg=f"{name} interval")
    with_nan = _with_nan_columns(np.tile(a, 2), [40])
    kept = summarize_values(with_nan, np.tile(speakers, 2), n_resamples=50, utterances=np.tile(utterances, 2))
    assert kept["utterances"] == 73


@pytest.mark.parametrize("baseline", [4.0, -2.0], ids=["positive-baseline", "negative-baseline"])
def test_a_value_shift_relative_to_the_baseline(baseline):
    """b constant at m and a = b + c: the relative gain is 100 c / |m| in every resample; undefined where m is 0."""
    _, speakers = _scores(9, 37, 2, 7)
    b = np.full((2, 37), baseline)
    result = compare_values(b + 1.5, b, speakers, n_resamples=300, n_permutations=99)
    assert_close(result["relative_pct"], 100 * 1.5 / abs(baseline), atol=1e-9, msg="relative gain")
    assert_close(result["relative_ci95"], [100 * 1.5 / abs(baseline)] * 2, atol=1e-9, msg="relative interval")
    zero = compare_values(b * 0 + 1.5, b * 0, speakers, n_resamples=50, n_permutations=99)
    assert zero["relative_pct"] is None and zero["relative_ci95"] is None


@pytest.mark.parametrize("seeds", [1, 3], ids=lambda s: f"S{s}")
def test_a_noisy_value_shift_is_found_and_noise_alone_is_not(seeds):
    a, speakers = _scores(10, 37, seeds, 7)
    rng = np.random.default_rng(11)
    shifted = a + 1.5 + rng.normal(0.0, 0.5, a.shape)
    result = compare_values(shifted, a, speakers, n_resamples=1000, n_permutations=999)
    assert_close(result["diff"], (shifted - a).mean(axis=1).mean(), atol=1e-12, msg="diff")
    low, high = result["ci95"]
    assert 0 < low <= 1.5 <= high and result["p"] <= 0.01, (low, high, result["p"])
    noisy = a + rng.normal(0.0, 0.5, a.shape)
    result = compare_values(noisy, a, speakers, n_resamples=1000, n_permutations=999, seed=1)
    low, high = result["ci95"]
    assert low < 0 < high and 0.05 < result["p"] <= 1.0, (low, high, result["p"])


@pytest.mark.parametrize("seeds", [1, 3], ids=lambda s: f"S{s}")
@pytest.mark.parametrize("operation", ["summary", "comparison"])
def test_an_all_nan_item_is_as_if_not_given(operation, seeds):
    """An utterance NaN in every seed (in either system, for a comparison) gives the result without that utterance:
    the same means, the same bootstrap resamples of the utterances left, the same permutations."""
    a, speakers = _scores(14, 37, seeds, 5)
    b = a + np.random.default_rng(15).normal(0.3, 1.0, a.shape)
    kept = np.setdiff1d(np.arange(37), NAN_COLUMNS)
    if operation == "summary":
        result = summarize_values(_with_nan_columns(a, NAN_COLUMNS), speakers, n_resamples=300, seed=3)
        reference = summarize_values(a[:, kept], speakers[kept], n_resamples=300, seed=3)
        floats, counts = ("mean", "std", "ci95"), ("seeds", "utterances", "speakers")
    else:
        a_nan, b_nan = _with_nan_columns(a, NAN_COLUMNS[:2]), _with_nan_columns(b, NAN_COLUMNS[2:])  # NaN in either
        result = compare_values(a_nan, b_nan, speakers, n_resamples=300, n_permutations=199, seed=3)
        reference = compare_values(a[:, kept], b[:, kept], speakers[kept], n_resamples=300, n_permutations=199, seed=3)
        floats, counts = ("diff", "ci95", "p"), ("seeds", "utterances", "test")
    for key in floats:
        assert_close(result[key], reference[key], atol=1e-12, msg=key)
    assert [result[key] for key in counts] == [reference[key] for key in counts]
    assert result["utterances"] == 32


def test_nan_in_some_seeds_is_left_out_of_those_seeds_only():
    a, speakers = _scores(16, 37, 3, 5)
    b = a + np.random.default_rng(17).normal(0.3, 1.0, a.shape)
    a[0, [1, 2]] = np.nan  # seed 0 of a
    b[2, 7] = np.nan  # seed 2 of b
    summary = summarize_values(a, speakers, n_resamples=200)
    assert_close(summary["mean"], np.nanmean(a, axis=1).mean(), atol=1e-12, msg="summary mean")
    assert_close(summary["std"], np.nanmean(a, axis=1).std(ddof=1), atol=1e-12, msg="summary std")
    assert summary["utterances"] == 37
    paired = ~np.isnan(a) & ~np.isnan(b)
    expected = np.mean([row_a[ok].mean() - row_b[ok].mean() for row_a, row_b, ok in zip(a, b, paired)])
    result = compare_values(a, b, speakers, n_resamples=200, n_permutations=99)
    assert_close(result["diff"], expected, atol=1e-12, msg="paired diff")
    assert result["utterances"] == 37 and result["ci95"][0] <= result["diff"] <= result["ci95"][1]
    # A speaker without any score is left out of the speaker count (and of the bootstrap).
    only = speakers == "spk4"
    assert summarize_values(np.where(only, np.nan, a), speakers, n_resamples=50)["speakers"] == 4


def test_value_interval_covers_the_population_mean():
    """Simulated corpora whose speakers differ in level (a normal random effect, sd 2 dB, against utterance noise of
    sd 3 dB): the 95% interval of the seed-mean score must cover the population mean in at least 85% of 40 corpora."""
    mu, n_speakers = 5.0, 20
    rng = np.random.default_rng(2025)
    covered = 0
    for trial in range(40):
        sizes = rng.integers(3, 26, n_speakers)
        speakers = np.repeat([f"spk{g}" for g in range(n_speakers)], sizes)
        level = mu + np.repeat(rng.normal(0.0, 2.0, n_speakers), sizes)
        values = level + rng.normal(0.0, 3.0, (2, sizes.sum()))
        low, high = summarize_values(values, speakers, n_resamples=1000, seed=trial)["ci95"]
        covered += low <= mu <= high
    assert covered >= 34, f"the 95% interval covered the population mean in {covered} of 40 corpora"


_V, _VSPK = _scores(0, 37, 2, 4)

BAD_VALUE_INPUTS = {
    "values-b-shorter": (lambda: compare_values(_V, _V[:, :36], _VSPK), ValueError,
                         r"values_a has shape \(2, 37\) but values_b has \(2, 36\)"),
    "different-value-seed-counts": (lambda: compare_values(_V, _V[:1], _VSPK), ValueError,
                                    r"values_a has shape \(2, 37\) but values_b has \(1, 37\)"),
    "inf-value": (lambda: summarize_values(np.where(np.arange(37) == 3, np.inf, _V), _VSPK), ValueError,
                  "values holds 2 infinite values; expected finite scores, or NaN"),
    "minus-inf-value-b": (lambda: compare_values(_V, np.where(np.arange(37) == 3, -np.inf, _V), _VSPK), ValueError,
                          "values_b holds 2 infinite values"),
    "value-speakers-shorter": (lambda: summarize_values(_V, _VSPK[:36]), ValueError,
                               "speakers has 36 items but values has 37"),
    "value-speakers-longer": (lambda: compare_values(_V, _V, np.append(_VSPK, "spk0")), ValueError,
                              "speakers has 38 items but values_a has 37"),
    "values-one-speaker": (lambda: summarize_values(_V, ["spk"] * 37), ValueError,
                           "at least 2 distinct speakers, got 1"),
    "values-one-speaker-with-scores": (lambda: summarize_values(np.where(_VSPK == "spk0", _V, np.nan), _VSPK),
                                       ValueError, "at least 2 distinct speakers, got 1"),
    "values-int-speakers": (lambda: summarize_values(_V, list(range(37))), TypeError,
                            "speakers must be str ids, got int"),
    "all-nan-values": (lambda: summarize_values(np.full((2, 37), np.nan), _VSPK), ValueError,
                       r"values is NaN for every item in seed\(s\) \[0, 1\]"),
    "one-seed-all-nan": (lambda: summarize_values(np.where(np.arange(2)[:, None] == 1, np.nan, _V), _VSPK),
                         ValueError, r"NaN for every item in seed\(s\) \[1\]"),
    "nan-in-either-everywhere": (lambda: compare_values(np.where(np.arange(37) % 2 == 0, np.nan, _V),
                                                        np.where(np.arange(37) % 2 == 1, np.nan, _V), _VSPK),
                                 ValueError, r"values_a or values_b is NaN for every item in seed\(s\) \[0, 1\]"),
    "bool-values": (lambda: summarize_values(_V > 5, _VSPK), TypeError,
                    "values must hold real-valued scores, got dtype bool"),
    "str-values": (lambda: compare_values(_V, _V.astype(str), _VSPK), TypeError,
                   "values_b must hold real-valued scores"),
    "3d-values": (lambda: summarize_values(_V[None], _VSPK), ValueError, r"\[N\] or \[S, N\]"),
    "empty-values": (lambda: summarize_values([], []), ValueError, "values is empty"),
    "value-weights-wrong-length": (lambda: weighted_means(_V, np.ones((2, 36))), ValueError,
                                   r"weights must be \[R, N\] with N=37"),
    "zero-value-resamples": (lambda: summarize_values(_V, _VSPK, n_resamples=0), ValueError,
                             "n_resamples must be at least 1, got 0"),
    "zero-value-permutations": (lambda: compare_values(_V, _V, _VSPK, n_permutations=0), ValueError,
                                "n_permutations must be at least 1"),
    "negative-value-seed": (lambda: compare_values(_V, _V, _VSPK, seed=-1), ValueError, "seed must be"),
}


@pytest.mark.parametrize("case", BAD_VALUE_INPUTS, ids=str)
def test_bad_value_input_is_explained(case):
    call, error, message = BAD_VALUE_INPUTS[case]
    with pytest.raises(error, match=message):
        call()
