"""The reference probe that calibrates a cross-corpus pair: scores in range, above chance within a synthetic studio
corpus, unreadable files left out and counted, and clear errors for inputs it cannot score."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from corpus_fixtures import make_iemocap_tree, write_odd_wav

from ser_fast.data import load_corpus, synthesize_corpus
from ser_fast.evaluation.reference_probe import reference_probe, utterance_statistics


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    """4 speakers × 4 classes × 10 utterances (160), studio condition."""
    root = synthesize_corpus(tmp_path_factory.mktemp("studio"), speakers=4, per_class=10, seed=0)
    return load_corpus("iemocap", root)


@pytest.fixture(scope="module")
def far_field(tmp_path_factory):
    """2 speakers × 4 classes × 2 utterances (16), far-field, another seed."""
    return load_corpus("iemocap", synthesize_corpus(tmp_path_factory.mktemp("far"), speakers=2, per_class=2, seed=50,
                                                    condition="far-field"))


@pytest.fixture(scope="module")
def scores(studio, far_field):
    return reference_probe(studio, far_field)


def test_scores_are_percentages_with_counts(scores):
    assert set(scores) >= {"within_uar", "cross_uar", "chance", "utterances", "speakers"}
    for key in ("within_uar", "cross_uar"):
        assert 0.0 <= scores[key] <= 100.0
    assert scores["chance"] == pytest.approx(25.0)
    assert scores["utterances"] == {"train": 160, "other": 16}
    assert scores["speakers"] == {"train": 4, "other": 2}
    assert scores["failed"] == {"train": 0, "other": 0}
    assert scores["folds"] == 4  # min(5, speakers)


def test_within_corpus_is_clearly_above_chance_on_studio(scores):
    assert scores["within_uar"] > scores["chance"] + 10.0


def test_features_are_mean_and_std_of_unnormalised_log_mel(studio):
    x, labels, speakers, failed = utterance_statistics(studio.utterances[:6], studio.classes)
    assert x.shape == (6, 160) and labels.shape == (6,) and speakers.shape == (6,) and not failed
    assert np.isfinite(x).all()
    # Not the per-utterance normalised features (whose means would be 0 and standard deviations 1).
    assert np.abs(x[:, :80]).mean() > 1.0 and (x[:, 80:] > 0).all() and not np.allclose(x[:, 80:], 1.0, atol=0.05)


def test_unreadable_audio_is_left_out_and_counted(tmp_path, studio):
    other = load_corpus("iemocap", make_iemocap_tree(tmp_path))
    write_odd_wav(other.utterances[0].path, "truncated")  # broken after loading
    result = reference_probe(studio, other)
    assert result["failed"] == {"train": 0, "other": 1}
    assert result["utterances"]["other"] == len(other) - 1


def test_rejects_what_is_not_a_corpus(studio):
    with pytest.raises(TypeError, match="train_corpus must be a ser_fast.data.Corpus"):
        reference_probe(list(studio), studio)
    with pytest.raises(TypeError, match="other_corpus must be a ser_fast.data.Corpus.*str"):
        reference_probe(studio, "/some/corpus")


def test_rejects_corpora_with_different_classes(studio, far_field):
    three = replace(far_field, classes=("neutral", "happy", "sad"))
    with pytest.raises(ValueError, match="different classes.*'neutral', 'happy', 'sad'"):
        reference_probe(studio, three)


def test_rejects_a_training_corpus_it_cannot_cross_validate(studio, far_field):
    one_speaker = studio.subset([u for u in studio if u.speaker == studio.speakers[0]])
    with pytest.raises(ValueError, match="1 speaker.*at least 2"):
        reference_probe(one_speaker, far_field)
    no_sad = studio.subset([u for u in studio if u.label != "sad"])
    with pytest.raises(ValueError, match=r"no readable utterance of \['sad'\]"):
        reference_probe(no_sad, far_field)
    with pytest.raises(ValueError, match="no readable utterance"):
        reference_probe(studio, far_field.subset([]))


def test_rejects_a_bad_seed(studio, far_field):
    with pytest.raises(ValueError, match="seed=-1"):
        reference_probe(studio, far_field, seed=-1)
