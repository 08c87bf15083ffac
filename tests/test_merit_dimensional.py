"""Sparse MERIT and its SE pre-processing baseline with a dimensional head (``target`` "dimensional" or "both"): the
heads' outputs and the state-dict names a categorical model keeps, the CCC term of the objective, a short run on the
synthetic corpus that selects by validation CCC, saves a model that loads back and is evaluated on arousal, valence and
dominance, and the SER graph's two ONNX outputs against the eager model."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import onnxruntime as ort
import pytest
import torch
from helpers import assert_close, speech_like

from ser_fast.cli import main
from ser_fast.data.audio import load_audio
from ser_fast.data.dimensions import DIMENSIONS, DimensionScale
from ser_fast.data.loaders import load_corpus
from ser_fast.data.noise import NoiseBank
from ser_fast.data.protocols import loso_folds
from ser_fast.data.synthetic import synthesize_corpus
from ser_fast.evaluation.merit_eval import MeritCondition, evaluate_merit_run
from ser_fast.evaluation.report import write_report
from ser_fast.inference.onnx_merit import MeritGraph
from ser_fast.inference.recognizer import EmotionRecognizer
from ser_fast.models.losses import concordance_loss
from ser_fast.models.merit import MeritConfig, SEThenSER, SparseMERIT, build_merit
from ser_fast.models.targets import Targets
from ser_fast.ops.export import onnx_program
from ser_fast.runs.config import MeritTrainConfig
from ser_fast.runs.metrics import ClassificationScores
from ser_fast.runs.predict import predict_waveforms
from ser_fast.runs.registry import model_kind
from ser_fast.runs.saved import load_model
from ser_fast.training.merit_task import train_merit_fold
from ser_fast.training.run import train_run

SMALL = {"expert_hidden": 32, "expert_dim": 24, "ser_hidden": 16, "se_hidden": 16, "dropout": 0.0}
MODELS = {"sparse-merit": (SparseMERIT, "sparse"), "se-then-ser": (SEThenSER, "se-preprocess")}
TARGETS = ("categorical", "dimensional", "both")
CLASSES = 5  # odd, and not the config's default of 4
SCALE = (1.0, 5.0)  # the synthetic corpus rates as IEMOCAP does
# The probabilities' and the dimensions' float32 rounding in onnxruntime against the eager model (test_onnx_merit: 2e-7
# measured for the sparse design).
ONNX_ATOL = 1e-4

pytestmark = pytest.mark.usefixtures("one_thread", "quiet_hf_mask_warning")


def batch(lengths=(7919, 4001, 6400, 3333), seed=0):
    generator = torch.Generator().manual_seed(seed)
    width = max(lengths)
    wave = 0.1 * torch.randn(len(lengths), width, generator=generator)
    lengths = torch.tensor(lengths)
    return wave * (torch.arange(width) < lengths.view(-1, 1)), lengths


def built(name: str, target: str, seed: int = 0, **overrides):
    model_class, design = MODELS[name]
    torch.manual_seed(seed)
    return model_class(MeritConfig(design=design, num_classes=CLASSES, **{**SMALL, **overrides}), target).eval()


def rated(count: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(count, 3, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("target", TARGETS)
def test_each_target_gives_its_heads(name, target):
    model = built(name, target)
    wave, lengths = batch()
    with torch.no_grad():
        out = model(wave, lengths)
        scores, h = model.head(model.encode(wave, lengths))
    classes = 0 if target == "dimensional" else CLASSES
    dimensions = 0 if target == "categorical" else 3
    assert model.target == target and model.num_classes == classes
    assert scores.shape == (4, classes + dimensions) and h.shape[0] == 4
    if classes:
        assert out.logits.shape == (4, classes)
        assert_close(scores[:, :classes], out.logits, atol=1e-5, msg="head's logits against forward's")
    else:
        assert out.logits is None
    if dimensions:
        assert out.dimensions.shape == (4, 3) and bool(((out.dimensions > 0) & (out.dimensions < 1)).all())
        assert_close(scores[:, classes:], out.dimensions, atol=1e-5, msg="head's dimensions against forward's")
    else:
        assert out.dimensions is None
    assert out.se_mask.shape == out.noisy_log_mag.shape


@pytest.mark.parametrize("name, head", [("sparse-merit", "heads.ser_head."), ("se-then-ser", "ser_head.")],
                         ids=list(MODELS))
def test_a_categorical_model_keeps_its_state_dict_and_the_regressor_is_added_beside_it(name, head):
    keys = {target: set(built(name, target).state_dict()) for target in TARGETS}
    classifier = {f"{head}classifier.{layer}.{part}" for layer in (1, 2, 5) for part in ("weight", "bias")}
    regressor = {f"{head}regressor.net.{layer}.{part}" for layer in (0, 2) for part in ("weight", "bias")}
    assert classifier <= keys["categorical"] and not any("regressor" in key for key in keys["categorical"])
    assert keys["categorical"] == set(built(name, "categorical", seed=1).state_dict())
    assert keys["both"] == keys["categorical"] | regressor
    assert keys["dimensional"] == (keys["categorical"] - classifier) | regressor
    assert built(name, "categorical").state_dict()[f"{head}classifier.5.weight"].shape == (CLASSES, SMALL["ser_hidden"])


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("target", ["dimensional", "both"])
def test_the_objective_adds_the_ccc_loss_and_trains_the_regressor(name, target):
    model = built(name, target, se_weight=0.5, balance_weight=0.25)
    wave, lengths = batch()
    labels = torch.tensor([0, 4, 2, 1])
    targets = Targets(labels if target == "both" else None, rated(4))
    weight = torch.tensor([1.0, 2.0, 3.0, 4.0, 0.5])
    losses = model.losses(wave, 0.5 * wave, targets, lengths, class_weight=weight)
    assert math.isfinite(losses.scalars()["l_d"]) and 0 < losses.scalars()["l_d"] < 2
    with torch.no_grad():
        out = model(wave, lengths)
    assert_close(losses.l_d, concordance_loss(out.dimensions, targets.dimensions), atol=1e-5, msg="L_d")
    if target == "both":
        assert_close(losses.ce, torch.nn.functional.cross_entropy(out.logits, labels, weight=weight), atol=1e-5)
    else:
        assert losses.ce is None and "ce" not in losses.scalars()
    ce = 0.0 if losses.ce is None else losses.ce
    assert_close(losses.total, ce + losses.l_d + 0.5 * losses.se_l1 + 0.25 * losses.balance, atol=1e-6, msg="total")
    assert set(losses.scalars()) == {"total", "se_l1", "balance", "l_d"} | ({"ce"} if target == "both" else set())
    losses.total.backward()
    regressor = model.heads.ser_head.regressor if name == "sparse-merit" else model.ser_head.regressor
    assert all(p.grad is not None and bool(p.grad.any()) for p in regressor.parameters())


@pytest.mark.parametrize("call, error, words", [
    pytest.param(lambda m, w, n: m.losses(w, w, torch.tensor([0, 1, 2, 3]), n), TypeError, "Targets",
                 id="plain-labels"),
    pytest.param(lambda m, w, n: m.losses(w, w, Targets(None, rated(4)[:, :2]), n), ValueError, "dimensions must be",
                 id="two-dimensions"),
    pytest.param(lambda m, w, n: m.losses(w, w, Targets(None, rated(4).long()), n), ValueError, "dimensions must be",
                 id="integer-dimensions"),
    pytest.param(lambda m, w, n: m.losses(w[:1], w[:1], Targets(None, rated(1)), n[:1]), ValueError, "at least 2",
                 id="one-utterance"),
])
def test_bad_dimensional_targets_are_rejected_with_what_was_expected(call, error, words):
    model = built("sparse-merit", "dimensional")
    wave, lengths = batch()
    with pytest.raises(error, match=words):
        call(model, wave, lengths)


def test_labels_are_checked_only_where_there_are_classes():
    wave, lengths = batch()
    dimensional = built("sparse-merit", "dimensional")
    assert dimensional.losses(wave, wave, Targets(torch.tensor([9, 9, 9, 9]), rated(4)), lengths).ce is None
    with pytest.raises(ValueError, match="labels must be in"):
        built("sparse-merit", "both").losses(wave, wave, Targets(torch.tensor([0, 1, 2, 9]), rated(4)), lengths)
    with pytest.raises(ValueError, match="target 'valence'"):
        build_merit(MeritConfig(**SMALL), target="valence")


@pytest.mark.parametrize("target, classes", [("dimensional", 0), ("both", 3), ("categorical", 3)],
                         ids=["dimensional-no-classes", "both-3", "categorical-3"])
def test_the_registry_builds_the_target_of_the_config(target, classes):
    scale = None if target == "categorical" else SCALE
    config = MeritTrainConfig(network=MeritConfig(**SMALL), target=target, dimension_scale=scale)
    model = model_kind("merit").build(config, classes)
    assert model.target == target and model.num_classes == classes


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = synthesize_corpus(tmp_path_factory.mktemp("synth") / "corpus", speakers=4, per_class=2, seed=7)
    return load_corpus("iemocap", root)


def tiny_config(target: str, epochs: int) -> MeritTrainConfig:
    return MeritTrainConfig(network=MeritConfig(**SMALL), epochs=epochs, batch_size=4, accumulate=2, max_seconds=0.8,
                            seed=2, target=target, dimension_scale=SCALE)


def records(fold_dir) -> list[dict]:
    return [json.loads(line) for line in (fold_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def dimensional_run(corpus, tmp_path_factory):
    """A two-epoch dimensional run of fold 0, as ``ser-fast train`` makes it; ``(run_dir, fold_dir, state)``."""
    run_dir = tmp_path_factory.mktemp("dimensional") / "run"
    with warnings.catch_warnings():  # as quiet_hf_mask_warning, which a module's fixture runs outside of
        warnings.filterwarnings("ignore", message=".*key_padding_mask.*")
        results = train_run(corpus, run_dir, tiny_config("dimensional", 2), folds=[0])
    (fold, state), = results.items()
    return run_dir, run_dir / "folds" / fold, state


def test_a_dimensional_run_selects_by_validation_ccc(dimensional_run):
    _, fold_dir, state = dimensional_run
    logged = records(fold_dir)
    assert [r["epoch"] for r in logged] == [1, 2]
    for record in logged:
        per_dimension = [record[f"val_ccc_{d}"] for d in DIMENSIONS]
        assert record["val_ccc"] == pytest.approx(np.mean(np.nan_to_num(per_dimension)))
        assert -1 <= record["val_ccc"] <= 1 and math.isfinite(record["val_loss_l_d"])
        assert "val_macro_f1" not in record and "train_ce" not in record and "train_l_d" in record
    best = max(logged, key=lambda r: r["val_ccc"])
    assert state["best_ccc"] == best["val_ccc"] and state["best_epoch"] == best["epoch"]
    assert "temperature" not in state, "a model without classes has nothing to calibrate"


def test_a_dimensional_model_loads_back_and_rates_utterances(dimensional_run, corpus):
    _, fold_dir, _ = dimensional_run
    model, config, classes = load_model(fold_dir)
    assert classes == () and config.target == "dimensional" and config.scale == DimensionScale(*SCALE)
    assert model.target == "dimensional" and model.heads.ser_head.classifier is None
    test = loso_folds(corpus)[0].test[:5]
    out = predict_waveforms(model, test, classes, NoiseBank(), ("white",), 5.0, seed=[3], batch_size=2)
    assert out.labels is None and out.predictions is None and out.logits is None
    assert out.dimensions.shape == (5, 3) and out.dimensions.dtype == np.float32
    assert bool(((out.dimensions > 0) & (out.dimensions < 1)).all())


def test_a_dimensional_run_is_evaluated_on_arousal_valence_and_dominance(dimensional_run, corpus):
    run_dir, _, _ = dimensional_run
    results = evaluate_merit_run(run_dir, corpus, snrs_db=(0.0,), unseen_noise=("pink",), enhancement=False)
    assert [c.name for c in results.conditions] == ["clean", "seen 0 dB", "unseen 0 dB"]
    assert results.classes == () and results.target == "dimensional"
    assert results.dimension_scale == DimensionScale(*SCALE)
    for condition in results.conditions:
        assert condition.scores is None and condition.items is None and condition.confidence is None
        scores = condition.dimensional
        assert scores.dimensions == DIMENSIONS and scores.count == len(loso_folds(corpus)[0].test)
        assert np.all(np.abs(np.nan_to_num(scores.ccc)) <= 1) and np.all(scores.mae <= SCALE[1] - SCALE[0])
    written = json.loads(json.dumps(results.as_dict()))
    assert written["target"] == "dimensional" and written["dimension_scale"] == {"low": 1.0, "high": 5.0}
    clean = written["conditions"][0]
    assert clean["macro_f1"] is None and set(clean["dimensional"]["ccc"]) == set(DIMENSIONS)


def test_a_categorical_condition_reports_what_it_did():
    scores = ClassificationScores.from_predictions(np.array([0, 1, 1]), np.array([0, 1, 0]), ("a", "b"))
    written = MeritCondition("seen", 5.0, scores, {}).as_dict()
    assert list(written) == ["condition", "noise_set", "snr_db", "macro_f1", "uar", "wa", "scores", "enhancement",
                             "calibration"]


def test_a_run_with_both_heads_selects_by_macro_f1_and_logs_ccc(corpus, tmp_path):
    fold = loso_folds(corpus)[0]
    state = train_merit_fold(fold.train, fold.validation, corpus.classes, tiny_config("both", 1), tmp_path / "run")
    record, = records(tmp_path / "run")
    assert list(state)[:3] == ["best_f1", "best_uar", "best_ccc"] and state["best_f1"] == record["val_macro_f1"]
    assert {"val_macro_f1", "val_uar", "val_ccc", "val_ccc_arousal", "val_loss_ce", "val_loss_l_d"} <= set(record)
    assert "temperature" in state, "the class logits alone are calibrated"
    _, _, classes = load_model(tmp_path / "run")
    assert classes == tuple(corpus.classes)


def test_a_dimensional_run_needs_the_scale(corpus, tmp_path):
    fold = loso_folds(corpus)[0]
    config = MeritTrainConfig(network=MeritConfig(**SMALL), batch_size=4, target="dimensional")
    with pytest.raises(ValueError, match="needs dimension_scale, the corpus. rating scale"):
        train_merit_fold(fold.train, fold.validation, (), config, tmp_path / "run")


@pytest.mark.parametrize("target, names", [("categorical", ("probabilities",)), ("dimensional", ("dimensions",)),
                                           ("both", ("probabilities", "dimensions"))], ids=list(TARGETS))
def test_the_ser_graph_names_an_output_per_head(target, names):
    model = built("sparse-merit", target)
    assert MeritGraph(model, "ser").output_names == names
    assert MeritGraph(model, "se").output_names == ("enhanced",)


# torch's own pytree deprecation notice, raised inside the exporter (ser_fast.inference.onnx_export filters it too).
@pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")
def test_the_onnx_graph_of_both_heads_gives_the_probabilities_and_the_dimensions():
    temperature = 1.7
    model = built("sparse-merit", "both", seed=4)
    graph = MeritGraph(model, "ser", temperature).eval()
    batch_dim = torch.export.Dim("batch", min=1)
    samples = torch.export.Dim("samples", min=graph.min_samples)
    program = onnx_program(graph, (torch.zeros(2, 16000), torch.full((2,), 16000)),
                           dynamic_shapes={"waveform": {0: batch_dim, 1: samples}, "lengths": {0: batch_dim}},
                           input_names=["waveform", "lengths"], output_names=list(graph.output_names),
                           external_data=False, verbose=False)
    lengths = np.array([16001, 401, 9999], np.int64)
    waves = np.zeros((3, lengths.max()), np.float32)
    for i, n in enumerate(lengths):
        waves[i, :n] = speech_like(int(n), 16000, i) / 32768
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(program.model_proto.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["probabilities", "dimensions"]
    probabilities, dimensions = session.run(None, {"waveform": waves, "lengths": lengths})
    with torch.no_grad():
        scores, _ = model.head(model.encode(torch.from_numpy(waves), torch.from_numpy(lengths)))
    assert probabilities.shape == (3, CLASSES) and dimensions.shape == (3, 3)
    assert_close(probabilities, torch.softmax(scores[:, :CLASSES] / temperature, dim=1), atol=ONNX_ATOL,
                 msg="probabilities")
    assert_close(dimensions, scores[:, CLASSES:], atol=ONNX_ATOL, msg="dimensions")


@pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")
@pytest.mark.usefixtures("quiet_hf_mask_warning")
def test_a_dimensional_run_predicts_reports_and_exports_on_the_corpus_scale(dimensional_run, corpus, tmp_path,
                                                                             capsys):
    run_dir, _, _ = dimensional_run
    recognizer = EmotionRecognizer.from_pretrained(run_dir)
    paths = [str(u.path) for u in loso_folds(corpus)[0].test[:2]]
    predictions = recognizer.predict(paths)
    for p in predictions:
        assert p.label is None and p.probabilities == {} and set(p.dimensions) == set(DIMENSIONS)
        assert all(SCALE[0] <= v <= SCALE[1] for v in p.dimensions.values())
    results = evaluate_merit_run(run_dir, corpus, snrs_db=(0.0,), unseen_noise=("pink",), enhancement=False)
    report = write_report(results, tmp_path / "report").read_text()
    assert "### Arousal, valence and dominance" in report and "macro-F1 / UAR" not in report
    out = tmp_path / "merit.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["export", "--run", str(run_dir), "--out", str(out)]) == 0
    assert "out: arousal, valence, dominance on 1-5" in capsys.readouterr().out
    session = ort.InferenceSession(str(out))
    assert [o.name for o in session.get_outputs()] == ["dimensions"]
    wave = load_audio(paths[0]).astype(np.float32)
    (values,) = session.run(None, {"waveform": wave[None], "lengths": np.array([len(wave)], np.int64)})
    whole = recognizer.predict([paths[0]], window_s=len(wave) / 16000 + 1)[0].dimensions
    assert_close(values[0], np.array([whole[d] for d in DIMENSIONS]), atol=1e-3, msg="ONNX against predict()")


@pytest.mark.usefixtures("quiet_hf_mask_warning")
def test_a_model_with_both_heads_classifies_the_unrated_utterances_too(corpus, tmp_path):
    run_dir = tmp_path / "run"
    train_run(corpus, run_dir, tiny_config("both", 1), folds=[0])
    tested = loso_folds(corpus)[0].test
    arousal = tested[0].extra.pop("arousal")
    try:
        results = evaluate_merit_run(run_dir, corpus, snrs_db=(0.0,), unseen_noise=("pink",), enhancement=False)
    finally:
        tested[0].extra["arousal"] = arousal
    clean = results.conditions[0]
    assert int(clean.scores.support.sum()) == len(tested), "every test utterance is classified"
    assert clean.dimensional.count == len(tested) - 1, "the unrated one is left out of the dimensional scores"
    assert "left out of those scores" in dict(results.skipped)[str(tested[0].path)]
