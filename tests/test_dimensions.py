"""Dimensional emotion: CCC, Pearson's r and MAE per dimension against a hand computation and against audmetric
(audEERING's), scipy and scikit-learn; the CCC loss is 1 - the metric's mean CCC and trains; corpus scales normalise
and restore; utterances without a rating within the scale are skipped with the reason; the synthetic corpus' ratings
follow each utterance's prosody."""

from __future__ import annotations

import math
from pathlib import Path

import audmetric
import numpy as np
import pytest
import soundfile as sf
import torch
from corpus_fixtures import make_manifest
from helpers import assert_close
from scipy.stats import pearsonr
from sklearn.metrics import mean_absolute_error

from ser_fast.cli import main
from ser_fast.data.corpus import Corpus, Utterance
from ser_fast.data.dimensions import (
    DIMENSIONS,
    DimensionScale,
    corpus_scale,
    dimension_targets,
    rating,
    ratings_summary,
    with_dimensions,
)
from ser_fast.data.loaders import load_corpus
from ser_fast.data.synthetic import synthesize_corpus
from ser_fast.data.synthetic.prosody import draw_prosody, draw_speaker
from ser_fast.data.synthetic.ratings import CLASS_MEANS, rate_dimensions
from ser_fast.models.losses import concordance_loss
from ser_fast.runs.metrics import DimensionalScores, concordance


def test_concordance_by_hand():
    # x = 1, 2, 3, 4: mean 2.5, var 1.25; y = 2, 3, 5, 4: mean 3.5, var 1.25;
    # cov = ((-1.5)(-1.5) + (-0.5)(-0.5) + (0.5)(1.5) + (1.5)(0.5)) / 4 = 1; CCC = 2 * 1 / (1.25 + 1.25 + 1^2) = 4/7.
    x, y = np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 3.0, 5.0, 4.0])
    assert concordance(x, y) == pytest.approx(4 / 7)
    assert concordance(x, x) == pytest.approx(1.0)
    assert concordance(x, x + 1) == pytest.approx(2 * 1.25 / (2.5 + 1))  # a bias lowers CCC, not Pearson's r
    assert concordance(x, 5 - x) == pytest.approx(-1.0)


@pytest.mark.parametrize("count,dimensions", [(2, 1), (37, 3), (101, 3), (8, 2)],
                         ids=["n2-d1", "n37-d3", "n101-d3", "n8-d2"])
def test_scores_equal_audmetric_scipy_and_sklearn(count, dimensions):
    rng = np.random.default_rng(count)
    targets = rng.uniform(1, 5, (count, dimensions))
    predictions = 0.6 * targets + rng.normal(1.0, 0.5, (count, dimensions))
    names = DIMENSIONS[:dimensions] if dimensions <= 3 else tuple(f"d{i}" for i in range(dimensions))
    scores = DimensionalScores.from_predictions(targets, predictions, names)
    for j in range(dimensions):
        assert scores.ccc[j] == pytest.approx(audmetric.concordance_cc(targets[:, j], predictions[:, j]), abs=1e-9)
        assert scores.pearson[j] == pytest.approx(pearsonr(targets[:, j], predictions[:, j]).statistic, abs=1e-9)
        assert scores.mae[j] == pytest.approx(mean_absolute_error(targets[:, j], predictions[:, j]))
    assert scores.mean_ccc == pytest.approx(float(np.mean(scores.ccc)))
    assert scores.as_dict()["ccc"][names[0]] == pytest.approx(scores.ccc[0])
    assert "mean CCC" in scores.to_markdown() and names[-1] in scores.to_markdown()


def test_concordance_refuses_columns_of_other_shapes():
    with pytest.raises(ValueError, match="must be the same non-empty"):
        concordance(np.zeros(4), np.zeros((4, 1)))


def test_a_constant_prediction_scores_ccc_zero_and_no_pearson():
    targets = np.array([[1.0], [2.0], [4.0]])
    scores = DimensionalScores.from_predictions(targets, np.full((3, 1), 2.0), ["arousal"])
    assert scores.ccc[0] == 0.0 and math.isnan(scores.pearson[0])
    assert scores.as_dict()["pearson"]["arousal"] is None and "—" in scores.to_markdown()


@pytest.mark.parametrize("targets,predictions,message", [
    (np.zeros((3, 2)), np.zeros((3, 3)), r"predictions must be \[utterances, 2\]"),
    (np.zeros((3, 2)), np.zeros((4, 2)), "differ in shape"),
    (np.zeros((1, 2)), np.zeros((1, 2)), "at least 2"),
    (np.array([[0.0, np.nan], [1, 1]]), np.zeros((2, 2)), "NaN or infinite"),
], ids=["columns", "rows", "one", "nan"])
def test_bad_scores_input_is_explained(targets, predictions, message):
    with pytest.raises(ValueError, match=message):
        DimensionalScores.from_predictions(targets, predictions, ["arousal", "valence"])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_the_ccc_loss_is_one_minus_the_metric_and_trains(dtype):
    generator = torch.Generator().manual_seed(0)
    targets = torch.rand(29, 3, generator=generator)
    predictions = (0.5 * targets + 0.3 * torch.rand(29, 3, generator=generator)).to(dtype).requires_grad_()
    loss = concordance_loss(predictions, targets)
    assert loss.dtype == torch.float32
    expected = 1 - concordance(targets.numpy(), predictions.detach().float().numpy()).mean()
    assert loss.item() == pytest.approx(expected, abs=1e-3 if dtype == torch.bfloat16 else 1e-6)
    loss.backward()
    assert predictions.grad is not None and torch.isfinite(predictions.grad.float()).all()


def test_fitting_with_the_ccc_loss_reaches_agreement():
    generator = torch.Generator().manual_seed(1)
    features = torch.randn(64, 5, generator=generator)
    targets = torch.sigmoid(features @ torch.randn(5, 3, generator=generator))
    head = torch.nn.Linear(5, 3)
    optimizer = torch.optim.Adam(head.parameters(), lr=0.05)
    for _ in range(300):
        optimizer.zero_grad()
        loss = concordance_loss(head(features), targets)
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.1


@pytest.mark.parametrize("predictions,targets,error,message", [
    (torch.zeros(4, 3), torch.zeros(4, 2), ValueError, "differ in shape"),
    (torch.zeros(1, 3), torch.zeros(1, 3), ValueError, "at least 2"),
    (torch.zeros(4), torch.zeros(4), ValueError, r"\[N, D\]"),
    (torch.zeros(4, 3, dtype=torch.long), torch.zeros(4, 3), TypeError, "floating-point"),
], ids=["shapes", "one", "vector", "integer"])
def test_bad_loss_input_is_explained(predictions, targets, error, message):
    with pytest.raises(error, match=message):
        concordance_loss(predictions, targets)


def test_scales_normalise_restore_and_parse():
    scale = DimensionScale.parse("1,7")
    assert scale == corpus_scale("msp-podcast") and str(scale) == "1-7"
    assert_close(scale.normalise([1, 4, 7]), np.array([0.0, 0.5, 1.0]), atol=1e-12)
    assert_close(scale.restore(scale.normalise([1.5, 6.25])), np.array([1.5, 6.25]), atol=1e-12)
    assert corpus_scale("manifest", DimensionScale(0, 100)).high == 100


@pytest.mark.parametrize("text,message", [("5,1", "low < high"), ("1", "LOW,HIGH"), ("a,b", "LOW,HIGH"),
                                          ("1,inf", "finite")], ids=["reversed", "one-number", "words", "inf"])
def test_a_bad_scale_is_explained(text, message):
    with pytest.raises(ValueError, match=message):
        DimensionScale.parse(text)


def test_a_corpus_without_a_known_scale_asks_for_one():
    with pytest.raises(ValueError, match=r"'manifest' corpus has no known .* DimensionScale\(1, 5\)"):
        corpus_scale("manifest")


def test_utterances_without_a_rating_in_the_scale_are_skipped_with_the_reason():
    def utterance(name: str, **extra) -> Utterance:
        return Utterance(Path(f"{name}.wav"), "happy", "s1", "test", extra=extra)

    good = utterance("good", arousal=2.5, valence=3.0, dominance=1.0)
    text = utterance("text", arousal="4.5", valence="1", dominance="5")  # a manifest's columns
    corpus = Corpus("test", Path("."), ("happy",), [
        good, text, utterance("missing", arousal=2.0, valence=3.0),
        utterance("outside", arousal=7.0, valence=3.0, dominance=3.0),
        utterance("words", arousal="high", valence=3.0, dominance=3.0),
        utterance("nan", arousal=float("nan"), valence=3.0, dominance=3.0)])
    kept = with_dimensions(corpus, DimensionScale(1, 5))
    assert kept.utterances == [good, text]
    reasons = {s.item: s.reason for s in kept.skipped}
    assert reasons == {"missing.wav": "no dominance rating", "outside.wav (arousal 7)": "arousal outside 1-5",
                       "words.wav (arousal 'high')": "no arousal rating", "nan.wav (arousal nan)": "no arousal rating"}
    assert kept.summary().skipped["arousal outside 1-5"] == 1
    assert_close(dimension_targets(kept.utterances, DimensionScale(1, 5)),
                 np.array([[0.375, 0.5, 0.0], [0.875, 0.0, 1.0]], np.float32), atol=1e-7)
    assert rating(text, "arousal") == 4.5
    with pytest.raises(ValueError, match=r"outside\.wav: arousal 7\.0 is not a rating within 1-5"):
        dimension_targets(corpus.utterances[3:4], DimensionScale(1, 5))


def test_a_manifest_with_rating_columns_loads_them(tmp_path):
    root = make_manifest(tmp_path)
    corpus = load_corpus("manifest", root)
    assert all(rating(u, "arousal") is None for u in corpus)
    assert len(with_dimensions(corpus, DimensionScale(1, 5))) == 0


def test_synthetic_ratings_follow_the_prosody():
    speaker = draw_speaker(0, "F", np.random.default_rng(0))
    drawn = [draw_prosody(speaker, "angry", np.random.default_rng(i)) for i in range(400)]
    ratings = np.array([rate_dimensions(speaker, "angry", p, np.random.default_rng(1000 + i))
                        for i, p in enumerate(drawn)])
    assert np.all((ratings >= 1) & (ratings <= 5)) and np.all(ratings * 2 == np.round(ratings * 2))
    assert_close(ratings.mean(axis=0), np.array(CLASS_MEANS["angry"]), atol=0.15)
    effort = np.array([p.level_db - speaker.level_db for p in drawn])
    f0 = np.array([12 * math.log2(p.f0_hz / speaker.f0_hz) for p in drawn])
    smile = np.array([p.formant_scale for p in drawn])
    valence, arousal, dominance = ratings.T
    assert np.corrcoef(effort + f0, arousal)[0, 1] > 0.4
    assert np.corrcoef(smile, valence)[0, 1] > 0.3
    assert np.corrcoef(effort, dominance)[0, 1] > 0.3


def test_the_synthetic_corpus_rates_louder_speech_of_a_class_higher_in_arousal(tmp_path):
    corpus = load_corpus("iemocap", synthesize_corpus(tmp_path / "corpus", speakers=2, per_class=8, seed=3))
    rated = with_dimensions(corpus, corpus_scale("iemocap"))
    assert len(rated) == len(corpus) == 64
    level, arousal = [], []
    for label in corpus.classes:
        members = [u for u in rated if u.label == label]
        db = np.array([10 * np.log10(np.mean(sf.read(str(u.path))[0] ** 2)) for u in members])
        values = np.array([rating(u, "arousal") for u in members])
        level += list(db - db.mean())
        arousal += list(values - values.mean())
    assert np.corrcoef(level, arousal)[0, 1] > 0.2


def test_the_ratings_summary_says_how_many_a_dimensional_target_would_train_on(tmp_path):
    def utterance(name: str, **extra) -> Utterance:
        return Utterance(Path(f"{name}.wav"), "happy", "s1", "test", extra=extra)

    corpus = Corpus("test", Path("."), ("happy",), [
        utterance("a", arousal=2.5, valence=3.0, dominance=1.0), utterance("b", arousal=9.0, valence=3, dominance=3),
        utterance("c", arousal=2.0, valence=3.0)])
    assert ratings_summary(corpus, DimensionScale(1, 5)) == (
        "arousal/valence/dominance: 1 of 3 utterances rated within 1-5 (left out: 1 arousal outside 1-5; "
        "1 no dominance rating)")
    assert "--dimension-scale LOW,HIGH" in ratings_summary(corpus, None)
    unrated = Corpus("test", Path("."), ("happy",), [utterance("d")])
    assert "no utterance is rated" in ratings_summary(unrated, DimensionScale(1, 5))


def test_corpus_info_prints_the_ratings(tmp_path, capsys):
    root = make_manifest(tmp_path)
    assert main(["corpus-info", "manifest", str(root), "--no-audio-check"]) == 0
    assert "arousal/valence/dominance: no utterance is rated" in capsys.readouterr().out
