"""Dimensional targets end to end for the CNN models (``target`` "dimensional" or "both"; Sparse MERIT's are in
test_merit_dimensional.py): the heads and their scores, the CCC term, the settings that carry the corpus' scale, model
files without classes, a short run that beats the mean predictor on held-out speakers, its evaluation (CCC, Pearson,
MAE per dimension), ``predict``'s arousal/valence/dominance columns on the corpus' scale, the ONNX graph's outputs, and
warm starts across targets."""

from __future__ import annotations

import json
import math
import shutil
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from helpers import assert_close

from ser_fast.cli import main
from ser_fast.data.audio import load_audio
from ser_fast.data.dimensions import DIMENSIONS, DimensionScale, rating
from ser_fast.data.loaders import load_corpus
from ser_fast.data.synthetic import synthesize_corpus
from ser_fast.evaluation.evaluate import evaluate_run
from ser_fast.evaluation.report import write_report
from ser_fast.inference.decision import Decision, make_decision
from ser_fast.inference.onnx_export import read_metadata
from ser_fast.inference.recognizer import EmotionRecognizer
from ser_fast.inference.writers import output_columns, read_rows
from ser_fast.models import Baseline, DSNet
from ser_fast.models.targets import Targets, split_scores
from ser_fast.runs.config import TrainConfig
from ser_fast.runs.metrics import DimensionalScores
from ser_fast.runs.model_files import ModelFileError, read_model_files
from ser_fast.runs.registry import model_kind
from ser_fast.runs.saved import load_model, save_model
from ser_fast.runs.warm_start import warm_start
from ser_fast.training.run import train_run

TARGETS = ("categorical", "dimensional", "both")
MODELS = {"baseline": Baseline, "dsnet": DSNet}
CLASSES = 5  # odd, and not the default of 4


def model_of(name: str, target: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return MODELS[name](CLASSES, target=target)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("target", TARGETS)
def test_each_target_gives_its_heads(name, target):
    model = model_of(name, target).eval()
    x = torch.randn(3, 3, 37, 80)  # odd batch and frame count
    scores = model(x, torch.tensor([37, 20, 16]))
    classes = 0 if target == "dimensional" else CLASSES
    dimensions = 0 if target == "categorical" else len(DIMENSIONS)
    assert scores.shape == (3, classes + dimensions)
    logits, values = split_scores(scores, model.num_classes)
    assert (logits is None) == (target == "dimensional") and (values is None) == (target == "categorical")
    if values is not None:
        assert bool(((values > 0) & (values < 1)).all()), "the regressor's values lie on the normalised scale"
    head_scores, h = model.head(model.encode(x, torch.tensor([37, 20, 16])))
    assert_close(head_scores, scores, atol=1e-5, msg="head(encode(x)) is forward(x)")
    assert h.shape == (3, 256)


@pytest.mark.parametrize("name", list(MODELS))
def test_a_categorical_model_keeps_its_weights_and_each_head_has_its_own(name):
    names = {target: set(model_of(name, target).state_dict()) for target in TARGETS}
    assert not any(key.startswith("regressor.") for key in names["categorical"])
    assert names["both"] == names["categorical"] | {k for k in names["both"] if k.startswith("regressor.")}
    assert not any(key.startswith("classifier.") for key in names["dimensional"])


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("target", ["dimensional", "both"])
def test_the_objective_adds_the_ccc_loss_and_trains_the_regressor(name, target):
    model = model_of(name, target).train()
    x, lengths = torch.randn(5, 3, 33, 80), torch.tensor([33, 30, 17, 33, 20])
    inputs = (x, torch.randn(5, 3, 33, 80), lengths, lengths) if name == "dsnet" else (x, lengths)
    targets = Targets(torch.tensor([0, 1, 2, 3, 4]) if target == "both" else None, torch.rand(5, 3))
    losses = model.objective(model.training_forward(*inputs), targets)
    scalars = losses.scalars()
    assert "l_d" in scalars and ("l_t" in scalars) == (target == "both")
    assert math.isfinite(scalars["total"]) and 0 <= scalars["l_d"] <= 2
    losses.total.backward()
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in model.regressor.parameters())


def test_a_model_with_a_dimensional_head_needs_its_targets():
    model = model_of("baseline", "both")
    with pytest.raises(TypeError, match="Targets"):
        model.objective(model(torch.randn(2, 3, 16, 80)), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="target 'valence'"):
        Baseline(4, target="valence")


@pytest.mark.parametrize("settings, message", [
    ({"model": "edrl-mea", "target": "both"}, "the edrl-mea model is categorical only"),
    ({"target": "regression"}, "target 'regression'"),
    ({"target": "categorical", "dimension_scale": [1, 5]}, "dimension_scale is for a model with a dimensional"),
    ({"target": "dimensional", "dimension_scale": [5, 1]}, "low < high"),
    ({"target": "dimensional", "dimension_scale": [1, 2, 3]}, r"\[low, high\]"),
], ids=["edrl-mea", "unknown-target", "scale-without-head", "reversed-scale", "three-numbers"])
def test_bad_target_settings_are_rejected_when_the_config_is_built(settings, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**settings)


def test_the_target_and_scale_read_back_from_saved_settings():
    config = TrainConfig(model="dsnet", target="both", dimension_scale=(1, 7))
    assert config.to_dict()["dimension_scale"] == [1.0, 7.0]
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert config.scale == DimensionScale(1, 7)
    assert TrainConfig().scale is None


def test_a_dimensional_model_is_saved_without_classes(tmp_path):
    config = TrainConfig(model="baseline", target="dimensional", dimension_scale=(1, 5))
    model = model_kind("baseline").build(config, 0)
    save_model(tmp_path / "m", model, config, ())
    loaded, loaded_config, classes = load_model(tmp_path / "m")
    assert classes == () and loaded_config == config and loaded.regressor is not None
    with pytest.raises(ValueError, match="at least two distinct"):
        save_model(tmp_path / "c", model_kind("baseline").build(TrainConfig(model="baseline"), 4),
                   TrainConfig(model="baseline"), ())
    values = json.loads((tmp_path / "m" / "config.json").read_text())
    values["classes"] = ["happy", "sad"]
    (tmp_path / "m" / "config.json").write_text(json.dumps(values))
    with pytest.raises(ModelFileError, match=r"classes must be \[\] for a dimensional model"):
        read_model_files(tmp_path / "m")


def test_a_decision_restores_the_dimensions_to_the_scale():
    outputs = np.array([0.7, 0.3, 0.0, 0.5, 1.0])  # two class probabilities, then the dimensions on [0, 1]
    decision = make_decision(("happy", "sad"), dimensions=DIMENSIONS, scale=DimensionScale(1, 7))
    assert decision.label(outputs) == "happy"
    assert decision.dimension_values(outputs) == {"arousal": 1.0, "valence": 4.0, "dominance": 7.0}
    dimensional = make_decision((), dimensions=DIMENSIONS, scale=DimensionScale(1, 5))
    assert dimensional.label(outputs[2:]) is None
    assert dimensional.dimension_values(outputs[2:]) == {"arousal": 1.0, "valence": 3.0, "dominance": 5.0}
    with pytest.raises(ValueError, match="no classes to choose among"):
        make_decision((), classes=["happy", "sad"], dimensions=DIMENSIONS, scale=DimensionScale(1, 5))
    with pytest.raises(ValueError, match="needs the scale"):
        make_decision(("happy", "sad"), dimensions=DIMENSIONS)


def test_prediction_rows_have_a_column_per_dimension():
    assert output_columns((), dimensions=DIMENSIONS)[4:8] == ("duration_s", "arousal", "valence", "dominance")
    assert output_columns(("a", "b"), dimensions=DIMENSIONS)[6:10] == ("prob_b", "arousal", "valence", "dominance")
    with pytest.raises(ValueError, match="needs classes or dimensions"):
        output_columns(())


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = synthesize_corpus(tmp_path_factory.mktemp("dimensional") / "corpus", speakers=4, per_class=8, seed=3)
    return load_corpus("iemocap", root)


@pytest.fixture(scope="module")
def dimensional_run(corpus, tmp_path_factory):
    """A short Baseline run with a dimensional head on one half of the speakers, tested on the other half."""
    run = tmp_path_factory.mktemp("run") / "run"
    config = TrainConfig(model="baseline", target="dimensional", epochs=12, batch_size=16, max_frames=100,
                         precision="fp32")
    train_run(corpus, run, config, protocol="halves", folds=[0])
    return run


def held_out_ratings(run: Path, corpus) -> tuple[np.ndarray, np.ndarray]:
    """The test speakers' and the training speakers' ratings of the run's fold."""
    fold = json.loads(next((run / "folds").iterdir()).joinpath("fold.json").read_text())
    by_path = {str(u.path): u for u in corpus}

    def ratings(paths):
        return np.array([[rating(by_path[p], d) for d in DIMENSIONS] for p in paths])

    return ratings(fold["test"]), ratings(fold["train"])


def test_a_short_run_beats_the_mean_predictor_on_held_out_speakers(dimensional_run, corpus):
    results = evaluate_run(dimensional_run, corpus)
    scores = results.clean.dimensional
    test, train = held_out_ratings(dimensional_run, corpus)
    assert scores.count == len(test) and results.clean.pooled is None
    mean_predictor = DimensionalScores.from_predictions(test, np.tile(train.mean(axis=0), (len(test), 1)), DIMENSIONS)
    assert scores.mean_ccc > mean_predictor.mean_ccc + 0.05, scores.to_markdown()
    for name in ("arousal", "dominance"):  # valence, the cue the synthesizer varies least, is left to chance
        k = DIMENSIONS.index(name)
        assert scores.ccc[k] > 0.05 and scores.mae[k] < mean_predictor.mae[k], (name, scores.to_markdown(),
                                                                                 mean_predictor.to_markdown())
    report = write_report(results, dimensional_run.parent / "report").read_text()
    assert "## Arousal, valence and dominance" in report and "| arousal" in report and "UAR" not in report


def test_evaluation_leaves_out_unrated_utterances_with_the_reason(dimensional_run, corpus):
    fold = json.loads(next((dimensional_run / "folds").iterdir()).joinpath("fold.json").read_text())
    unrated = next(u for u in corpus if str(u.path) == fold["test"][0])
    arousal = unrated.extra.pop("arousal")
    try:
        results = evaluate_run(dimensional_run, corpus)
    finally:
        unrated.extra["arousal"] = arousal
    assert "not rated" in dict(results.clean.skipped)[str(unrated.path)]
    assert results.clean.dimensional.count == len(fold["test"]) - 1


def test_predict_writes_the_dimensions_on_the_corpus_scale(dimensional_run, corpus, tmp_path):
    recognizer = EmotionRecognizer.from_pretrained(dimensional_run, precision="fp32")
    assert recognizer.classes == () and recognizer.dimensions == DIMENSIONS
    paths = [str(u.path) for u in corpus.utterances[:3]]
    predictions = recognizer.predict(paths, window_s=1.0)
    for p in predictions:
        assert p.label is None and p.probabilities == {} and p.error is None
        assert set(p.dimensions) == set(DIMENSIONS) and all(1 <= v <= 5 for v in p.dimensions.values())
        assert all(set(w.dimensions) == set(DIMENSIONS) for w in p.timeline)
    with pytest.raises(ValueError, match="no classes to choose among"):
        recognizer.predict(paths[:1], min_confidence=0.5)
    out = tmp_path / "rows.csv"
    assert main(["predict", "--run", str(dimensional_run), *paths, "--out", str(out), "--precision", "fp32",
                 "--window", "1.0", "--quiet"]) == 0
    rows = read_rows(out)
    assert [row["source"] for row in rows] == paths
    for row, p in zip(rows, predictions):
        assert "label" in row and "prob_happy" not in row
        assert_close(np.array([float(row[d]) for d in DIMENSIONS]), np.array([p.dimensions[d] for d in DIMENSIONS]),
                     atol=1e-4, msg="CSV against predict()")


@pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")
def test_the_onnx_graph_gives_the_dimensions_on_the_corpus_scale(dimensional_run, corpus, tmp_path, capsys):
    path = tmp_path / "model.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["export", "--run", str(dimensional_run), "--out", str(path)]) == 0
    assert "(waveform in; out: arousal, valence, dominance on 1-5)" in capsys.readouterr().out
    metadata = read_metadata(path)
    assert metadata["dimensions"] == list(DIMENSIONS) and metadata["dimension_scale"] == {"low": 1.0, "high": 5.0}
    assert list(metadata["outputs"]) == ["dimensions"] and metadata["classes"] == []
    session = ort.InferenceSession(str(path))
    assert [o.name for o in session.get_outputs()] == ["dimensions"]
    recognizer = EmotionRecognizer.from_pretrained(dimensional_run, precision="fp32")
    for utterance in corpus.utterances[:2]:
        wave = load_audio(utterance.path).astype(np.float32)
        (values,) = session.run(None, {"waveform": wave[None], "lengths": np.array([len(wave)], np.int64)})
        expected = recognizer.predict([str(utterance.path)], window_s=len(wave) / 16000 + 1)[0].dimensions
        assert_close(values[0], np.array([expected[d] for d in DIMENSIONS]), atol=1e-3, msg=str(utterance.path))


def test_a_categorical_model_starts_a_dimensional_one_with_its_encoder(tmp_path, caplog):
    source = model_of("dsnet", "categorical", seed=1)
    names = ("a", "b", "c", "d", "e")
    save_model(tmp_path / "source", source, TrainConfig(model="dsnet"), names)
    target = model_of("dsnet", "both", seed=2)
    started = warm_start(target, tmp_path / "source", names)
    reinitialised = {name for name, _ in started.reinitialised}
    assert reinitialised == {name for name in target.state_dict() if name.startswith("regressor.")}
    assert_close(target.encoder.blocks[0].main[0].weight, source.encoder.blocks[0].main[0].weight, atol=0.0)
    assert_close(target.classifier.net[-1].weight, source.classifier.net[-1].weight, atol=0.0,
                 msg="the class output layer of the same classes is kept")


def test_the_cli_trains_a_model_with_both_heads_on_a_given_scale(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--model", "baseline", "--corpus", "iemocap", "--root", str(corpus.root), "--target", "both",
                 "--dimension-scale", "0,10", "--epochs", "1", "--max-frames", "32", "--fold", "0",
                 "--protocol", "halves", "--precision", "fp32", "--out", str(out), "--quiet"]) == 0
    assert "best validation UAR" in capsys.readouterr().out
    _, config, classes = load_model(next((out / "folds").iterdir()))
    assert config.target == "both" and config.dimension_scale == (0.0, 10.0) and len(classes) == 4
    record = json.loads((next((out / "folds").iterdir()) / "metrics.jsonl").read_text().splitlines()[0])
    assert {"val_uar", "val_ccc", "val_ccc_arousal", "train_l_t", "train_l_d"} <= set(record)
    assert main(["train", "--model", "baseline", "--corpus", "iemocap", "--root", str(corpus.root),
                 "--dimension-scale", "1,5", "--out", str(tmp_path / "x")]) != 0
    assert "--dimension-scale is for --target dimensional or both" in capsys.readouterr().err


def test_a_dimensional_fold_needs_two_validation_utterances(corpus, tmp_path):
    from ser_fast.data.features import extract_features
    from ser_fast.training.cnn_task import FoldData, train_fold

    utterances = corpus.utterances[:5]
    table = extract_features(utterances, corpus.classes)
    data = FoldData.build(table, utterances[:4], utterances[4:], None)
    config = TrainConfig(model="baseline", target="dimensional", dimension_scale=(1, 5), epochs=1, max_frames=32)
    with pytest.raises(ValueError, match=r"1 validation utterance\(s\); the validation CCC .* needs at least 2"):
        train_fold(data, config, tmp_path / "run", classes=())


def test_across_corpora_the_dimensional_scores_are_the_mean_over_fold_models(corpus, tmp_path):
    run = tmp_path / "run"
    train_run(corpus, run, TrainConfig(model="baseline", target="dimensional", epochs=1, batch_size=16, max_frames=32,
                                       precision="fp32"), protocol="halves")
    other = load_corpus("iemocap", shutil.copytree(corpus.root, tmp_path / "copy"))  # another root: cross-corpus
    results = evaluate_run(run, other)
    scores = results.clean.dimensional
    assert results.cross_corpus and len(results.folds) == 2
    assert scores.count == len(other), "each utterance counts once, not once per fold model"
    assert results.as_dict()["dimension_scale"] == {"low": 1.0, "high": 5.0}


def test_the_mean_of_fold_scores_is_taken_per_dimension():
    rng = np.random.default_rng(0)
    targets = rng.uniform(1, 5, (20, 3))
    folds = [DimensionalScores.from_predictions(targets, targets + rng.normal(0, s, (20, 3)), DIMENSIONS)
             for s in (0.3, 1.0)]
    mean = DimensionalScores.mean_of(folds)
    assert_close(mean.ccc, (folds[0].ccc + folds[1].ccc) / 2, atol=1e-12)
    assert_close(mean.mae, (folds[0].mae + folds[1].mae) / 2, atol=1e-12)
    assert mean.count == 20
    with pytest.raises(ValueError, match="same dimensions and utterances"):
        DimensionalScores.mean_of([folds[0], DimensionalScores.from_predictions(targets[:5], targets[:5] + 1,
                                                                                  DIMENSIONS)])


def test_a_decision_built_directly_still_renormalises_its_classes():
    decision = Decision(("a",), (0,))
    assert_close(decision.probabilities(np.array([0.2, 0.8])), np.array([1.0]), atol=1e-12)


def test_evaluate_refuses_a_dimension_scale_for_a_categorical_run(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    train_run(corpus, run, TrainConfig(model="baseline", epochs=1, max_frames=32, precision="fp32"),
              protocol="halves", folds=[0])
    assert main(["evaluate", str(run), "--corpus", "iemocap", "--root", str(corpus.root),
                 "--dimension-scale", "1,5", "--quiet"]) != 0
    assert "--dimension-scale is for a run with a dimensional head" in capsys.readouterr().err
