"""Named class sets: each corpus' own labels as published, and a model of another class count than four through
train → evaluate → predict → ONNX from the command line."""

from __future__ import annotations

import csv
import json

import numpy as np
import onnxruntime as ort
import pytest
from corpus_fixtures import make_crema_d_tree

from ser_fast.cli import main
from ser_fast.data.corpus import CLASS_SETS, class_names
from ser_fast.data.loaders import crema_d, emodb, load_corpus, msp_podcast, ravdess

ACTORS = {"1001": "Male", "1002": "Female", "1003": "Male", "1004": "Female"}


@pytest.mark.parametrize("name, labels", [
    ("ravdess8", ravdess.EMOTIONS.values()),
    ("crema-d6", crema_d.LABELS.values()),
    ("emodb7", emodb.LABELS.values()),
    ("msp-podcast8", [v for v in msp_podcast.LABELS.values() if v not in ("other", "no-agreement")]),
    ("msp-podcast10", msp_podcast.LABELS.values()),
], ids=lambda value: value if isinstance(value, str) else None)
def test_each_named_set_is_its_corpus_labels(name, labels):
    assert set(CLASS_SETS[name]) == set(labels) and len(CLASS_SETS[name]) == len(set(labels))
    assert class_names(name) == CLASS_SETS[name]


def test_an_unknown_set_names_the_known_ones():
    with pytest.raises(ValueError, match="crema-d6"):
        class_names("crema-d7")


def test_a_named_set_keeps_every_label_of_its_corpus(tmp_path):
    corpus = load_corpus("crema-d", make_crema_d_tree(tmp_path, actors=ACTORS), classes="crema-d6")
    assert corpus.classes == CLASS_SETS["crema-d6"] and not corpus.skipped
    assert {u.label for u in corpus} == set(CLASS_SETS["crema-d6"])


def test_a_six_class_model_goes_through_train_evaluate_predict_and_onnx(tmp_path, capsys):
    root = make_crema_d_tree(tmp_path, actors=ACTORS, seconds=0.6)
    run, files = tmp_path / "run", sorted((root / "AudioWAV").glob("1001_*.wav"))
    assert main(["train", "--model", "dsnet", "--corpus", "crema-d", "--root", str(root), "--classes", "crema-d6",
                 "--fold", "0", "--epochs", "1", "--max-frames", "48", "--precision", "fp32", "--out", str(run),
                 "--quiet"]) == 0
    assert json.loads((run / "run.json").read_text())["classes"] == list(CLASS_SETS["crema-d6"])
    assert main(["evaluate", str(run), "--corpus", "crema-d", "--root", str(root), "--out", str(tmp_path / "eval"),
                 "--quiet"]) == 0
    scores = json.loads((tmp_path / "eval" / "results.json").read_text())["runs"][0]["conditions"][0]["pooled"]
    assert scores["classes"] == list(CLASS_SETS["crema-d6"]) and np.array(scores["confusion"]).shape == (6, 6)
    assert main(["predict", "--run", str(run), "--out", str(tmp_path / "labels.csv"), *map(str, files),
                 "--quiet"]) == 0
    with (tmp_path / "labels.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(files) and all(row["label"] in CLASS_SETS["crema-d6"] for row in rows)
    assert {f"prob_{c}" for c in CLASS_SETS["crema-d6"]} <= set(rows[0])
    assert main(["export", "--run", str(run), "--out", str(tmp_path / "m.onnx")]) == 0
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    meta = json.loads(session.get_modelmeta().custom_metadata_map["ser_fast.classes"])
    wave = np.zeros((1, 9600), np.float32)
    wave[0] = 0.1 * np.random.default_rng(0).standard_normal(9600)
    probabilities = session.run(None, {"waveform": wave, "lengths": np.array([9600])})[0]
    assert meta == list(CLASS_SETS["crema-d6"]) and probabilities.shape == (1, 6)
    assert probabilities.sum() == pytest.approx(1.0, abs=1e-5)
    capsys.readouterr()


def test_evaluate_refuses_other_classes_than_the_runs(tmp_path, capsys):
    root = make_crema_d_tree(tmp_path, actors=ACTORS, seconds=0.6)
    assert main(["train", "--model", "baseline", "--corpus", "crema-d", "--root", str(root), "--classes",
                 "crema-d6", "--fold", "0", "--epochs", "1", "--max-frames", "48", "--precision", "fp32", "--out",
                 str(tmp_path / "run"), "--quiet"]) == 0
    assert main(["evaluate", str(tmp_path / "run"), "--corpus", "crema-d", "--root", str(root), "--classes",
                 "4class", "--quiet"]) != 0
    assert "load it with the run's classes" in capsys.readouterr().err
