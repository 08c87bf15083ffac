"""Calibrated confidence: temperature scaling recovers a known temperature and changes no label, the ECE is the
textbook one, training saves a temperature with the model and every reader applies it (predict, the ONNX file,
evaluate's report), and predict decides among a subset of classes or says "uncertain" below a confidence."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from corpus_fixtures import train_tiny_baseline
from helpers import assert_close, speech_like
from scipy.special import softmax

from ser_fast.inference.decision import UNCERTAIN, make_decision
from ser_fast.inference.recognizer import EmotionRecognizer
from ser_fast.runs.calibration import (
    CALIBRATION_KEY,
    MIN_UTTERANCES,
    UNCALIBRATED,
    Calibration,
    expected_calibration_error,
    fit_temperature,
    saved_calibration,
    write_calibration,
)
from ser_fast.runs.layout import model_folder
from ser_fast.runs.model_files import CONFIG_FILE, ModelFileError, read_model_files

CLASSES = ("neutral", "happy", "sad", "angry")


def _tempered_sample(temperature: float, n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits, and labels drawn from softmax(logits / temperature): the temperature that calibrates them is known."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 3.0, (n, k))
    probabilities = softmax(logits / temperature, axis=1)
    labels = (probabilities.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return logits, labels


@pytest.mark.parametrize("true_temperature", [0.5, 1.0, 2.5], ids=lambda t: f"T{t:g}")
@pytest.mark.parametrize("k", [2, 4, 7], ids=lambda k: f"{k}-classes")
def test_the_fitted_temperature_is_the_one_the_labels_were_drawn_at(true_temperature, k):
    logits, labels = _tempered_sample(true_temperature, 20000, k, seed=k)
    calibration = fit_temperature(logits, labels)
    assert calibration.fitted and calibration.utterances == 20000
    assert_close(calibration.temperature, true_temperature, atol=0, rtol=0.06, msg="temperature")
    assert calibration.nll_after <= calibration.nll_before + 1e-12
    assert calibration.ece_after < 2.0  # calibrated: within sampling noise of 0


def test_an_overconfident_model_is_cooled_and_its_labels_stay():
    logits, labels = _tempered_sample(3.0, 5000, 4, seed=9)
    calibration = fit_temperature(logits, labels)
    assert calibration.temperature > 2 and calibration.ece_after < calibration.ece_before / 3
    before, after = softmax(logits, axis=1), softmax(logits / calibration.temperature, axis=1)
    assert np.array_equal(before.argmax(1), after.argmax(1))


def test_ece_has_its_textbook_value():
    """Every prediction at confidence 0.9, right 6 times in 10: one bin, |0.6 - 0.9| = 30 %. Two bins of half the
    utterances each, 0.55 right 55 % and 0.95 right 95 %: 0."""
    probabilities = np.tile([0.9, 0.05, 0.05], (10, 1))
    labels = np.array([0] * 6 + [1] * 4)
    assert_close(expected_calibration_error(probabilities, labels), 30.0, atol=1e-4, msg="one bin")
    low = np.tile([0.55, 0.45], (20, 1))
    high = np.tile([0.95, 0.05], (20, 1))
    labels = np.array([0] * 11 + [1] * 9 + [0] * 19 + [1])
    assert_close(expected_calibration_error(np.vstack([low, high]), labels), 0.0, atol=1e-4, msg="two bins")


@pytest.mark.parametrize("seed", [0, 1, 2], ids=lambda s: f"seed{s}")
@pytest.mark.parametrize("bins", [1, 10, 15], ids=lambda b: f"{b}-bins")
def test_ece_equals_torchmetrics(seed, bins):
    from torchmetrics.functional.classification import multiclass_calibration_error

    logits, labels = _tempered_sample(1.0, 3000, 5, seed=seed)
    probabilities = softmax(3 * logits, axis=1)
    expected = 100 * float(multiclass_calibration_error(torch.from_numpy(probabilities), torch.from_numpy(labels),
                                                        num_classes=5, n_bins=bins, norm="l1"))
    # torchmetrics sums in float32: about 1e-6 of rounding on an ECE of 0.15.
    assert_close(expected_calibration_error(probabilities, labels, bins=bins), expected, atol=1e-3,
                 msg="against torchmetrics")


def test_too_few_utterances_leave_the_model_uncalibrated():
    logits, labels = _tempered_sample(2.0, MIN_UTTERANCES - 1, 4, seed=1)
    calibration = fit_temperature(logits, labels)
    assert (calibration.temperature, calibration.fitted) == (1.0, False)
    assert f"{MIN_UTTERANCES - 1} validation utterances" in calibration.note


@pytest.mark.parametrize("logits, labels, message", [
    (np.zeros((4,)), np.zeros(4, int), r"logits must be a float \[N, C\] array"),
    (np.zeros((4, 1)), np.zeros(4, int), "C >= 2"),
    (np.full((4, 3), np.nan), np.zeros(4, int), "NaN or infinite"),
    (np.zeros((4, 3)), np.array([0, 1, 2, 3]), r"labels must lie in 0\.\.2"),
    (np.zeros((4, 3)), np.zeros(3, int), r"labels must be integer \[N=4\]"),
    (np.zeros((4, 3)), np.zeros(4), r"labels must be integer"),
], ids=["1d", "one-class", "nan", "label-range", "label-count", "float-labels"])
def test_bad_scores_are_explained(logits, labels, message):
    with pytest.raises(ValueError, match=message):
        fit_temperature(logits, labels)


@pytest.mark.parametrize("values, message", [
    ([1.0], "must be a JSON object"),
    ({"temperature": 0.0, "fitted": True, "utterances": 3}, "positive finite number"),
    ({"temperature": "2", "fitted": True, "utterances": 3}, "positive finite number"),
    ({"temperature": 2.0, "fitted": True, "utterances": 3, "colour": "red"}, r"unknown fields \['colour'\]"),
], ids=["not-object", "zero", "string", "unknown-field"])
def test_a_damaged_calibration_entry_is_refused(values, message):
    with pytest.raises(ValueError, match=message):
        Calibration.from_dict(values)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return train_tiny_baseline(tmp_path_factory.mktemp("calibration-run"), seed=4)


def test_training_saves_a_temperature_with_the_model(tmp_path):
    from ser_fast.data.loaders import load_corpus
    from ser_fast.data.synthetic import synthesize_corpus
    from ser_fast.runs.config import TrainConfig
    from ser_fast.training.run import train_run

    corpus = load_corpus("iemocap", synthesize_corpus(tmp_path / "corpus", speakers=4, per_class=4, seed=6))
    state = train_run(corpus, tmp_path / "run", TrainConfig(model="baseline", epochs=2, max_frames=32,
                                                            precision="fp32"), folds=[0])
    folder = model_folder(tmp_path / "run")
    calibration = Calibration.from_dict(json.loads((folder / CONFIG_FILE).read_text())[CALIBRATION_KEY])
    assert calibration == saved_calibration(read_model_files(folder))
    assert calibration.fitted and calibration.utterances >= MIN_UTTERANCES, calibration
    assert calibration.nll_after <= calibration.nll_before + 1e-9
    assert 0 <= calibration.ece_after and 0 <= calibration.ece_before
    assert [fold["temperature"] for fold in state.values()] == [calibration.temperature]


def test_a_validation_set_too_small_is_saved_as_not_calibrated(run_dir):
    calibration = saved_calibration(read_model_files(model_folder(run_dir)))
    assert (calibration.temperature, calibration.fitted) == (1.0, False)
    assert calibration.utterances == 8 and "too few to fit a temperature" in calibration.note


def test_a_model_saved_before_calibration_loads_uncalibrated_and_a_damaged_entry_is_named(run_dir, tmp_path):
    recognizer = EmotionRecognizer.from_pretrained(run_dir, precision="fp32")
    old = recognizer.save(tmp_path / "old")
    config = json.loads((old / CONFIG_FILE).read_text())
    del config[CALIBRATION_KEY]
    (old / CONFIG_FILE).write_text(json.dumps(config))
    assert EmotionRecognizer.from_pretrained(old).calibration == UNCALIBRATED
    config[CALIBRATION_KEY] = {"temperature": -1}
    (old / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(ModelFileError, match=r"config\.json: its 'calibration' entry is not valid"):
        EmotionRecognizer.from_pretrained(old)


@pytest.mark.parametrize("temperature", [0.5, 2.0, 7.3], ids=lambda t: f"T{t:g}")
def test_predict_applies_the_saved_temperature_and_keeps_every_label(run_dir, tmp_path, temperature):
    plain = EmotionRecognizer.from_pretrained(run_dir, precision="fp32")
    folder = plain.save(tmp_path / "model")
    write_calibration(folder, Calibration(temperature, True, 50))
    tempered = EmotionRecognizer.from_pretrained(folder, precision="fp32")
    assert tempered.calibration.temperature == temperature
    plain = EmotionRecognizer(plain.model, plain.config, plain.classes, precision="fp32")  # T = 1
    waves = [speech_like(n, 16000, seed) / 32768 for seed, n in enumerate((9000, 12345, 30001))]
    reference = plain.predict(waves, sample_rate=16000, window_s=3.0)  # one window each
    calibrated = tempered.predict(waves, sample_rate=16000, window_s=3.0)
    for p, q in zip(reference, calibrated):
        assert not q.timeline and p.label == q.label
        expected = softmax(np.log([p.probabilities[c] for c in plain.classes]) / temperature)
        assert_close(np.array(list(q.probabilities.values())), expected, atol=1e-5, msg="tempered softmax")


def test_predict_decides_among_a_subset_and_says_uncertain_below_a_confidence(run_dir):
    recognizer = EmotionRecognizer.from_pretrained(run_dir, precision="fp32")
    waves = [speech_like(n, 16000, seed) / 32768 for seed, n in enumerate((8000, 16000, 4000))]
    full = recognizer.predict(waves, sample_rate=16000, window_s=3.0)  # one window each
    subset = recognizer.predict(waves, sample_rate=16000, window_s=3.0, classes="sad,happy")
    for p, q in zip(full, subset):
        assert list(q.probabilities) == ["happy", "sad"]  # the model's order
        kept = np.array([p.probabilities["happy"], p.probabilities["sad"]])
        assert_close(np.array(list(q.probabilities.values())), kept / kept.sum(), atol=1e-6, msg="renormalised")
        assert q.label == ("happy" if kept[0] >= kept[1] else "sad")
    unsure = recognizer.predict(waves, sample_rate=16000, window_s=3.0, min_confidence=1.0)
    assert all(p.label == UNCERTAIN and p.probabilities == f.probabilities for p, f in zip(unsure, full))
    sure = recognizer.predict(waves, sample_rate=16000, window_s=3.0, min_confidence=1e-9)
    assert [p.label for p in sure] == [p.label for p in full]


@pytest.mark.parametrize("classes, confidence, error, message", [
    (["happy"], None, ValueError, "at least two distinct classes"),
    (["happy", "happy"], None, ValueError, "at least two distinct classes"),
    (["happy", "bored"], None, ValueError, r"classes \['bored'\] are not the model's"),
    ([1, 2], None, TypeError, "classes must be class names"),
    (None, 0.0, ValueError, r"min_confidence must be a probability in \(0, 1\]"),
    (None, 1.5, ValueError, r"min_confidence must be a probability in \(0, 1\]"),
    (None, True, ValueError, r"min_confidence must be a probability"),
], ids=["one", "twice", "unknown", "ints", "zero", "above-one", "bool"])
def test_bad_decisions_are_explained(classes, confidence, error, message):
    with pytest.raises(error, match=message):
        make_decision(CLASSES, classes, confidence)


def test_a_class_named_uncertain_cannot_be_thresholded():
    with pytest.raises(ValueError, match="has a class named 'uncertain'"):
        make_decision(("calm", UNCERTAIN), None, 0.5)
    assert make_decision(("calm", UNCERTAIN)).classes == ("calm", UNCERTAIN)
