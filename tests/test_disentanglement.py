"""The subspace probes and dead-feature counts of ser_fast.runs.disentanglement, on constructed embeddings whose answer
is known."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from helpers import assert_close

from ser_fast.runs.disentanglement import dead_fraction, disentanglement, mean_over_folds, probe_scores, warn_if_dead

SPEAKERS, EMOTIONS, PER_CELL, DIM = 6, 4, 10, 16


def _labels():
    speakers = np.repeat([f"spk{s}" for s in range(SPEAKERS)], EMOTIONS * PER_CELL)
    emotions = np.tile(np.repeat(np.arange(EMOTIONS), PER_CELL), SPEAKERS)
    return emotions, speakers


def _space(codes: np.ndarray, strength: float, seed: int) -> np.ndarray:
    """Noise plus a per-code mean pattern of size ``strength``."""
    rng = np.random.default_rng(seed)
    _, index = np.unique(codes, return_inverse=True)
    patterns = rng.normal(size=(index.max() + 1, DIM))
    return rng.normal(size=(len(codes), DIM)) + strength * patterns[index]


@pytest.mark.parametrize("dead", [0, 3, 16], ids=["none-dead", "3-of-16-dead", "all-dead"])
def test_dead_fraction_counts_constant_features(dead):
    vectors = np.random.default_rng(0).normal(size=(9, DIM))
    vectors[:, :dead] = 0.0
    if dead > 1:
        vectors[:, 1] = 2.5  # constant but not zero: dead too
    assert dead_fraction(vectors) == pytest.approx(dead / DIM)


def test_dead_fraction_keeps_small_but_varying_features():
    vectors = np.random.default_rng(0).normal(size=(9, DIM)) * 1e-3
    assert dead_fraction(vectors) == 0.0


def test_a_feature_shrunk_to_nothing_is_dead_though_not_constant():
    vectors = np.random.default_rng(0).normal(size=(9, DIM))
    vectors[:, :4] *= 1e-5
    assert dead_fraction(vectors) == pytest.approx(4 / DIM)


def test_non_finite_vectors_measure_as_nan_and_probe_as_none():
    emotions, speakers = _labels()
    vectors = _space(emotions, 3.0, seed=1)
    vectors[3, 2] = np.inf
    assert np.isnan(dead_fraction(vectors))
    assert probe_scores(vectors, emotions, speakers) == {"emotion_probe_uar": None, "speaker_probe_accuracy": None}


@pytest.mark.parametrize("bad", [np.zeros((1, 4)), np.zeros(4), np.zeros((3, 0)), np.array([["a", "b"]] * 3)],
                         ids=["one-row", "vector", "no-features", "strings"])
def test_dead_fraction_rejects_what_it_cannot_measure(bad):
    with pytest.raises(ValueError, match="rows|matrix"):
        dead_fraction(bad)


def test_probes_find_what_each_space_encodes():
    emotions, speakers = _labels()
    emotional = probe_scores(_space(emotions, 3.0, seed=1), emotions, speakers)
    personal = probe_scores(_space(speakers, 3.0, seed=2), emotions, speakers)
    assert emotional["emotion_probe_uar"] > 0.95
    assert personal["speaker_probe_accuracy"] > 0.95
    # Across speakers a speaker code says nothing of the emotion, and an emotion code nothing of the speaker.
    assert personal["emotion_probe_uar"] < 0.40
    assert emotional["speaker_probe_accuracy"] < 0.35


def test_emotion_probe_holds_speakers_out():
    """A space that tells emotions apart only through each speaker's own codes fails across speakers: the probe's
    folds are speaker-disjoint."""
    emotions, speakers = _labels()
    cells = np.array([f"{s}-{e}" for s, e in zip(speakers, emotions)])
    scores = probe_scores(_space(cells, 3.0, seed=3), emotions, speakers)
    assert scores["emotion_probe_uar"] < 0.45
    assert scores["speaker_probe_accuracy"] > 0.95


def test_a_dead_space_probes_at_chance():
    emotions, speakers = _labels()
    scores = disentanglement({"z_ei": np.zeros((len(emotions), DIM))}, emotions, speakers)["z_ei"]
    assert scores["dead_fraction"] == 1.0
    assert scores["emotion_probe_uar"] == pytest.approx(1 / EMOTIONS, abs=0.05)
    assert scores["speaker_probe_accuracy"] == pytest.approx(1 / SPEAKERS, abs=0.05)


def test_probes_need_two_speakers():
    emotions, speakers = _labels()
    one = speakers == "spk0"
    scores = probe_scores(_space(emotions, 3.0, seed=1)[one], emotions[one], speakers[one])
    assert scores == {"emotion_probe_uar": None, "speaker_probe_accuracy": None}


def test_speaker_probe_leaves_out_speakers_heard_once():
    emotions, speakers = _labels()
    vectors = _space(speakers, 3.0, seed=2)
    speakers = speakers.copy()
    speakers[0] = "heard-once"
    assert probe_scores(vectors, emotions, speakers)["speaker_probe_accuracy"] > 0.95


def test_emotion_probe_is_none_when_a_training_split_has_one_emotion():
    """Two speakers, each with a single emotion of its own: holding one speaker out leaves one emotion to learn."""
    speakers = np.repeat(["a", "b"], 10)
    emotions = np.repeat([0, 1], 10)
    scores = probe_scores(np.random.default_rng(0).normal(size=(20, 4)), emotions, speakers)
    assert scores["emotion_probe_uar"] is None and scores["speaker_probe_accuracy"] is not None


def test_probe_rejects_mismatched_labels():
    emotions, speakers = _labels()
    with pytest.raises(ValueError, match="one entry per row"):
        probe_scores(np.zeros((5, 2)), emotions, speakers)


def test_mean_over_folds_skips_missing_scores():
    folds = [{"z_er": {"dead_fraction": 0.0, "emotion_probe_uar": 0.5, "speaker_probe_accuracy": None}},
             {"z_er": {"dead_fraction": 0.5, "emotion_probe_uar": 0.7, "speaker_probe_accuracy": None}}]
    mean = mean_over_folds(folds)["z_er"]
    assert_close([mean["dead_fraction"], mean["emotion_probe_uar"]], [0.25, 0.6], atol=1e-12)
    assert mean["speaker_probe_accuracy"] is None


def test_warns_only_past_half_dead(caplog):
    with caplog.at_level(logging.WARNING, logger="ser_fast.runs.disentanglement"):
        warn_if_dead({"z_er": 0.5, "z_ei": 0.97}, "dsnet epoch 3")
    assert len(caplog.records) == 1
    assert "z_ei" in caplog.text and "97%" in caplog.text and "dsnet epoch 3" in caplog.text
