"""Evaluating training runs: within-corpus scores pool the folds' test predictions, cross-corpus
scores average the fold models, the noise grid, embeddings for plots, the report files, and bad
input explained. Two tiny runs (baseline, DSNet; 2 folds × 1 epoch) are trained once per module."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_close
from matplotlib.image import imread

from ser_fast.data.corpus import Corpus
from ser_fast.data.features import extract_features
from ser_fast.data.loaders import load_corpus
from ser_fast.data.noise import NoiseBank, NoiseCondition
from ser_fast.data.synthetic import synthesize_corpus
from ser_fast.evaluation import evaluate as evaluate_module
from ser_fast.evaluation import score_run
from ser_fast.evaluation.evaluate import NOT_IN_CORPUS, ConditionResult, evaluate_run
from ser_fast.evaluation.plots import project_2d
from ser_fast.evaluation.report import unique_labels, write_report
from ser_fast.runs.config import TrainConfig
from ser_fast.runs.metrics import ClassificationScores
from ser_fast.runs.predict import evaluate_rows
from ser_fast.runs.saved import load_model
from ser_fast.training.run import train_run

MODELS = ("baseline", "dsnet")
NOISE_KINDS = ("white", "pink")
SNRS_DB = (0, 10)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("evaluate")


@pytest.fixture(scope="module")
def corpus(workspace) -> Corpus:
    return load_corpus("iemocap", synthesize_corpus(workspace / "corpus", speakers=4, per_class=2, seed=1))


@pytest.fixture(scope="module")
def runs(workspace, corpus) -> dict[str, Path]:
    table = extract_features(corpus.utterances, corpus.classes)
    for model in MODELS:
        config = TrainConfig(model=model, epochs=1, max_frames=32, precision="fp32")
        train_run(corpus, workspace / model, config, folds=[0, 1], table=table)
    return {model: workspace / model for model in MODELS}


@pytest.fixture(scope="module")
def within(runs, corpus):
    return {"baseline": evaluate_run(runs["baseline"], corpus, noise_kinds=list(NOISE_KINDS), snrs_db=SNRS_DB),
            "dsnet": evaluate_run(runs["dsnet"], corpus)}


@pytest.fixture(scope="module")
def other_corpus(workspace) -> tuple[Corpus, Path]:
    """Another recording channel and seed, with one wav corrupted after loading (header intact at
    load time, so the loader kept it and evaluation must report it)."""
    other = load_corpus("iemocap", synthesize_corpus(workspace / "other", speakers=4, per_class=1, seed=2,
                                                     condition="telephone"))
    corrupt = other.utterances[5].path
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    return other, corrupt


@pytest.fixture(scope="module")
def cross(runs, other_corpus):
    return evaluate_run(runs["dsnet"], other_corpus[0])


def fold_parts(run_dir: Path) -> dict[str, dict[str, list[str]]]:
    run = json.loads((run_dir / "run.json").read_text())
    return {fold: json.loads((run_dir / "folds" / fold / "fold.json").read_text()) for fold in run["folds"]}


@pytest.mark.parametrize("model", [pytest.param(m, id=m) for m in MODELS])
def test_within_corpus_pools_the_folds_test_predictions(within, runs, model):
    result = within[model]
    parts = fold_parts(runs[model])
    assert not result.cross_corpus and result.folds == tuple(parts)
    clean = result.clean
    assert clean.pooled.confusion.sum() == clean.num_utterances == sum(len(p["test"]) for p in parts.values())
    for fold, scores in clean.per_fold.items():
        assert scores.confusion.sum() == len(parts[fold]["test"]), fold
    assert np.array_equal(sum(s.confusion for s in clean.per_fold.values()), clean.pooled.confusion)
    assert (clean.uar, clean.wa, clean.macro_f1) == (clean.pooled.uar, clean.pooled.wa, clean.pooled.macro_f1)


def test_within_corpus_predictions_are_the_training_time_ones(within, runs, corpus):
    """The evaluation's batching gives the predictions of the trainer's own validation pass."""
    by_path = {str(u.path): u for u in corpus}
    labels, predictions = [], []
    for fold, parts in fold_parts(runs["dsnet"]).items():
        model, config, classes = load_model(runs["dsnet"] / "folds" / fold)
        table = extract_features([by_path[p] for p in parts["test"]], classes)
        predictions.append(evaluate_rows(model, table, list(range(len(table))), config).predictions)
        labels.append(table.labels.numpy())
    expected = ClassificationScores.from_predictions(np.concatenate(labels), np.concatenate(predictions),
                                                     corpus.classes)
    assert np.array_equal(within["dsnet"].clean.pooled.confusion, expected.confusion)


def test_cross_corpus_averages_the_fold_scores(cross, other_corpus, runs):
    readable = len(other_corpus[0]) - 1
    clean = cross.clean
    assert cross.cross_corpus and cross.eval_root == other_corpus[0].root
    assert set(clean.per_fold) == set(fold_parts(runs["dsnet"]))
    for scores in clean.per_fold.values():
        assert scores.confusion.sum() == readable
    for metric in ("uar", "wa", "macro_f1"):
        expected = np.mean([getattr(s, metric) for s in clean.per_fold.values()])
        assert_close(getattr(clean, metric), expected, atol=1e-12, msg=metric)
    assert np.array_equal(sum(s.confusion for s in clean.per_fold.values()), clean.pooled.confusion)
    assert clean.num_utterances == readable


def test_corrupt_wav_is_reported_and_the_rest_scored(cross, other_corpus):
    _, corrupt = other_corpus
    assert [path for path, _ in cross.skipped] == [str(corrupt)]
    assert cross.clean.num_utterances == len(other_corpus[0]) - 1


def test_noise_grid_is_clean_then_every_kind_at_every_snr(within, runs):
    result = within["baseline"]
    expected = ["clean"] + [f"{kind}@{snr:g}dB" for kind in NOISE_KINDS for snr in SNRS_DB]
    assert [c.name for c in result.conditions] == expected
    test_size = sum(len(p["test"]) for p in fold_parts(runs["baseline"]).values())
    assert all(c.pooled.confusion.sum() == test_size for c in result.conditions)
    assert result.condition("pink@10dB").condition.snr_db == 10.0


@pytest.mark.parametrize("model, spaces", [pytest.param("baseline", ["h"], id="baseline-h"),
                                           pytest.param("dsnet", ["h", "z_er", "z_ei"], id="dsnet-h-zer-zei")])
def test_embeddings_are_the_last_folds_validation_and_test(within, runs, model, spaces):
    embeddings = within[model].embeddings
    last_fold, parts = list(fold_parts(runs[model]).items())[-1]
    points = len(parts["validation"]) + len(parts["test"])
    assert embeddings.fold == last_fold and list(embeddings.spaces) == spaces
    assert all(v.shape == (points, 256) and np.isfinite(v).all() for v in embeddings.spaces.values())
    assert len(embeddings.labels) == len(embeddings.speakers) == len(embeddings.parts) == points
    assert sorted(embeddings.parts) == sorted(["validation"] * len(parts["validation"]) + ["test"] * len(parts["test"]))


def test_dsnet_subspaces_are_probed_on_each_folds_held_out_utterances(within, cross, runs):
    assert within["baseline"].disentanglement is None and within["baseline"].disentanglement_folds is None
    for result, speakers in ((within["dsnet"], 2), (cross, 4)):
        assert list(result.disentanglement) == ["h", "z_er", "z_ei"]
        assert set(result.disentanglement_folds) == set(fold_parts(runs["dsnet"]))
        for fold in result.disentanglement_folds.values():
            assert fold["speakers"] == speakers and fold["utterances"] >= 2 * speakers
        for space, scores in result.disentanglement.items():
            assert set(scores) == {"dead_fraction", "emotion_probe_uar", "speaker_probe_accuracy"}, space
            means = {name: np.mean([f["spaces"][space][name] for f in result.disentanglement_folds.values()])
                     for name in scores}
            assert scores == pytest.approx(means), space


@pytest.mark.parametrize("setting", [pytest.param("within", id="within"), pytest.param("cross", id="cross")])
def test_without_embeddings_the_scores_are_the_same_and_nothing_is_probed(within, cross, runs, corpus, other_corpus,
                                                                          monkeypatch, setting):
    def refuse(*args, **kwargs):
        raise AssertionError("embedded or probed with embeddings=False")

    monkeypatch.setattr(evaluate_module, "embed_rows", refuse)
    full, evaluated = (within["dsnet"], corpus) if setting == "within" else (cross, other_corpus[0])
    lean = evaluate_run(runs["dsnet"], evaluated, embeddings=False)
    assert lean.embeddings is None and lean.disentanglement is None and lean.disentanglement_folds is None
    for mine, theirs in zip(lean.conditions, full.conditions, strict=True):
        assert np.array_equal(mine.pooled.confusion, theirs.pooled.confusion), mine.name
        assert mine.items.as_dict() == theirs.items.as_dict(), mine.name


@pytest.mark.parametrize("noise", [None, "all", ["white"]], ids=["no-noise", "all-noise", "white"])
def test_no_snrs_score_clean_speech_only(within, runs, corpus, noise):
    clean = score_run(runs["baseline"], corpus, noise=noise, snrs_db=(), embeddings=False)
    assert [c.condition.kind for c in clean.conditions] == [None]
    assert clean.conditions[0].items.as_dict() == within["baseline"].conditions[0].items.as_dict()


def test_snrs_may_come_from_a_generator(runs, corpus):
    listed = score_run(runs["baseline"], corpus, noise=["white"], snrs_db=[5.0, 10.0], embeddings=False)
    generated = score_run(runs["baseline"], corpus, noise=["white"], snrs_db=(s for s in (5.0, 10.0)),
                          embeddings=False)
    assert [c.name for c in generated.conditions] == [c.name for c in listed.conditions]
    assert len(generated.conditions) == 3


@pytest.mark.parametrize("value", [pytest.param("5", id="str"), pytest.param(5.0, id="number"),
                                   pytest.param(b"5", id="bytes")])
def test_score_run_refuses_snrs_that_are_not_a_sequence(runs, corpus, value):
    with pytest.raises(ValueError, match="snrs_db must be None or a sequence of SNRs in dB"):
        score_run(runs["baseline"], corpus, noise=["white"], snrs_db=value)


@pytest.mark.parametrize("function", [pytest.param(evaluate_run, id="evaluate_run"),
                                      pytest.param(score_run, id="score_run")])
@pytest.mark.parametrize("value", [pytest.param(None, id="none"), pytest.param(1, id="int"),
                                   pytest.param("no", id="str")])
def test_embeddings_must_be_a_bool(runs, corpus, function, value):
    with pytest.raises(TypeError, match="embeddings must be True or False"):
        function(runs["dsnet"], corpus, embeddings=value)


def test_report_files(within, cross, tmp_path):
    results = [within["baseline"], within["dsnet"], cross]
    report = write_report(results, tmp_path / "report", title="tiny runs")
    out = report.parent
    numbers = json.loads((out / "results.json").read_text())
    assert [r["label"] for r in numbers["runs"]] == ["baseline", "dsnet", "dsnet-iemocap2iemocap"]
    for saved, result in zip(numbers["runs"], results):
        assert saved["cross_corpus"] == result.cross_corpus
        for saved_condition, condition in zip(saved["conditions"], result.conditions, strict=True):
            assert saved_condition["condition"] == condition.name
            assert [saved_condition[m] for m in ("uar", "wa", "macro_f1")] == [condition.uar, condition.wa,
                                                                               condition.macro_f1]
            assert saved_condition["pooled"]["confusion"] == condition.pooled.confusion.tolist()
    text = report.read_text()
    assert "# tiny runs" in text and "| model" in text and "UAR %" in text
    for result in results:
        for condition in result.conditions:
            assert f"| {condition.name}" in text
    assert str(cross.skipped[0][0]) in text
    assert "### dsnet: what the subspaces encode" in text and "| z_ei" in text and "speaker probe: z_ei > z_er" in text
    assert "### baseline: what the subspaces encode" not in text
    assert "## How sure" in text and "| dsnet − baseline " in text and "distinguishable" in text
    assert "## Confidence" in text and "| ECE softmax" in text
    for saved, result in zip(numbers["runs"], results):
        for saved_condition, condition in zip(saved["conditions"], result.conditions):
            calibration = saved_condition["calibration"]
            assert calibration["ece_before"] == condition.confidence.ece_before
            assert f"| {calibration['ece_before']:.1f} " in text and f"| {calibration['ece_after']:.1f} " in text
            assert set(calibration["temperatures"]) == set(result.folds)
    for saved, result in zip(numbers["runs"], results):
        assert saved["disentanglement"] == result.disentanglement
    pngs = ["uar_vs_snr.png"] + [f"{kind}_{label}.png" for kind in ("confusion", "embeddings", "reliability")
                                  for label in ("baseline", "dsnet", "dsnet-iemocap2iemocap")]
    for name in pngs:
        assert f"]({name})" in text, name
        assert (out / name).read_bytes()[:8] == PNG_MAGIC, name
        assert imread(out / name).ndim == 3, name


@pytest.mark.parametrize("projection", [pytest.param(p, id=p) for p in ("pca", "tsne")])
def test_projection_to_2d(projection):
    points = np.random.default_rng(0).standard_normal((20, 256))
    projected = project_2d(points, projection)
    assert projected.shape == (20, 2) and np.isfinite(projected).all()


def test_unique_labels_tell_same_model_runs_apart(within):
    dsnet = within["dsnet"]
    labels = unique_labels([dsnet, replace(dsnet, run_dir=Path("/runs/dsnet-no-lc")), dsnet])
    assert len(set(labels)) == 3 and all("/" not in label for label in labels)


def _run_json_only(workspace, runs, corpus):
    bare = workspace / "run-without-folds"
    bare.mkdir(exist_ok=True)
    shutil.copy(runs["dsnet"] / "run.json", bare / "run.json")
    return (bare, corpus), {}


def _other_classes(workspace, runs, corpus):
    return (runs["dsnet"], replace(corpus, classes=("neutral", "angry"))), {}


@pytest.mark.parametrize("arguments, error, pattern", [
    pytest.param(lambda w, r, c: ((w / "no-such-run", c), {}), FileNotFoundError, "no-such-run", id="missing-run-dir"),
    pytest.param(lambda w, r, c: ((w, c), {}), FileNotFoundError, "run.json", id="not-a-run-dir"),
    pytest.param(_run_json_only, FileNotFoundError, "run-without-folds", id="run-without-folds"),
    pytest.param(lambda w, r, c: ((r["dsnet"], c), {"noise_kinds": ["white", "traffic"]}), ValueError,
                 "unknown noise type.*traffic", id="bad-noise-kind"),
    pytest.param(lambda w, r, c: ((r["dsnet"], c), {"noise_kinds": "white"}), ValueError, "noise_kinds",
                 id="noise-kind-not-a-list"),
    pytest.param(lambda w, r, c: ((r["dsnet"], c), {"noise_kinds": ["white"], "snrs_db": ["loud"]}), ValueError,
                 "snrs_db", id="bad-snr"),
    pytest.param(lambda w, r, c: ((r["dsnet"], c), {"seed": -1}), ValueError, "seed", id="negative-seed"),
    pytest.param(lambda w, r, c: ((r["dsnet"], list(c)), {}), TypeError, "corpus", id="corpus-not-a-corpus"),
    pytest.param(_other_classes, ValueError, "classes", id="other-classes"),
])
def test_bad_input_is_explained(workspace, runs, corpus, arguments, error, pattern):
    args, kwargs = arguments(workspace, runs, corpus)
    with pytest.raises(error, match=pattern):
        evaluate_run(*args, **kwargs)


@pytest.mark.parametrize("results, kwargs, error, pattern", [
    pytest.param("within", {"projection": "umap"}, ValueError, "projection", id="bad-projection"),
    pytest.param("nothing", {}, TypeError, "RunResults", id="not-results"),
    pytest.param("within", {"title": ""}, ValueError, "title", id="empty-title"),
])
def test_report_bad_input_is_explained(within, tmp_path, results, kwargs, error, pattern):
    given = within["dsnet"] if results == "within" else []
    with pytest.raises(error, match=pattern):
        write_report(given, tmp_path, **kwargs)


def test_cross_corpus_headline_is_the_mean_of_fold_scores_not_the_pooled_one():
    """A perfect fold on 4 utterances and a wrong one on 12: pooled UAR 25 %, fold mean 50 %."""
    classes = ("neutral", "happy", "sad", "angry")
    perfect = ClassificationScores.from_predictions([0, 1, 2, 3], [0, 1, 2, 3], classes)
    wrong = ClassificationScores.from_predictions([0, 1, 2, 3] * 3, [1, 2, 3, 0] * 3, classes)
    pooled = ClassificationScores.from_predictions([0, 1, 2, 3] * 4, [0, 1, 2, 3] + [1, 2, 3, 0] * 3, classes)
    folds = {"a": perfect, "b": wrong}
    averaged = ConditionResult(NoiseCondition(None, None), pooled, folds, True, 4, ())
    pooled_only = ConditionResult(NoiseCondition(None, None), pooled, folds, False, 16, ())
    assert (averaged.uar, averaged.wa, averaged.macro_f1) == (0.5, 0.5, 0.5)
    assert (pooled_only.uar, pooled_only.wa) == (0.25, 0.25)


def test_each_condition_is_extracted_once_with_its_noise(runs, corpus, monkeypatch):
    calls = []

    def recording_extract(utterances, classes, **kwargs):
        calls.append((len(utterances), kwargs["condition"], kwargs["noise_bank"], kwargs["seed"]))
        return extract_features(utterances, classes, **kwargs)

    monkeypatch.setattr(evaluate_module, "extract_features", recording_extract)
    bank = NoiseBank()
    evaluate_run(runs["dsnet"], corpus, noise_kinds=["white"], snrs_db=[5], noise_bank=bank, seed=7)
    parts = fold_parts(runs["dsnet"])
    tests = {path for p in parts.values() for path in p["test"]}
    with_embedding_points = tests | set(list(parts.values())[-1]["validation"])
    assert [c.name for _, c, _, _ in calls] == ["clean", "white@5dB"]
    assert [n for n, _, _, _ in calls] == [len(with_embedding_points), len(tests)]
    assert all(b is bank and s == 7 for _, _, b, s in calls)


def test_a_shared_feature_cache_extracts_each_condition_once_for_every_run(runs, corpus, monkeypatch):
    calls = []

    def recording_extract(utterances, classes, **kwargs):
        calls.append(kwargs["condition"].name)
        return extract_features(utterances, classes, **kwargs)

    bank, cache = NoiseBank(), {}
    uncached = [evaluate_run(runs[m], corpus, noise_kinds=["white"], snrs_db=[5], noise_bank=bank, seed=3)
                for m in MODELS]
    monkeypatch.setattr(evaluate_module, "extract_features", recording_extract)
    cached = [evaluate_run(runs[m], corpus, noise_kinds=["white"], snrs_db=[5], noise_bank=bank, seed=3,
                           feature_cache=cache) for m in MODELS]
    assert calls == ["clean", "white@5dB"], "the second model reuses the first one's features"
    for with_cache, without in zip(cached, uncached):
        assert [c.as_dict() for c in with_cache.conditions] == [c.as_dict() for c in without.conditions]
    evaluate_run(runs["dsnet"], corpus, noise_kinds=["white"], snrs_db=[5], noise_bank=NoiseBank(), seed=3,
                 feature_cache=cache)
    assert calls == ["clean", "white@5dB", "white@5dB"], "another noise bank is another mixture"


def test_side_by_side_table_has_a_column_per_run_and_a_row_per_condition_group(within, cross):
    from ser_fast.evaluation.report import side_by_side_table

    table = side_by_side_table(["baseline", "dsnet", "dsnet-cross"], [within["baseline"], within["dsnet"], cross])
    lines = table.splitlines()
    assert [cell.strip() for cell in lines[0].split("|")[1:-1]] == ["condition", "baseline", "dsnet"]
    rows = {line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[2:4]] for line in lines[2:]}
    clean = within["dsnet"].clean
    assert rows["clean"][1] == f"{100 * clean.uar:.1f} / {100 * clean.macro_f1:.1f}"
    white = [c for c in within["baseline"].conditions if c.condition.kind == "white"]
    assert rows["white (mean of 0..10 dB)"][0] == (f"{100 * sum(c.uar for c in white) / len(white):.1f} / "
                                                   f"{100 * sum(c.macro_f1 for c in white) / len(white):.1f}")
    cross_row = rows[f"{cross.eval_corpus} (cross-corpus), clean"]
    assert cross_row[0] == "–" and cross_row[1] == f"{100 * cross.clean.uar:.1f} / {100 * cross.clean.macro_f1:.1f}"


def test_test_utterance_missing_from_the_corpus_is_reported(runs, corpus):
    parts = fold_parts(runs["dsnet"])
    absent = list(parts.values())[0]["test"][0]
    smaller = corpus.subset([u for u in corpus if str(u.path) != absent])
    result = evaluate_run(runs["dsnet"], smaller)
    assert not result.cross_corpus
    assert result.skipped == [(absent, NOT_IN_CORPUS)]
    assert result.clean.pooled.confusion.sum() == sum(len(p["test"]) for p in parts.values()) - 1
