"""Training: a killed run resumes to the same weights; neutral references are never training
samples; checkpoints are safetensors + JSON and replaced atomically; settings are checked."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import Killed, kill_after
from safetensors.torch import load_file

from ser_fast.data.features import extract_features
from ser_fast.data.loaders import load_corpus
from ser_fast.data.protocols import loso_folds, neutral_references
from ser_fast.data.synthetic import synthesize_corpus
from ser_fast.runs.checkpoint import CheckpointError, latest_checkpoint
from ser_fast.runs.config import TrainConfig
from ser_fast.runs.model_files import file_sha256
from ser_fast.runs.saved import load_model
from ser_fast.training.cnn_task import FoldData, train_fold
from ser_fast.training.loop import NonFiniteTrainingError
from ser_fast.training.run import train_run


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

    with pytest.raises(Killed):
        train_fold(data, tiny_config(model, 3), tmp_path / "killed", classes=corpus.classes,
                   on_epoch_end=kill_after(2))
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
    assert json.loads((tmp_path / "latest.json").read_text()) == {
        "checkpoint": "checkpoint-0002", "epoch": 2,
        "state_sha256": file_sha256(tmp_path / "checkpoint-0002" / "state.json")}
    state = json.loads((tmp_path / "checkpoint-0002" / "state.json").read_text())
    assert state["sha256"] == {name: file_sha256(tmp_path / "checkpoint-0002" / name)
                               for name in ("model.safetensors", "state.safetensors")}
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".checkpoint-*"))


def test_run_folder_and_fold_model_round_trip(corpus, table, tmp_path):
    results = train_run(corpus, tmp_path, tiny_config("dsnet", 1), folds=[1], table=table)
    run = json.loads((tmp_path / "run.json").read_text())
    (fold_name,) = results
    assert run["folds"] == [fold_name] and run["protocol"] == "loso"
    fold = json.loads((tmp_path / "folds" / fold_name / "fold.json").read_text())
    assert set(fold) == {"train", "validation", "test"} and fold["test"]
    model, config, classes = load_model(tmp_path / "folds" / fold_name)
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
        load_model(tmp_path)


def test_a_diverging_run_stops_naming_the_epoch_and_term_and_saves_nothing(corpus, table, tmp_path):
    """--learning-rate 1e30: the first step blows the weights up, the second step's loss is not finite."""
    config = TrainConfig(model="dsnet", epochs=2, batch_size=8, max_frames=48, precision="fp32", seed=3,
                         learning_rate=1e30)
    with pytest.raises(NonFiniteTrainingError, match=r"training diverged: (loss term l_\w+ is \w+ at epoch 1, step \d+"
                                                     r"|weight \S+ holds NaN or infinite values after epoch 1)"):
        train_fold(fold_data(corpus, table, "dsnet"), config, tmp_path / "run", classes=corpus.classes)
    assert latest_checkpoint(tmp_path / "run") is None
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_a_loss_that_turns_nan_keeps_the_last_finite_checkpoint(corpus, table, tmp_path, monkeypatch):
    from ser_fast.models import targets as baseline_module  # the Baseline's objective, through target_losses

    poisoned = {"on": False}
    real_loss = baseline_module.classification_loss

    def loss(logits, labels):
        value = real_loss(logits, labels)
        return value * float("nan") if poisoned["on"] else value

    monkeypatch.setattr(baseline_module, "classification_loss", loss)

    def poison_after_epoch_1(record):
        poisoned["on"] = record["epoch"] == 1

    run = tmp_path / "run"
    with pytest.raises(NonFiniteTrainingError, match="loss term l_t is nan at epoch 2, step 1"):
        train_fold(fold_data(corpus, table, "baseline"), tiny_config("baseline", 3), run, classes=corpus.classes,
                   on_epoch_end=poison_after_epoch_1)
    assert latest_checkpoint(run).name == "checkpoint-0001"
    assert [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1]
    saved = load_file(str(run / "model.safetensors"))
    assert all(bool(torch.isfinite(t).all()) for t in saved.values() if t.is_floating_point())


@pytest.fixture(scope="module")
def killed_run(corpus, table, tmp_path_factory):
    """A baseline run of 3 epochs killed after epoch 2 (its checkpoint is on disk)."""
    run = tmp_path_factory.mktemp("killed") / "run"
    with pytest.raises(Killed):
        train_fold(fold_data(corpus, table, "baseline"), tiny_config("baseline", 3), run, classes=corpus.classes,
                   on_epoch_end=kill_after(2))
    return run


@pytest.fixture
def run_copy(killed_run, tmp_path):
    return Path(shutil.copytree(killed_run, tmp_path / "run"))


def resume(corpus, table, run):
    return train_fold(fold_data(corpus, table, "baseline"), tiny_config("baseline", 3), run, classes=corpus.classes,
                      resume=True)


def test_a_kill_between_the_metrics_line_and_the_checkpoint_leaves_no_duplicate_line(corpus, table, run_copy):
    metrics = run_copy / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    # Epoch 3's line was written, then the kill came before its checkpoint (and a torn line after it).
    metrics.write_text("\n".join([*lines, json.dumps({**json.loads(lines[-1]), "epoch": 3}), '{"epo']) + "\n")
    resume(corpus, table, run_copy)
    assert [json.loads(line)["epoch"] for line in metrics.read_text().splitlines()] == [1, 2, 3]


def set_pointer(run, **values):
    pointer = json.loads((run / "latest.json").read_text())
    (run / "latest.json").write_text(json.dumps({**pointer, **values}))


def checkpoint_file(run, name):
    return run / "checkpoint-0002" / name


def flip_last_bytes(path):
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x10
    path.write_bytes(bytes(data))


CHECKPOINT_BREAKAGES = [
    pytest.param(lambda r: flip_last_bytes(checkpoint_file(r, "model.safetensors")), "model.safetensors",
                 "SHA-256 differs", id="weights-bit-flip"),
    pytest.param(lambda r: flip_last_bytes(checkpoint_file(r, "state.safetensors")), "state.safetensors",
                 "SHA-256 differs", id="optimizer-bit-flip"),
    pytest.param(lambda r: checkpoint_file(r, "model.safetensors").write_bytes(
        checkpoint_file(r, "model.safetensors").read_bytes()[:100]), "model.safetensors", "truncated",
        id="weights-truncated"),
    pytest.param(lambda r: checkpoint_file(r, "model.safetensors").write_bytes(b""), "model.safetensors",
                 "not a safetensors file", id="weights-empty"),
    pytest.param(lambda r: checkpoint_file(r, "model.safetensors").write_bytes(pickle.dumps({"w": 1})),
                 "model.safetensors", "pickle", id="weights-pickled"),
    pytest.param(lambda r: checkpoint_file(r, "state.json").write_text("{garbage"), "state.json",
                 "SHA-256 differs", id="state-json-garbage"),
    pytest.param(lambda r: shutil.rmtree(r / "checkpoint-0002"), "latest.json", "does not exist",
                 id="checkpoint-missing"),
    pytest.param(lambda r: set_pointer(r, checkpoint="../other/checkpoint-0002"), "latest.json",
                 "must name a folder checkpoint-NNNN of this run", id="pointer-leaves-the-run"),
    pytest.param(lambda r: set_pointer(r, checkpoint="/tmp/checkpoint-0002"), "latest.json",
                 "must name a folder checkpoint-NNNN of this run", id="pointer-absolute"),
    pytest.param(lambda r: set_pointer(r, epoch=99), "state.json", "records epoch 2", id="pointer-epoch-99"),
    pytest.param(lambda r: (r / "latest.json").write_text("[1]"), "latest.json", "expected a JSON object",
                 id="pointer-not-an-object"),
    pytest.param(lambda r: (r / "latest.json").write_text(json.dumps({"checkpoint": "checkpoint-0002", "epoch": 2})),
                 "latest.json", "no state_sha256 for checkpoint-0002", id="pointer-without-state-checksum"),
]


@pytest.mark.parametrize("break_run, file, pattern", CHECKPOINT_BREAKAGES)
def test_a_broken_checkpoint_is_refused_naming_the_file(corpus, table, run_copy, break_run, file, pattern):
    break_run(run_copy)
    with pytest.raises(CheckpointError, match=pattern) as error:
        resume(corpus, table, run_copy)
    assert file in str(error.value) and str(run_copy) in str(error.value)


def test_garbage_state_json_with_a_matching_pointer_is_refused_naming_it(corpus, table, run_copy):
    checkpoint_file(run_copy, "state.json").write_text("{garbage")
    set_pointer(run_copy, state_sha256=file_sha256(checkpoint_file(run_copy, "state.json")))
    with pytest.raises(CheckpointError, match=r"state.json: not readable JSON"):
        resume(corpus, table, run_copy)


def test_resume_of_an_intact_run_after_these_checks_finishes_it(corpus, table, run_copy):
    resume(corpus, table, run_copy)
    assert latest_checkpoint(run_copy).name == "checkpoint-0003"


@pytest.mark.parametrize(("forms", "alive"), [
    pytest.param({}, True, id="default-forms"),
    pytest.param({"projector_relu": True, "calibration": "softmax"}, False, id="paper-relu-and-raw-softmax"),
])
def test_dsnet_training_keeps_both_subspaces_alive_and_reports_them(corpus, table, tmp_path, caplog, forms, alive):
    """Issue 17: each epoch's metrics line carries the dead share of z_er and z_ei on the validation utterances, a
    branch past half dead is warned about, and with ser_fast's forms of eqs. 2 and 8 neither branch dies."""
    config = TrainConfig(model="dsnet", epochs=4, batch_size=8, max_frames=48, precision="fp32", seed=3, **forms)
    with caplog.at_level("WARNING", logger="ser_fast.runs.disentanglement"):
        train_fold(fold_data(corpus, table, "dsnet"), config, tmp_path, classes=corpus.classes)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    dead = [(line["val_dead_z_er"], line["val_dead_z_ei"]) for line in lines]
    assert all(0.0 <= fraction <= 1.0 for pair in dead for fraction in pair)
    assert (max(dead[-1]) <= 0.25) is alive, dead
    assert len(caplog.records) == sum(fraction > 0.5 for pair in dead for fraction in pair)


def test_saved_dsnet_settings_without_the_forms_read_as_the_model_was_trained():
    before_issue_17 = {k: v for k, v in TrainConfig().to_dict().items() if k not in ("projector_relu", "calibration")}
    config = TrainConfig.from_dict(before_issue_17)
    assert (config.projector_relu, config.calibration) == (True, "softmax")
    assert TrainConfig.from_dict(TrainConfig().to_dict()) == TrainConfig()
    # What resume compares: a Baseline run saved before the fields existed is the same run as one started now.
    baseline = {k: v for k, v in TrainConfig(model="baseline").to_dict().items()
                if k not in ("projector_relu", "calibration")}
    assert TrainConfig.from_dict(baseline) == TrainConfig.from_dict(TrainConfig(model="baseline").to_dict())
    with pytest.raises(ValueError, match="calibration"):
        TrainConfig(calibration="cosine")


@pytest.mark.parametrize("model, batch_size", [("dsnet", 11), ("dsnet", 5), ("baseline", 7), ("edrl-mea", 11)],
                         ids=["dsnet-last-row-joined", "dsnet-batches-of-5", "baseline", "edrl-mea"])
def test_each_training_term_is_logged_on_the_validation_utterances_too(corpus, table, tmp_path, model, batch_size):
    """The loss curves of the DSNet paper's Fig. 2: every train_<term> has its val_loss_<term>, finite, computed in
    batches of the training size; 12 validation rows in batches of 11 leave one row, which joins the batch before
    (L_o needs two)."""
    config = TrainConfig(model=model, epochs=1, batch_size=batch_size, max_frames=32, precision="fp32", seed=1)
    data = fold_data(corpus, table, model)
    assert len(data.validation) == 12
    train_fold(data, config, tmp_path, classes=corpus.classes)
    (line,) = [json.loads(text) for text in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    terms = [key.removeprefix("train_") for key in line if key.startswith("train_")]
    assert terms and all(np.isfinite(line[f"val_loss_{term}"]) for term in terms), line
