"""Warm starts: ``--init`` copies every tensor of the same name and shape from a trained model (saved by the test),
re-initialises the rest and says which; ``--freeze encoder`` keeps the encoder exactly; models of other inputs are
refused; Sparse MERIT takes a Hugging Face audio-classification folder's SSL part as its backbone."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from corpus_fixtures import make_crema_d_tree
from helpers import assert_close

from ser_fast.cli import build_parser, main, train_config
from ser_fast.data.loaders import load_corpus
from ser_fast.data.synthetic import synthesize_corpus
from ser_fast.models.merit.model import MeritConfig
from ser_fast.models.merit.ssl import SSLFeatures
from ser_fast.runs.config import MeritTrainConfig, TrainConfig
from ser_fast.runs.model_files import ModelFileError
from ser_fast.runs.registry import model_kind
from ser_fast.runs.saved import load_model, save_model
from ser_fast.runs.warm_start import check_source, warm_start

CLASSES4 = ("neutral", "happy", "sad", "angry")
SMALL_MERIT = {"expert_hidden": 16, "expert_dim": 8, "ser_hidden": 8, "se_hidden": 8}


def saved(folder, kind: str, classes=CLASSES4, seed: int = 1, **settings):
    config = MeritTrainConfig(network=MeritConfig(**SMALL_MERIT), **settings) if kind == "merit" else \
        TrainConfig(model=kind, max_frames=32, **settings)
    torch.manual_seed(seed)
    model = model_kind(kind).build(config, len(classes)).eval()
    save_model(folder, model, config, classes)
    return folder, model


def fresh(kind: str, num_classes: int = 4, seed: int = 7):
    config = MeritTrainConfig(network=MeritConfig(**SMALL_MERIT)) if kind == "merit" else TrainConfig(model=kind)
    torch.manual_seed(seed)
    return model_kind(kind).build(config, num_classes)


@pytest.mark.parametrize("kind", ["baseline", "dsnet", "edrl-mea", "merit"])
def test_the_same_network_is_copied_whole(tmp_path, kind):
    folder, source = saved(tmp_path / "m", kind)
    target = fresh(kind)
    result = warm_start(target, folder, CLASSES4)
    assert not result.reinitialised and result.source_kind == kind
    for name, tensor in target.state_dict().items():
        assert torch.equal(tensor, source.state_dict()[name]), name


@pytest.mark.parametrize("kind", ["dsnet", "merit"])
def test_another_class_set_reinitialises_only_the_output_layer(tmp_path, kind, caplog):
    folder, source = saved(tmp_path / "m", kind)
    target = fresh(kind, num_classes=6)
    before = {n: t.clone() for n, t in target.state_dict().items()}
    with caplog.at_level(logging.INFO, logger="ser_fast"):
        result = warm_start(target, folder, (*CLASSES4, "fearful", "disgusted"))
    changed = {name for name, _ in result.reinitialised}
    assert changed and all(name.rsplit(".", 1)[-1] in ("weight", "bias") for name in changed)
    assert len(changed) == 2, "the last Linear's weight and bias"
    for name, tensor in target.state_dict().items():
        expected = before[name] if name in changed else source.state_dict()[name]
        assert torch.equal(tensor, expected), name
    assert "re-initialised 2" in caplog.text and all(name in caplog.text for name in changed)


def test_a_baseline_gives_dsnet_its_encoder(tmp_path):
    folder, source = saved(tmp_path / "m", "baseline")
    result = warm_start(target := fresh("dsnet"), folder, CLASSES4)
    assert all(name.startswith(("encoder.", "classifier.")) for name in result.kept)
    assert any(name.startswith("p_er.") for name, _ in result.reinitialised)
    for name, tensor in target.encoder.state_dict().items():
        assert torch.equal(tensor, source.encoder.state_dict()[name]), name


def test_a_model_of_other_inputs_is_refused(tmp_path):
    folder, _ = saved(tmp_path / "m", "merit")
    with pytest.raises(ValueError, match="reads waveform, this run's baseline reads features"):
        warm_start(fresh("baseline"), folder, CLASSES4)
    with pytest.raises(ValueError, match="reads waveform"):
        check_source(folder, "dsnet")


def test_a_folder_without_a_model_is_refused(tmp_path):
    with pytest.raises(ModelFileError, match="no such folder"):
        warm_start(fresh("baseline"), tmp_path / "nowhere", CLASSES4)


@pytest.mark.parametrize("kind", ["baseline", "merit"])
def test_the_same_classes_in_another_order_are_permuted(tmp_path, kind):
    folder, source = saved(tmp_path / "m", kind)
    order = ("sad", "neutral", "angry", "happy")
    target = fresh(kind)
    result = warm_start(target, folder, order)
    assert not result.reinitialised
    index = [CLASSES4.index(c) for c in order]
    outputs = [n for n in target.state_dict() if n.startswith(("classifier.net.", "heads.ser_head.classifier."))
               and target.state_dict()[n].shape[:1] == (4,)]
    assert outputs
    for name in outputs:
        assert torch.equal(target.state_dict()[name], source.state_dict()[name][index]), name


def test_another_class_set_of_the_same_size_is_not_copied_row_for_row(tmp_path):
    folder, source = saved(tmp_path / "m", "baseline")
    target = fresh("baseline")
    before = target.classifier.net[4].weight.clone()
    result = warm_start(target, folder, ("neutral", "happy", "sad", "fearful"))
    assert [(name, "another class set" in reason) for name, reason in result.reinitialised] == [
        ("classifier.net.4.weight", True), ("classifier.net.4.bias", True)]
    assert torch.equal(target.classifier.net[4].weight, before)
    assert torch.equal(target.classifier.net[0].weight, source.classifier.net[0].weight)


@pytest.mark.parametrize("settings, match", [
    ({"encoder_lr_scale": 0.0}, "encoder_lr_scale must be in"),
    ({"encoder_lr_scale": 2.0}, "encoder_lr_scale must be in"),
    ({"encoder_lr_scale": True}, "encoder_lr_scale must be in"),
    ({"freeze_encoder": "yes"}, "freeze_encoder must be a bool"),
    ({"init": 3}, "init must be a path"),
    ({"freeze_encoder": True}, "freeze_encoder needs init"),
], ids=["lr-scale-zero", "lr-scale-above-one", "lr-scale-bool", "freeze-str", "init-int", "freeze-without-init"])
def test_bad_warm_start_settings_are_rejected_when_the_config_is_built(settings, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(model="baseline", **settings)


def test_cli_fine_tunes_a_four_class_model_on_six_classes_with_the_encoder_frozen(tmp_path, capsys):
    source_run = tmp_path / "source"
    corpus_root = synthesize_corpus(tmp_path / "synth", speakers=4, per_class=2, seed=2)
    assert main(["train", "--model", "baseline", "--corpus", "iemocap", "--root", str(corpus_root), "--fold", "0",
                 "--epochs", "1", "--max-frames", "48", "--precision", "fp32", "--out", str(source_run),
                 "--quiet"]) == 0
    target_root = make_crema_d_tree(tmp_path, actors={"1001": "Male", "1002": "Female", "1003": "Male"},
                                    seconds=0.6)
    run = tmp_path / "six"
    assert main(["train", "--model", "baseline", "--corpus", "crema-d", "--root", str(target_root), "--classes",
                 "crema-d6", "--fold", "0", "--epochs", "2", "--max-frames", "48", "--precision", "fp32",
                 "--init", str(source_run), "--freeze", "encoder", "--out", str(run), "--quiet"]) == 0
    fold = run / "folds" / json.loads((run / "run.json").read_text())["folds"][0]
    tuned, config, classes = load_model(fold)
    original, _, _ = load_model(source_run / "folds" / json.loads((source_run / "run.json").read_text())["folds"][0])
    assert classes == tuple(load_corpus("crema-d", target_root, classes="crema-d6").classes)
    assert config.init == str(source_run.absolute()) and config.freeze_encoder
    for name, tensor in tuned.encoder.state_dict().items():
        assert torch.equal(tensor, original.encoder.state_dict()[name]), f"frozen {name} (BatchNorm statistics too)"
    assert not torch.equal(tuned.classifier.net[0].weight, original.classifier.net[0].weight)
    # A resumed run has its weights in its checkpoint: the source may be gone.
    source_run.rename(tmp_path / "moved")
    assert main(["train", "--model", "baseline", "--corpus", "crema-d", "--root", str(target_root), "--classes",
                 "crema-d6", "--fold", "0", "--epochs", "2", "--max-frames", "48", "--precision", "fp32",
                 "--init", str(source_run), "--freeze", "encoder", "--out", str(run), "--quiet", "--resume"]) == 0
    capsys.readouterr()


def test_cli_refuses_freezing_merit_and_slows_its_ssl_model_instead(tmp_path, capsys):
    assert main(["train", "--model", "merit", "--corpus", "iemocap", "--root", str(tmp_path), "--freeze", "encoder",
                 "--out", str(tmp_path / "r")]) != 0
    assert "--freeze encoder is for the CNN models" in capsys.readouterr().err
    args = build_parser().parse_args(["train", "--model", "merit", "--corpus", "iemocap", "--root", str(tmp_path),
                                      "--encoder-lr-scale", "0.25", "--out", str(tmp_path / "r")])
    config = train_config(args)
    assert config.ssl_learning_rate == pytest.approx(0.25 * config.head_lr)
    args.encoder_lr_scale = 1.5
    with pytest.raises(ValueError, match="encoder-lr-scale must be in"):
        train_config(args)


def test_merit_takes_the_ssl_part_of_a_hugging_face_audio_classifier(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.WavLMConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                      intermediate_size=64, conv_dim=(16, 16), conv_kernel=(10, 3),
                                      conv_stride=(5, 2), num_conv_pos_embeddings=16,
                                      num_conv_pos_embedding_groups=2, num_labels=3, feat_extract_norm="layer",
                                      do_stable_layer_norm=True)
    torch.manual_seed(0)
    classifier = transformers.WavLMForSequenceClassification(config).eval()
    classifier.save_pretrained(tmp_path / "hf")
    features = SSLFeatures.from_pretrained(tmp_path / "hf")
    assert type(features.backbone).__name__ == "WavLMModel"
    theirs = classifier.wavlm.state_dict()
    for name, tensor in features.backbone.state_dict().items():
        assert_close(tensor, theirs[name], atol=0, msg=name)
