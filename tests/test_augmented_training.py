"""Augmented training of the CNN models: each batch's features come from its utterances' augmented audio, seeded by
epoch and row, so a killed run resumes to the weights of an uninterrupted one; validation stays clean; the settings
are checked before training starts, from the API and the CLI."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import Killed, assert_close, kill_after
from safetensors.torch import load_file

from ser_fast.cli import build_parser, main, train_config
from ser_fast.data.audio import load_audio
from ser_fast.data.augmentation import AugmentConfig, Augmenter, RoomPool
from ser_fast.data.features import augmented_batch, extract_features
from ser_fast.data.loaders import load_corpus
from ser_fast.data.protocols import loso_folds, neutral_references
from ser_fast.data.synthetic import synthesize_corpus
from ser_fast.frontend.module import fit_frames
from ser_fast.frontend.recipe import model_features, model_frontend
from ser_fast.runs.checkpoint import latest_checkpoint
from ser_fast.runs.config import MeritTrainConfig, TrainConfig
from ser_fast.training.cnn_task import FoldData, train_fold

# Short rooms keep the simulated pool quick (0.1-0.3 s RT60: about 0.1 s per room).
FAST_ROOMS = {"rt60_s": (0.15, 0.25)}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = synthesize_corpus(tmp_path_factory.mktemp("synth") / "corpus", speakers=4, per_class=3, seed=7)
    return load_corpus("iemocap", root)


@pytest.fixture(scope="module")
def table(corpus):
    return extract_features(corpus.utterances, corpus.classes)


def augmented(model: str, epochs: int, kinds=("noise", "reverb", "band", "speed")) -> TrainConfig:
    augment = AugmentConfig(kinds=kinds, noise_p=0.8, reverb_p=0.8, gain_p=0.8, band_p=0.5, speed_p=0.5,
                            **FAST_ROOMS)
    return TrainConfig(model=model, epochs=epochs, batch_size=8, max_frames=48, precision="fp32", seed=2,
                       augment=augment)


def fold_data(corpus, table, model):
    fold = loso_folds(corpus)[0]
    references = neutral_references(corpus, seed=0) if model == "dsnet" else None
    return FoldData.build(table, fold.train, fold.validation, references)


@pytest.mark.parametrize("rows", [[0], [1, 2, 5], list(range(9))], ids=["one", "three", "nine"])
def test_a_batch_is_the_features_of_the_augmented_audio(table, rows):
    augmenter = Augmenter(AugmentConfig(kinds=("noise", "speed"), noise_p=1.0, speed_p=1.0), seed=0)
    frontend = model_frontend()
    x, frames = augmented_batch(table.utterances, rows, augmenter, 4, 48, frontend)
    waves = [augmenter(load_audio(table.utterances[r].path), 4, r) for r in rows]
    expected, count = model_features(waves, frontend)
    assert_close(x, fit_frames(expected, count, 48), atol=0)
    assert torch.equal(frames, count.clamp(max=48))
    clean, _ = table.batch(rows, 48)
    assert x.shape == clean.shape and not torch.equal(x, clean)


@pytest.mark.parametrize("model", ["baseline", "dsnet"])
def test_an_augmented_run_resumes_to_the_same_weights(corpus, table, tmp_path, model):
    data = fold_data(corpus, table, model)
    train_fold(data, augmented(model, 2), tmp_path / "straight", classes=corpus.classes)

    with pytest.raises(Killed):
        train_fold(data, augmented(model, 2), tmp_path / "killed", classes=corpus.classes,
                   on_epoch_end=kill_after(1))
    train_fold(data, augmented(model, 2), tmp_path / "killed", classes=corpus.classes, resume=True)
    straight = load_file(str(latest_checkpoint(tmp_path / "straight") / "model.safetensors"))
    resumed = load_file(str(latest_checkpoint(tmp_path / "killed") / "model.safetensors"))
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key


def test_augmentation_changes_training_and_is_saved_with_the_model(corpus, table, tmp_path):
    data = fold_data(corpus, table, "baseline")
    clean = TrainConfig(model="baseline", epochs=1, batch_size=8, max_frames=48, precision="fp32", seed=2)
    train_fold(data, clean, tmp_path / "clean", classes=corpus.classes)
    train_fold(data, augmented("baseline", 1, kinds=("noise",)), tmp_path / "noisy", classes=corpus.classes)
    clean_record, noisy_record = (json.loads((tmp_path / name / "metrics.jsonl").read_text().splitlines()[0])
                                  for name in ("clean", "noisy"))
    assert clean_record["train_total"] != noisy_record["train_total"]
    saved = json.loads((tmp_path / "noisy" / "config.json").read_text())["settings"]
    assert TrainConfig.from_dict(saved).augment.kinds == ("noise",)


def test_saved_configs_without_augmentation_read_as_clean():
    values = TrainConfig(model="baseline").to_dict()
    del values["augment"]
    assert not TrainConfig.from_dict(values).augment


def test_a_bad_augmentation_setting_fails_when_the_config_is_built():
    with pytest.raises(ValueError, match="snr_db must satisfy"):
        TrainConfig(model="dsnet", augment={"kinds": ["noise"], "snr_db": [0, 100]})
    with pytest.raises(ValueError, match="augment must be an AugmentConfig"):
        TrainConfig(model="dsnet", augment="noise")


def _train(corpus, tmp_path, *more) -> list[str]:
    return ["train", "--model", "baseline", "--corpus", "iemocap", "--root", str(corpus.root), "--fold", "0",
            "--epochs", "1", "--batch-size", "8", "--max-frames", "48", "--precision", "fp32", "--quiet",
            "--out", str(tmp_path / "run"), *more]


def test_the_cli_trains_with_recorded_rooms_and_a_config_file(corpus, tmp_path):
    rirs = tmp_path / "rirs"
    rirs.mkdir()
    sf.write(rirs / "room.wav", np.r_[1.0, 0.3 * np.exp(-np.arange(800) / 150.0)], 16000)
    settings = tmp_path / "augment.json"
    settings.write_text(json.dumps({"reverb_p": 1.0, "codec_cutoff_hz": [3000, 4000]}))
    assert main(_train(corpus, tmp_path, "--augment", "reverb,band", "--augment-config", str(settings),
                       "--rir-dir", str(rirs))) == 0
    config = json.loads(next((tmp_path / "run").rglob("config.json")).read_text())
    augment = config["settings"]["augment"]
    assert augment["kinds"] == ["reverb", "band"] and augment["reverb_p"] == 1.0
    assert augment["codec_cutoff_hz"] == [3000.0, 4000.0] and augment["rir_dir"] == str(rirs.absolute())
    assert len(RoomPool.from_dir(augment["rir_dir"])) == 1


@pytest.mark.parametrize("more,message", [
    (["--augment", "noise,echo"], r"unknown kinds \['echo'\]"),
    (["--augment", "gain", "--rir-dir", "."], "--rir-dir is for the reverb augmentation"),
    (["--augment", "reverb", "--rir-dir", "no-such-folder"], "no such folder"),
    (["--augment", "noise", "--model", "merit"], "training mixtures add the noise"),
    (["--augment", "noise,gain"], "gain is for Sparse MERIT"),
    (["--noise-dir", "."], "--noise-dir is for the noise augmentation"),
], ids=["unknown-kind", "rir-without-reverb", "missing-rir-folder", "merit-noise", "cnn-gain", "noise-dir-unused"])
def test_bad_augmentation_options_are_explained_before_training(corpus, tmp_path, capsys, more, message):
    assert main(_train(corpus, tmp_path, *more)) != 0
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").rglob("metrics.jsonl"))


def test_reverb_without_pyroomacoustics_is_explained_before_training(corpus, tmp_path, capsys, monkeypatch):
    import ser_fast.data.augmentation.augmenter as augmenter
    import ser_fast.data.augmentation.rooms as rooms

    for module in (rooms, augmenter):
        monkeypatch.setattr(module, "rooms_simulable", lambda: False)
    assert main(_train(corpus, tmp_path, "--augment", "reverb")) != 0
    assert "pip install 'ser_fast[augment]'" in capsys.readouterr().err
    with pytest.raises(ImportError, match="pyroomacoustics"):
        Augmenter.from_config(AugmentConfig(kinds=("reverb",)), seed=0)


def test_a_config_file_without_augmentations_is_explained(corpus, tmp_path, capsys):
    settings = tmp_path / "augment.json"
    settings.write_text(json.dumps({"snr_db": [0, 10]}))
    assert main(_train(corpus, tmp_path, "--augment-config", str(settings))) != 0
    assert "names no augmentation" in capsys.readouterr().err


def test_a_bad_augment_config_file_is_explained(corpus, tmp_path, capsys):
    settings = tmp_path / "augment.json"
    settings.write_text("[1, 2]")
    assert main(_train(corpus, tmp_path, "--augment", "noise", "--augment-config", str(settings))) != 0
    assert "expected a JSON object" in capsys.readouterr().err


def test_merit_s_config_takes_the_augmentations_but_noise(tmp_path):
    args = build_parser().parse_args(["train", "--model", "merit", "--corpus", "iemocap", "--root", str(tmp_path),
                                      "--augment", "reverb,speed", "--out", str(tmp_path / "r")])
    config = train_config(args)
    assert isinstance(config, MeritTrainConfig) and config.augment.kinds == ("reverb", "speed")
