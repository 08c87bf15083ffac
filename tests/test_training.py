"""Training: a killed run resumes to the same weights; neutral references are never training
samples; checkpoints are safetensors + JSON and replaced atomically; settings are checked."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from ser_fast.data.loaders import load_corpus
from ser_fast.data.protocols import loso_folds, neutral_references
from ser_fast.data.synthetic import synthesize_corpus
from ser_fast.training.checkpoint import latest_checkpoint
from ser_fast.training.config import TrainConfig
from ser_fast.training.features import extract_features
from ser_fast.training.run import load_fold_model, train_run
from ser_fast.training.trainer import FoldData, train_fold


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = synthesize_corpus(tmp_path_factory.mktemp("synth") / "corpus", speakers=4, per_class=3, seed=5)
    return load_corpus("iemocap", root)


@pytest.fixture(scope="module")
def table(corpus):
    return extract_features(corpus.utterances, corpus.classes)


def fold_data(corpus, table, model):
    fold = loso_folds(corpus)[0]
    references = neutral_references(corpus, seed=0) if model == "dsnet" else None
    return FoldData.build(table, fold.train, fold.validation, references)


def tiny_config(model, epochs):
    return TrainConfig(model=model, epochs=epochs, batch_size=8, max_frames=48, precision="fp32", seed=3)


@pytest.mark.parametrize("model", ["baseline", "dsnet"])
def test_resume_after_a_kill_reaches_the_same_weights(corpus, table, tmp_path, model):
    data = fold_data(corpus, table, model)
    train_fold(data, tiny_config(model, 3), tmp_path / "straight", classes=corpus.classes)

    class Killed(Exception):
        pass

    def kill_after_epoch_2(record):
        if record["epoch"] == 2:
            raise Killed

    with pytest.raises(Killed):
        train_fold(data, tiny_config(model, 3), tmp_path / "killed", classes=corpus.classes,
                   on_epoch_end=kill_after_epoch_2)
    with pytest.raises(ValueError, match="other settings"):
        train_fold(data, tiny_config(model, 4), tmp_path / "killed", classes=corpus.classes, resume=True)
    train_fold(data, tiny_config(model, 3), tmp_path / "killed", classes=corpus.classes, resume=True)
    straight = load_file(str(latest_checkpoint(tmp_path / "straight") / "model.safetensors"))
    resumed = load_file(str(latest_checkpoint(tmp_path / "killed") / "model.safetensors"))
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
    lines = (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]


def test_neutral_references_are_never_training_samples(corpus, table):
    data = fold_data(corpus, table, "dsnet")
    references = neutral_references(corpus, seed=0)
    reference_paths = {u.path for u in references.by_speaker.values()}
    train_paths = {table.utterances[i].path for i in data.train}
    assert not reference_paths & train_paths
    train_speakers = {table.utterances[i].speaker for i in data.train}
    assert train_speakers <= set(data.neutral_row)
    for speaker in train_speakers:
        reference = table.utterances[data.neutral_row[speaker]]
        assert reference.speaker == speaker and reference.label == "neutral"


def test_checkpoints_are_safetensors_and_json_and_only_the_latest_is_kept(corpus, table, tmp_path):
    train_fold(fold_data(corpus, table, "baseline"), tiny_config("baseline", 2), tmp_path, classes=corpus.classes)
    checkpoints = sorted(p.name for p in tmp_path.glob("checkpoint-*"))
    assert checkpoints == ["checkpoint-0002"]
    assert sorted(p.name for p in (tmp_path / "checkpoint-0002").iterdir()) == [
        "model.safetensors", "state.json", "state.safetensors"]
    assert json.loads((tmp_path / "latest.json").read_text()) == {"checkpoint": "checkpoint-0002", "epoch": 2}
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".checkpoint-*"))


def test_run_folder_and_fold_model_round_trip(corpus, table, tmp_path):
    results = train_run(corpus, tmp_path, tiny_config("dsnet", 1), folds=[1], table=table)
    run = json.loads((tmp_path / "run.json").read_text())
    (fold_name,) = results
    assert run["folds"] == [fold_name] and run["protocol"] == "loso"
    fold = json.loads((tmp_path / "folds" / fold_name / "fold.json").read_text())
    assert set(fold) == {"train", "validation", "test"} and fold["test"]
    model, config, classes = load_fold_model(tmp_path / "folds" / fold_name)
    assert config.model == "dsnet" and classes == corpus.classes and not model.training
    x, frames = table.batch([0, 1], 48)
    assert model(x, frames).shape == (2, 4)


@pytest.mark.parametrize("settings, pattern", [
    pytest.param({"model": "resnet"}, "expected one of", id="model"),
    pytest.param({"epochs": 0}, "epochs must be a positive int", id="epochs"),
    pytest.param({"precision": "fp8"}, "precision", id="precision"),
    pytest.param({"lr_factor": 1.5}, "lr_factor", id="lr-factor"),
])
def test_bad_settings_are_explained(settings, pattern):
    with pytest.raises(ValueError, match=pattern):
        TrainConfig(**settings)
    with pytest.raises(ValueError, match="unknown training settings"):
        TrainConfig.from_dict({"learning_rat": 0.1})


def test_missing_fold_model_is_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="is .* a trained fold"):
        load_fold_model(tmp_path)
