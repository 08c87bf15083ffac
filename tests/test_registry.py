"""The model registry and the trained-model layer: every kind is registered once, builds a model
with ``encode`` / ``head``, and saves and loads through the one ``save_model`` / ``load_model``."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from helpers import assert_close

from ser_fast.models.merit import MeritConfig
from ser_fast.runs import (
    MeritTrainConfig,
    ModelFileError,
    TrainConfig,
    kind_names,
    kind_of_config,
    kind_of_model,
    load_model,
    model_folder,
    model_kind,
    save_model,
)
from ser_fast.runs.registry import FEATURES, WAVEFORM, ModelKind, register

NUM_CLASSES = 3  # odd, and not the paper's 4
CONFIGS = {
    "baseline": TrainConfig(model="baseline"),
    "dsnet": TrainConfig(model="dsnet"),
    "edrl-mea": TrainConfig(model="edrl-mea", n_components=4),
    "merit": MeritTrainConfig(network=MeritConfig(num_experts=2, expert_hidden=32, expert_dim=16, ser_hidden=16,
                                                  se_hidden=16)),
}


def _inputs(kind: ModelKind, batch: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(5)
    if kind.input == FEATURES:
        return torch.randn(batch, 3, 37, 80, generator=generator), torch.tensor([37, 20, 17])
    return 0.1 * torch.randn(batch, 8000, generator=generator), torch.tensor([8000, 5001, 4000])


def test_the_kinds_are_listed_once_in_the_registry():
    assert kind_names() == ("baseline", "dsnet", "edrl-mea", "merit")
    assert {model_kind(name).input for name in kind_names()} == {FEATURES, WAVEFORM}


@pytest.mark.parametrize("name", list(CONFIGS), ids=list(CONFIGS))
def test_every_kind_builds_a_model_whose_head_reads_its_encoding(name):
    kind = model_kind(name)
    assert kind_of_config(CONFIGS[name]) is kind
    torch.manual_seed(0)
    model = kind.build(CONFIGS[name], NUM_CLASSES).eval()
    assert kind_of_model(model) is kind
    x, lengths = _inputs(kind)
    with torch.no_grad():
        logits, embedding = model.head(model.encode(x, lengths))
        forward = model(x, lengths)
    assert logits.shape == (3, NUM_CLASSES) and embedding.shape[0] == 3
    assert_close(logits, forward if kind.input == FEATURES else forward.logits, atol=1e-6, msg=name)


@pytest.mark.parametrize("name", list(CONFIGS), ids=list(CONFIGS))
def test_every_kind_saves_and_loads_through_one_pair(tmp_path, name):
    kind = model_kind(name)
    torch.manual_seed(1)
    model = kind.build(CONFIGS[name], NUM_CLASSES).eval()
    classes = ("calm", "tense", "flat")
    save_model(tmp_path, model, CONFIGS[name], classes)
    loaded, config, loaded_classes = load_model(tmp_path)
    assert type(loaded) is type(model) and config == CONFIGS[name] and loaded_classes == classes
    x, lengths = _inputs(kind)
    with torch.no_grad():
        assert_close(loaded.head(loaded.encode(x, lengths))[0], model.head(model.encode(x, lengths))[0], atol=0.0,
                     msg=name)


def test_a_model_of_another_kind_than_its_config_is_refused(tmp_path):
    with pytest.raises(TypeError, match="a dsnet config describes a DSNet, got a Baseline"):
        save_model(tmp_path, model_kind("baseline").build(CONFIGS["baseline"], 2), CONFIGS["dsnet"], ("a", "b"))
    with pytest.raises(ValueError, match="'merit' is configured with a MeritTrainConfig, not a TrainConfig"):
        TrainConfig(model="merit")
    with pytest.raises(ValueError, match="'dsnet' is configured with a TrainConfig, not a MeritTrainConfig"):
        MeritTrainConfig(model="dsnet")
    with pytest.raises(TypeError, match="a dsnet model is configured with a TrainConfig, got a SimpleNamespace"):
        kind_of_config(SimpleNamespace(model="dsnet"))


@pytest.mark.parametrize("name", ["resnet", "", None, 3], ids=["unknown", "empty", "none", "int"])
def test_an_unknown_kind_is_explained(name):
    with pytest.raises(ValueError, match=r"expected one of \('baseline', 'dsnet', 'edrl-mea', 'merit'\)"):
        model_kind(name)


def test_a_kind_registers_once_and_with_a_known_input():
    with pytest.raises(ValueError, match="registered already"):
        register(model_kind("dsnet"))
    odd = ModelKind("odd", "ser_fast.runs.config:TrainConfig", (torch.nn.Linear,), lambda c, n: torch.nn.Linear(1, n), "x:y", "spectra", ())
    with pytest.raises(ValueError, match="input must be 'features' or 'waveform'"):
        register(odd)


def _fold(run, name: str, kind: str, records: list[dict], metrics: str = "metrics.jsonl") -> None:
    fold = run / "folds" / name
    fold.mkdir(parents=True)
    (fold / "config.json").write_text(json.dumps({"model": kind}))
    (fold / metrics).write_text("\n".join(json.dumps(r) for r in records) if metrics.endswith("l") else
                                json.dumps(records[0]))


def test_one_rule_picks_a_runs_fold_by_its_kinds_validation_score(tmp_path):
    run = tmp_path / "run"
    _fold(run, "spk1", "dsnet", [{"val_uar": 0.4}, {"val_uar": 0.7}])
    _fold(run, "spk2", "dsnet", [{"val_uar": 0.6}, {"val_uar": 0.65}])
    _fold(run, "spk3", "dsnet", [{"val_uar": 0.7}])  # a tie goes to the first in run.json's order
    (run / "run.json").write_text(json.dumps({"folds": ["spk1", "spk2", "spk3"]}))
    assert model_folder(run) == run / "folds" / "spk1"
    assert model_folder(run, "spk2") == run / "folds" / "spk2"

    merit = tmp_path / "merit"
    _fold(merit, "a", "merit", [{"val_macro_f1": 0.3, "val_uar": 0.9}])
    _fold(merit, "b", "merit", [{"val_macro_f1": 0.5, "val_uar": 0.2}])
    (merit / "run.json").write_text(json.dumps({"folds": ["a", "b"]}))
    assert model_folder(merit) == merit / "folds" / "b"

    aligned = tmp_path / "edrl"
    _fold(aligned, "a", "edrl-mea", [{"aligned_val_uar": 0.5}], metrics="alignment.json")
    _fold(aligned, "b", "edrl-mea", [{"val_uar": 0.9}])  # killed before its alignment: its head's score
    (aligned / "run.json").write_text(json.dumps({"folds": ["a", "b"]}))
    assert model_folder(aligned) == aligned / "folds" / "b"
    with pytest.raises(ModelFileError, match="no trained fold 'c'"):
        model_folder(aligned, "c")
