"""Scoring a training run's fold models on clean speech and on a grid of noise types × SNRs.

Within-corpus (the corpus the run was trained on): each fold model predicts its own fold's test utterances, and the
predictions of all folds are concatenated and scored once, as in the DSNet paper. Cross-corpus (any other corpus): every
fold model predicts the whole corpus, each fold is scored, and the fold scores are averaged (the paper's MSP2IEM /
IEM2MSP); the confusion matrix of all folds' predictions together is kept as well."""

from __future__ import annotations

import logging
import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ser_fast.data.corpus import Corpus, Utterance
from ser_fast.data.dimensions import DIMENSIONS, DimensionScale, corpus_scale, ratings_within
from ser_fast.data.features import FeatureTable, extract_features
from ser_fast.data.noise import DEFAULT_SNRS_DB, NoiseBank, NoiseCondition, noise_grid
from ser_fast.evaluation.confidence import ConfidenceScores
from ser_fast.models.targets import has_dimensions, split_scores
from ser_fast.runs.calibration import saved_calibration
from ser_fast.runs.config import TrainConfig
from ser_fast.runs.disentanglement import disentanglement, mean_over_folds
from ser_fast.runs.layout import check_run_dir, read_fold_parts, read_run_json, trained_folds
from ser_fast.runs.metrics import ClassificationScores, DimensionalScores
from ser_fast.runs.model_files import read_model_files
from ser_fast.runs.predict import embed_rows, run_rows
from ser_fast.runs.registry import FEATURES, model_kind
from ser_fast.runs.saved import model_from_saved

logger = logging.getLogger(__name__)

MAX_EMBEDDING_POINTS = 1000
NOT_IN_CORPUS = "in the fold's test set but not in the evaluated corpus"
NOT_RATED = ("not rated on arousal, valence and dominance within the corpus' scale: left out of those scores (a model "
             "with classes still classifies it)")


@dataclass(frozen=True)
class Embeddings:
    """Utterance vectors of ONE fold model (vectors of different fold models live in different spaces, so they are
    never mixed): the last fold's validation and test utterances within-corpus, as in the DSNet paper's Fig. 3, or the
    evaluated corpus cross-corpus; at most 1000 points. ``spaces`` maps "h" (and for DSNet also "z_er", "z_ei") to
    ``[N, 256]``; ``labels`` are class indices into ``classes``; ``parts`` says "validation" or "test" per point."""

    fold: str
    classes: tuple[str, ...]
    spaces: dict[str, np.ndarray]
    labels: np.ndarray
    speakers: tuple[str, ...]
    parts: tuple[str, ...]


@dataclass(frozen=True)
class ScoredItems:
    """What ``pooled`` was scored on, item by item in its order: one item per utterance and fold model that predicted
    it (each test utterance once within-corpus; every utterance once per fold across corpora). The reproduction
    harness resamples these by speaker for its confidence intervals and pairs systems by ``paths`` and ``folds``."""

    paths: tuple[str, ...]
    speakers: tuple[str, ...]
    folds: tuple[str, ...]
    labels: np.ndarray
    predictions: np.ndarray

    def as_dict(self) -> dict:
        return {"paths": list(self.paths), "speakers": list(self.speakers), "folds": list(self.folds),
                "labels": self.labels.tolist(), "predictions": self.predictions.tolist()}


@dataclass(frozen=True)
class ConditionResult:
    """One noise condition's scores: ``pooled`` (all folds' predictions concatenated) and ``per_fold``; the headline
    ``uar``/``wa``/``macro_f1`` is ``pooled``'s within-corpus, the mean over folds cross-corpus (``fold_average``).
    ``items``: the predictions behind ``pooled`` (not in :meth:`as_dict`: results.json stays a summary). A model with
    a dimensional head adds ``dimensional``: CCC, Pearson's r and MAE per dimension of the rated utterances (pooled or
    averaged over folds as the class scores are), on the evaluated corpus' scale; a dimensional model has no
    ``pooled`` (its headline class scores are NaN)."""

    condition: NoiseCondition
    pooled: ClassificationScores | None
    per_fold: dict[str, ClassificationScores]
    fold_average: bool
    num_utterances: int
    skipped: tuple[tuple[str, str], ...]
    items: ScoredItems | None = None
    confidence: ConfidenceScores | None = None
    dimensional: DimensionalScores | None = None

    @property
    def name(self) -> str:
        return self.condition.name

    def _headline(self, metric: str) -> float:
        if self.pooled is None:
            return float("nan")
        if self.fold_average:
            return float(np.mean([getattr(s, metric) for s in self.per_fold.values()]))
        return float(getattr(self.pooled, metric))

    uar = property(lambda self: self._headline("uar"))
    wa = property(lambda self: self._headline("wa"))
    macro_f1 = property(lambda self: self._headline("macro_f1"))

    def as_dict(self) -> dict:
        return {
            "condition": self.name, "noise": self.condition.kind, "snr_db": self.condition.snr_db,
            "uar": self.uar, "wa": self.wa, "macro_f1": self.macro_f1, "fold_average": self.fold_average,
            "num_utterances": self.num_utterances, "pooled": None if self.pooled is None else self.pooled.as_dict(),
            "folds": {name: s.as_dict() for name, s in self.per_fold.items()},
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "calibration": None if self.confidence is None else self.confidence.as_dict(),
            **({} if self.dimensional is None else {"dimensional": self.dimensional.as_dict()}),
        }


@dataclass(frozen=True)
class RunResults:
    """A run's evaluation on one corpus: one :class:`ConditionResult` per noise condition, clean first."""

    run_dir: Path
    model: str
    protocol: str
    train_corpus: str
    eval_corpus: str
    eval_root: Path
    cross_corpus: bool
    classes: tuple[str, ...]
    folds: tuple[str, ...]
    conditions: tuple[ConditionResult, ...]
    embeddings: Embeddings | None
    disentanglement: dict[str, dict[str, float | None]] | None = None
    disentanglement_folds: dict[str, dict] | None = None
    dimension_scale: DimensionScale | None = None  # what the dimensional scores' MAE is in (None: categorical)

    @property
    def clean(self) -> ConditionResult:
        return self.conditions[0]

    def condition(self, name: str) -> ConditionResult:
        for result in self.conditions:
            if result.name == name:
                return result
        raise ValueError(f"no condition {name!r} in these results; they have {[c.name for c in self.conditions]}")

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """Every utterance left out under some condition, once, with the first reason given."""
        seen: dict[str, str] = {}
        for result in self.conditions:
            for path, reason in result.skipped:
                seen.setdefault(path, reason)
        return sorted(seen.items())

    def as_dict(self) -> dict:
        return plain_fields(self, skip=("embeddings",) + (("dimension_scale",) if self.dimension_scale is None else ()))


def plain_fields(result, skip: Sequence[str] = ()) -> dict:
    """A result dataclass' fields in order as JSON values: paths as str, tuples as lists, results by ``as_dict``."""
    return {f.name: _plain(getattr(result, f.name)) for f in fields(result) if f.name not in skip}


def _plain(value):
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value.as_dict() if hasattr(value, "as_dict") else value


@dataclass(frozen=True)
class FoldModel:
    """A trained fold's model, its utterance lists (``fold.json``), ``targets``: the utterances of the evaluated corpus
    it predicts (all cross-corpus, its test set within), and ``missing``: ``(path, reason)`` for test paths it lacks."""

    name: str
    folder: Path
    model: torch.nn.Module
    config: Any
    classes: tuple[str, ...]
    parts: dict[str, list[str]]
    targets: list[Utterance]
    missing: list[tuple[str, str]]
    temperature: float = 1.0  # the calibration saved with the model (1.0: none)


def evaluation_scale(run: dict, corpus: Corpus, cross: bool, given: DimensionScale | None) -> DimensionScale:
    """The scale ``corpus`` rates arousal, valence and dominance on, which a run with a dimensional head is scored on
    (its predictions, on [0, 1], restored to it): ``given``, else the run's own (the scale it trained on) within its
    corpus, else the corpus' known one (a ValueError naming the known ones otherwise)."""
    trained_on = run["config"].get("dimension_scale")
    if given is None and not cross and trained_on is not None:
        return DimensionScale(*trained_on)
    return corpus_scale(corpus.name, given)


def evaluate_run(run_dir: str | os.PathLike, corpus: Corpus, *, noise_kinds: Sequence[str] | str | None = None,
                 snrs_db: Sequence[float] = DEFAULT_SNRS_DB, noise_bank: NoiseBank | None = None, seed: int = 0,
                 progress: bool = False, feature_cache: dict | None = None,
                 dimension_scale: DimensionScale | None = None, embeddings: bool = True) -> RunResults:
    """Evaluate every trained fold model of ``run_dir`` on ``corpus``, clean and under noise.

    Args:
        run_dir: a folder written by ``ser_fast.training.run.train_run``.
        corpus: the run's own corpus (within-corpus; recognised by name and root) or another one
            (cross-corpus); its classes must be the run's.
        noise_kinds: None for clean speech only, "all" for every type of the bank, or a sequence of
            noise types; each is evaluated at every SNR of ``snrs_db``.
        noise_bank: where the noise comes from; the five built-in types by default.
        seed: seeds the noise mixtures (the same seed gives the same noisy speech) and the choice of embedding points.
        progress: a tqdm bar over conditions × folds.
        feature_cache: a dict shared by several calls (runs of other models on the same folds and
            corpus) that keeps each condition's features, so they are computed once; None: no cache.
            The features depend only on the utterances, the condition, the seed and the noise bank.
        dimension_scale: for a run with a dimensional head, the scale ``corpus`` rates on (:func:`evaluation_scale`;
            its utterances rated outside it, or not at all, are left out of those scores with the reason).
        embeddings: also embed held-out utterances (``RunResults.embeddings``, for the report's plots) and probe
            DSNet's subspaces on them (``disentanglement``). False scores the predictions only, as the reproduction
            grid needs: the probes cost a DSNet run about as much as its clean test.
    Raises:
        FileNotFoundError naming the run folder, run.json, or the folds folder when there is nothing
        trained; ValueError for an unknown noise type, bad SNRs or seed, or classes that differ.
    """
    run_dir = check_run_dir(run_dir)
    if not isinstance(corpus, Corpus):
        raise TypeError(f"corpus must be a ser_fast.data.Corpus, got {type(corpus).__name__}")
    if len(corpus) == 0:
        raise ValueError(f"corpus {corpus.name!r} has no utterances to evaluate")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if not isinstance(embeddings, bool):
        raise TypeError(f"embeddings must be True or False, got {embeddings!r}")
    run = read_run_json(run_dir)
    if model_kind(run["config"].get("model")).input != FEATURES:
        raise ValueError(f"{run_dir} is a {run['config'].get('model')!r} run; evaluate it with evaluate_merit_run")
    if tuple(run["classes"]) != tuple(corpus.classes):
        raise ValueError(f"{run_dir} was trained on classes {tuple(run['classes'])}; corpus {corpus.name!r} has "
                         f"{tuple(corpus.classes)}: load it with the run's classes")
    if noise_kinds is not None and noise_bank is None:
        noise_bank = NoiseBank()
    conditions = _conditions(noise_kinds, snrs_db, noise_bank)
    cross, folds = fold_models(run_dir, run, corpus)
    scale = evaluation_scale(run, corpus, cross, dimension_scale) \
        if has_dimensions(run["config"].get("target", "categorical")) else None
    missing = [item for fold in folds for item in fold.missing]
    for fold in folds:
        if fold.classes and fold.classes != tuple(corpus.classes):
            raise ValueError(f"{fold.folder} predicts classes {fold.classes}; the evaluated corpus has "
                             f"{tuple(corpus.classes)}")
        if fold.config.channels_last:
            fold.model.to(memory_format=torch.channels_last)
    for path, reason in missing:
        logger.warning("%s: %s", path, reason)
    embedding_fold = folds[-1]
    evaluated = _ordered_union(corpus, [u for fold in folds for u in fold.targets])
    evaluated_paths = {Path(u.path) for u in evaluated}
    # With embeddings, every model kind extracts the held-out utterances' clean features, so that runs of different
    # models on the same folds share them through feature_cache; DSNet's subspaces are probed on them. Without, the
    # clean table holds the tested utterances only (another cache key: the two never share a table).
    held_out = {fold.name: _held_out(fold, corpus, cross) for fold in folds} if embeddings else {}

    results, collected, per_fold = [], None, {}
    bar = tqdm(total=len(conditions) * len(folds), desc=f"evaluate {run['config']['model']}", unit="fold",
               disable=not progress)
    for condition in conditions:
        bar.set_postfix(condition=condition.name)
        clean_needs = evaluated + [u for pool in held_out.values() for u in pool]
        needed = evaluated if condition.kind is not None else _ordered_union(corpus, clean_needs)
        # The bank itself (not its id, which a new bank may reuse) keys noisy features; clean ones need none.
        bank_key = noise_bank if condition.kind is not None else None
        key = (str(corpus.root), condition.name, seed, bank_key, tuple(str(u.path) for u in needed))
        table = None if feature_cache is None else feature_cache.get(key)
        if table is None:
            table = extract_features(needed, corpus.classes, condition=condition, noise_bank=noise_bank, seed=seed,
                                     progress=progress, desc=f"{corpus.name} {condition.name} features")
            if feature_cache is not None:
                feature_cache[key] = table
        for path, reason in table.failed:
            logger.warning("%s: left out of %s: %s (%s)", run_dir.name, condition.name, path, reason)
        failed = [(path, reason) for path, reason in table.failed if Path(path) in evaluated_paths]
        results.append(_score_condition(condition, table, folds, cross, failed + missing, bar, scale))
        if condition.kind is None and embeddings:
            collected = _collect_embeddings(embedding_fold, table, held_out[embedding_fold.name], cross, seed)
            per_fold = {fold.name: _probe_fold(fold, table, held_out[fold.name], seed)
                        for fold in folds if hasattr(fold.model, "embed")}
    bar.close()
    per_fold = {name: scores for name, scores in per_fold.items() if scores is not None}
    return RunResults(
        run_dir=run_dir, model=str(run["config"]["model"]), protocol=str(run.get("protocol", "")),
        train_corpus=str(run["corpus"]), eval_corpus=corpus.name, eval_root=Path(corpus.root), cross_corpus=cross,
        classes=tuple(corpus.classes), folds=tuple(f.name for f in folds), conditions=tuple(results),
        embeddings=collected, disentanglement=mean_over_folds([s["spaces"] for s in per_fold.values()]) if per_fold
        else None, disentanglement_folds=per_fold or None, dimension_scale=scale,
    )


def predict_rows(model: torch.nn.Module, table: FeatureTable, rows: Sequence[int], config: TrainConfig) -> np.ndarray:
    """The predicted class of each row, in batches (eval mode, no gradients; as in training)."""
    return row_logits(model, table, rows, config).argmax(1)


def row_scores(model: torch.nn.Module, table: FeatureTable, rows: Sequence[int], config: TrainConfig) -> np.ndarray:
    """The model's outputs ``[N, C + D]`` (float32) of each row: the class logits, then the dimension values on [0, 1]
    for a model with a dimensional head (``ser_fast.models.targets``)."""
    chunks = run_rows(model, table, list(rows), config, lambda m, x, n: m(x, n))
    return torch.cat(chunks).numpy() if chunks else np.zeros((0, 0), np.float32)


def row_logits(model: torch.nn.Module, table: FeatureTable, rows: Sequence[int], config: TrainConfig) -> np.ndarray:
    """The class logits ``[N, C]`` (float32) of each row, as :func:`predict_rows` computes them; a ValueError for a
    model without classes."""
    if not model.num_classes:
        raise ValueError("the model predicts arousal, valence and dominance only (target 'dimensional'): it has no "
                         "classes; score it with evaluate_run")
    return row_scores(model, table, rows, config)[:, :model.num_classes]


def _score_condition(condition: NoiseCondition, table: FeatureTable, folds: list[FoldModel], cross: bool,
                     skipped: list[tuple[str, str]], bar, scale: DimensionScale | None = None) -> ConditionResult:
    row_of = {u.path: i for i, u in enumerate(table.utterances)}
    labels, predictions, per_fold, scored_rows, item_rows, item_folds = [], [], {}, set(), [], []
    logits, temperatures = [], {}
    rated, predicted, unrated = [], [], {}
    for fold in folds:
        rows = [row_of[u.path] for u in fold.targets if u.path in row_of]
        if rows:
            fold_logits, fold_values = split_scores(torch.from_numpy(row_scores(fold.model, table, rows,
                                                                                 fold.config)), len(fold.classes))
            scored_rows.update(rows)
            if fold_logits is not None:
                fold_labels = table.labels[rows].numpy()
                logits.append(fold_logits.numpy())
                temperatures[fold.name] = fold.temperature
                fold_predictions = logits[-1].argmax(1)
                per_fold[fold.name] = ClassificationScores.from_predictions(fold_labels, fold_predictions,
                                                                            fold.classes)
                labels.append(fold_labels)
                predictions.append(fold_predictions)
                item_rows.extend(rows)
                item_folds.extend([fold.name] * len(rows))
            if fold_values is not None:
                kept, ratings = ratings_within([table.utterances[row] for row in rows], scale)
                rated.append(ratings)
                predicted.append(scale.restore(fold_values.numpy()[kept]))
                unrated.update({str(table.utterances[row].path): NOT_RATED
                                for row in set(rows) - {rows[k] for k in kept}})
        else:
            logger.warning("fold %s: none of its %d utterances could be evaluated under %s", fold.name,
                           len(fold.targets), condition.name)
        bar.update(1)
    if not scored_rows:
        raise ValueError(f"no utterance could be evaluated under {condition.name}: all {len(skipped)} were left out "
                         f"(unreadable, not mixable, or not in the corpus), e.g. {skipped[:3]}")
    dimensional = _dimensional_scores(rated, predicted, condition, cross)
    skipped = skipped + sorted(unrated.items())
    if not labels:
        return ConditionResult(condition, None, {}, cross, len(scored_rows), tuple(skipped), dimensional=dimensional)
    confidence = ConfidenceScores.from_folds(logits, labels, temperatures)
    labels, predictions = np.concatenate(labels), np.concatenate(predictions)
    pooled = ClassificationScores.from_predictions(labels, predictions, folds[0].classes)
    utterances = [table.utterances[i] for i in item_rows]
    items = ScoredItems(tuple(str(u.path) for u in utterances), tuple(u.speaker for u in utterances),
                        tuple(item_folds), labels, predictions)
    return ConditionResult(condition, pooled, per_fold, cross, len(scored_rows), tuple(skipped), items, confidence,
                           dimensional)


def _dimensional_scores(rated: list[np.ndarray], predicted: list[np.ndarray], condition: NoiseCondition,
                        cross: bool) -> DimensionalScores | None:
    """CCC, Pearson and MAE of the folds' dimension predictions, as the class scores are: all folds' together within
    the corpus (each fold predicts its own test speakers), the mean of the folds' scores across corpora (each fold
    predicts the whole corpus). None for a categorical model, or (with a warning) when fewer than two utterances are
    rated."""
    if not rated:
        return None
    if len(rated[0]) < 2:
        logger.warning("%s: %d rated utterance(s); arousal/valence/dominance scores need 2", condition.name,
                       len(rated[0]))
        return None
    if cross:
        return DimensionalScores.mean_of([DimensionalScores.from_predictions(targets, values, DIMENSIONS)
                                          for targets, values in zip(rated, predicted)])
    return DimensionalScores.from_predictions(np.concatenate(rated), np.concatenate(predicted), DIMENSIONS)


def _collect_embeddings(fold: FoldModel, table: FeatureTable, pool: list[Utterance], cross: bool,
                        seed: int) -> Embeddings | None:
    rows = _sampled_rows(table, pool, seed)
    if not rows:
        return None
    test_paths = {u.path for u in pool} if cross else {Path(p) for p in fold.parts["test"]}
    utterances = [table.utterances[i] for i in rows]
    return Embeddings(
        fold=fold.name, classes=fold.classes, spaces=embed_rows(fold.model, table, rows, fold.config),
        labels=table.labels[rows].numpy(), speakers=tuple(u.speaker for u in utterances),
        parts=tuple("test" if u.path in test_paths else "validation" for u in utterances),
    )


def _held_out(fold: FoldModel, corpus: Corpus, cross: bool) -> list[Utterance]:
    """The utterances a fold model never trained on: its validation and test speakers within the corpus (the validation
    ones picked its best epoch, but none of their utterances trained it), the whole corpus across corpora."""
    return list(corpus.utterances) if cross else matched(corpus, fold.parts["validation"] + fold.parts["test"])[0]


def _sampled_rows(table: FeatureTable, pool: list[Utterance], seed: int) -> list[int]:
    """The rows of ``table`` holding ``pool``'s utterances, at most ``MAX_EMBEDDING_POINTS`` of them drawn by
    ``seed``."""
    row_of = {u.path: i for i, u in enumerate(table.utterances)}
    rows = [row_of[u.path] for u in pool if u.path in row_of]
    if len(rows) > MAX_EMBEDDING_POINTS:
        chosen = np.random.default_rng(seed).choice(len(rows), MAX_EMBEDDING_POINTS, replace=False)
        rows = [rows[i] for i in sorted(chosen)]
    return rows


def _probe_fold(fold: FoldModel, table: FeatureTable, pool: list[Utterance], seed: int) -> dict | None:
    """:func:`~ser_fast.runs.disentanglement.disentanglement` of one DSNet fold model's h, z_er and z_ei (z_ei only
    where a loss trained it) on ``pool``, with how many utterances and speakers it saw; None with fewer than 2."""
    rows = _sampled_rows(table, pool, seed)
    if len(rows) < 2:
        return None
    speakers = [table.utterances[i].speaker for i in rows]
    spaces = embed_rows(fold.model, table, rows, fold.config)
    if not fold.model.trains_z_ei:
        del spaces["z_ei"]
    return {"spaces": disentanglement(spaces, table.labels[rows].numpy(), speakers, seed=seed),
            "utterances": len(rows), "speakers": len(set(speakers))}


def _conditions(noise_kinds, snrs_db, bank: NoiseBank | None) -> list[NoiseCondition]:
    if noise_kinds is None or (isinstance(snrs_db, Sequence) and not isinstance(snrs_db, str) and len(snrs_db) == 0):
        return [NoiseCondition(None, None)]  # no noise, or no SNR to mix it at: clean speech only
    if noise_kinds == "all":
        noise_kinds = bank.types
    if isinstance(noise_kinds, str) or not isinstance(noise_kinds, Sequence):
        raise ValueError(f"noise_kinds must be None, \"all\" or a sequence of noise types, got {noise_kinds!r}")
    unknown = [k for k in noise_kinds if k not in bank.types]
    if unknown:
        raise ValueError(f"noise_kinds: unknown noise type(s) {unknown}; the noise bank has {bank.types}")
    if isinstance(snrs_db, (str, bytes)) or not isinstance(snrs_db, Sequence) or not all(
            isinstance(s, numbers.Real) and not isinstance(s, bool) for s in snrs_db):
        raise ValueError(f"snrs_db must be a sequence of SNRs in dB, got {snrs_db!r}")
    return list(noise_grid(list(noise_kinds), [float(s) for s in snrs_db]))


def fold_models(run_dir: Path, run: dict, corpus: Corpus) -> tuple[bool, list[FoldModel]]:
    """Whether ``corpus`` is another than the one the run was trained on (by name and root: cross-corpus), and the run's
    trained folds in run.json's order; a fold without a model yet is left out, loudly."""
    cross = not (run["corpus"] == corpus.name and Path(run["root"]).resolve() == Path(corpus.root).resolve())
    folds = []
    for name, fold_dir in trained_folds(run_dir, run):
        parts = read_fold_parts(fold_dir)
        saved = read_model_files(fold_dir)
        model, config, classes = model_from_saved(saved)
        targets, missing = (list(corpus.utterances), []) if cross else matched(corpus, parts["test"])
        folds.append(FoldModel(name, fold_dir, model, config, classes, parts, targets, missing,
                               saved_calibration(saved).temperature))
    return cross, folds


def matched(corpus: Corpus, paths: Sequence[str]) -> tuple[list[Utterance], list[tuple[str, str]]]:
    """The utterances of ``corpus`` at ``paths``, and ``(path, reason)`` for the paths it lacks."""
    by_path = {Path(u.path): u for u in corpus}
    found = [by_path[Path(p)] for p in paths if Path(p) in by_path]
    return found, [(str(p), NOT_IN_CORPUS) for p in paths if Path(p) not in by_path]


def _ordered_union(corpus: Corpus, utterances: Sequence[Utterance]) -> list[Utterance]:
    """The utterances once each, in corpus order: the same run and corpus give the same noisy mixtures."""
    wanted = {u.path for u in utterances}
    return [u for u in corpus if u.path in wanted]
