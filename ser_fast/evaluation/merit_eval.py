"""Scoring a Sparse MERIT run: emotion recognition (macro-F1, UAR) and enhancement (SSNR, wideband PESQ, STOI) on the
test speech clean and mixed with seen and unseen noise types at each SNR, and how each task's router spreads frames over
the experts. Each fold model scores its own fold's test utterances within-corpus and the whole corpus cross-corpus; the
predictions of all folds are concatenated either way. Enhancement scores are means over utterances. A model with a
dimensional head (``target`` "dimensional" or "both") is also scored on arousal, valence and dominance: CCC, Pearson's r
and MAE per dimension, on the corpus' rating scale (a model without classes has no classification scores)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ser_fast.data.corpus import Corpus, Utterance
from ser_fast.data.dimensions import DIMENSIONS, DimensionScale, ratings_within, with_dimensions
from ser_fast.data.noise import NoiseBank
from ser_fast.data.noisy_pairs import readable
from ser_fast.evaluation.confidence import ConfidenceScores
from ser_fast.evaluation.enhancement import enhancement_scores
from ser_fast.evaluation.evaluate import (
    NOT_RATED,
    FoldModel,
    ScoredItems,
    evaluation_scale,
    fold_models,
    plain_fields,
)
from ser_fast.frontend.constants import SAMPLE_RATE
from ser_fast.models.merit.experts import TASKS
from ser_fast.models.targets import has_classes, has_dimensions
from ser_fast.runs.layout import check_run_dir, read_run_json
from ser_fast.runs.metrics import ClassificationScores, DimensionalScores
from ser_fast.runs.predict import SERPredictions, predict_waveforms
from ser_fast.runs.registry import WAVEFORM, model_kind

logger = logging.getLogger(__name__)

TEST_SNRS_DB = (-5.0, 0.0, 5.0)
SE_METRICS = ("ssnr", "pesq", "stoi")


@dataclass(frozen=True)
class MeritCondition:
    """One test condition: ``noise_set`` is "clean", "seen" or "unseen"; ``enhancement`` maps each of
    :func:`enhancement_scores`' keys to its mean over utterances (None if the package is missing; empty when clean).
    ``items``: the predictions behind ``scores``; ``enhancement_items``: each SE metric per item in the order of the
    tested utterances (NaN where it could not be computed). Neither is in :meth:`as_dict`. ``scores``, ``items`` and
    ``confidence`` are None for a model without classes; ``dimensional`` holds the arousal, valence and dominance
    scores of a model with a dimensional head (None otherwise, and then not in :meth:`as_dict`)."""

    noise_set: str
    snr_db: float | None
    scores: ClassificationScores | None
    enhancement: dict[str, float | None]
    items: ScoredItems | None = None
    enhancement_items: dict[str, np.ndarray] | None = None
    confidence: ConfidenceScores | None = None
    dimensional: DimensionalScores | None = None

    @property
    def name(self) -> str:
        return "clean" if self.snr_db is None else f"{self.noise_set} {self.snr_db:g} dB"

    def as_dict(self) -> dict:
        scores = self.scores
        classified = dict.fromkeys(("macro_f1", "uar", "wa", "scores")) if scores is None else {
            "macro_f1": scores.macro_f1, "uar": scores.uar, "wa": scores.wa, "scores": scores.as_dict()}
        values = {"condition": self.name, "noise_set": self.noise_set, "snr_db": self.snr_db, **classified,
                  "enhancement": self.enhancement,
                  "calibration": None if self.confidence is None else self.confidence.as_dict()}
        if self.dimensional is not None:
            values["dimensional"] = self.dimensional.as_dict()
        return values


@dataclass(frozen=True)
class MeritResults:
    """A MERIT run's evaluation on one corpus; ``expert_usage[task]`` is each expert's share of the
    task's routed frames over every noisy test condition (None for designs without routers). ``target``: the
    model's (``ser_fast.models.targets``); ``dimension_scale``: the scale the corpus rates arousal, valence and
    dominance on, which the MAE is on (None for a categorical model; neither is in :meth:`as_dict` then)."""

    run_dir: Path
    design: str
    train_corpus: str
    eval_corpus: str
    cross_corpus: bool
    classes: tuple[str, ...]
    folds: tuple[str, ...]
    seen_noise: tuple[str, ...]
    unseen_noise: tuple[str, ...]
    conditions: tuple[MeritCondition, ...]
    expert_usage: dict[str, list[float]] | None
    skipped: tuple[tuple[str, str], ...]
    protocol: str = ""
    target: str = "categorical"
    dimension_scale: DimensionScale | None = None

    def condition(self, name: str) -> MeritCondition:
        for result in self.conditions:
            if result.name == name:
                return result
        raise KeyError(f"no condition {name!r}; have {[c.name for c in self.conditions]}")

    def as_dict(self) -> dict:
        skip = ("run_dir", "skipped") + (("target", "dimension_scale") if self.target == "categorical" else ())
        return {"run_dir": str(self.run_dir), "model": "merit", **plain_fields(self, skip=skip),
                "skipped": [{"path": p, "reason": r} for p, r in self.skipped]}

    def write_json(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_dict(), indent=1))
        return path


def evaluate_merit_run(run_dir: str | os.PathLike, corpus: Corpus, *, bank: NoiseBank | None = None,
                       unseen_noise: Sequence[str] | None = None, snrs_db: Sequence[float] = TEST_SNRS_DB,
                       enhancement: bool = True, seed: int = 0, progress: bool = False,
                       dimension_scale: DimensionScale | None = None) -> MeritResults:
    """Score every trained fold of a MERIT run on ``corpus``: clean, then each seen noise type and each ``unseen_noise``
    type (default: the bank's others) at each SNR; ``enhancement=False`` skips the costly SE metrics. A model with a
    dimensional head is scored against the utterances' ratings on ``dimension_scale``, by default the run's within
    its corpus and the corpus' own across corpora; an utterance without a rating within it is left out, with the
    reason."""
    run_dir = check_run_dir(run_dir)
    run = read_run_json(run_dir)
    if model_kind(run["config"].get("model")).input != WAVEFORM:
        raise ValueError(f"{run_dir} is a {run['config'].get('model')!r} run; evaluate it with evaluate_run")
    bank = bank or NoiseBank()
    seen = tuple(run["config"]["seen_noise"])
    unseen = tuple(t for t in bank.types if t not in seen) if unseen_noise is None else tuple(unseen_noise)
    unknown = sorted(set(seen + unseen) - set(bank.types))
    if unknown:
        raise ValueError(f"noise types {unknown} are not in the noise bank ({bank.types})")
    if not all(isinstance(s, (int, float)) and not isinstance(s, bool) and np.isfinite(s) for s in snrs_db):
        raise ValueError(f"snrs_db must be finite numbers of dB, got {list(snrs_db)!r}")
    target = run["config"].get("target", "categorical")
    classes = tuple(run["classes"]) if has_classes(target) else ()
    if has_classes(target) and tuple(corpus.classes) != classes:
        raise ValueError(f"the run predicts {classes}; corpus {corpus.name!r} has {tuple(corpus.classes)}")
    cross, folds = fold_models(run_dir, run, corpus)
    scale = evaluation_scale(run, corpus, cross, dimension_scale) if has_dimensions(target) else None
    skipped: list[tuple[str, str]] = []
    for index, fold in enumerate(folds):
        utterances, unreadable = readable(fold.targets)
        utterances, unrated = _rated(corpus, utterances, scale, target)
        folds[index] = replace(fold, targets=utterances)
        skipped += fold.missing + [(str(p), r) for p, r in unreadable] + unrated
    skipped = list(dict(reversed(skipped)).items())[::-1]  # each item once (cross-corpus, every fold names it)
    for path, reason in skipped:
        logger.warning("left out of the evaluation: %s (%s)", path, reason)
    grid: list[tuple[str, float | None, tuple[str, ...]]] = [("clean", None, ())]
    grid += [(name, float(snr), kinds) for name, kinds in (("seen", seen), ("unseen", unseen)) if kinds
             for snr in snrs_db]
    conditions, usage = [], None
    bar = tqdm(total=len(grid) * len(folds), desc=f"merit on {corpus.name}", disable=not progress, unit="pass")
    for index, (noise_set, snr, kinds) in enumerate(grid):
        outputs, se_rows, tested, tested_folds = [], [], [], []
        for fold in folds:
            out = predict_waveforms(fold.model, fold.targets, classes, bank if snr is not None else None, kinds, snr,
                                    seed=[seed, index], keep_enhanced=enhancement and snr is not None)
            outputs.append(out)
            tested += fold.targets
            tested_folds += [fold.name] * len(fold.targets)
            if out.expert_counts is not None and snr is not None:
                usage = out.expert_counts if usage is None else usage + out.expert_counts
            se_rows += [_enhancement_row(batch, enhanced, i) for batch, enhanced in out.batches
                        for i in range(len(batch.lengths))]
            bar.update()
        scores, items, confidence = None, None, None
        if has_classes(target):
            scores, items, confidence = _classification(outputs, folds, tested, tested_folds, classes)
        dimensional = None if scale is None else _dimensional(outputs, tested, scale)
        kept = [row for row in se_rows if row is not None]
        conditions.append(MeritCondition(noise_set, snr, scores, _mean_rows(kept), items,
                                         _per_item(se_rows) if len(se_rows) == len(tested) else None, confidence,
                                         dimensional))
    bar.close()
    shares = None if usage is None else {task: (row / max(row.sum(), 1)).tolist() for task, row in zip(TASKS, usage)}
    return MeritResults(run_dir, run["config"]["network"]["design"], run["corpus"], corpus.name, cross, classes,
                        tuple(fold.name for fold in folds), seen, unseen, tuple(conditions), shares, tuple(skipped),
                        str(run.get("protocol", "")), target, scale)


def _rated(corpus: Corpus, utterances: list[Utterance], scale: DimensionScale | None,
           target: str) -> tuple[list[Utterance], list[tuple[str, str]]]:
    """The utterances a model of ``target`` is tested on, and ``(item, reason)`` for each rated outside ``scale``, or
    not at all: a dimensional model is tested on the rated ones only, one with classes on all (its dimensions on the
    rated ones, :func:`_dimensional`)."""
    if scale is None:
        return utterances, []
    rated = with_dimensions(corpus.subset(utterances), scale)
    reasons = [(s.item, s.reason) for s in rated.skipped]
    if has_classes(target):
        return utterances, [(item, NOT_RATED) for item, _ in reasons]
    return rated.utterances, reasons


def _classification(outputs: list[SERPredictions], folds: list[FoldModel], tested: list[Utterance],
                    tested_folds: list[str],
                    classes: tuple[str, ...]) -> tuple[ClassificationScores, ScoredItems, ConfidenceScores]:
    """The scores, the scored items and the confidence of the folds' pooled class predictions."""
    labels = [out.labels for out in outputs]
    confidence = ConfidenceScores.from_folds([out.logits for out in outputs], labels,
                                             {fold.name: fold.temperature for fold in folds})
    labels, predictions = np.concatenate(labels), np.concatenate([out.predictions for out in outputs])
    scores = ClassificationScores.from_predictions(labels, predictions, classes)
    items = ScoredItems(tuple(str(u.path) for u in tested), tuple(u.speaker for u in tested), tuple(tested_folds),
                        labels, predictions)
    return scores, items, confidence


def _dimensional(outputs: list[SERPredictions], tested: list[Utterance],
                 scale: DimensionScale) -> DimensionalScores | None:
    """CCC, Pearson's r and MAE per dimension of the folds' pooled predictions of the rated utterances against their
    ratings, both on the corpus' scale (CCC and r are the same on [0, 1]; the MAE is in the corpus' rating units);
    None (logged) with fewer than two rated."""
    kept, ratings = ratings_within(tested, scale)
    if len(kept) < 2:
        logger.warning("%d rated utterance(s) tested; arousal/valence/dominance scores need 2", len(kept))
        return None
    predicted = scale.restore(np.concatenate([out.dimensions for out in outputs])[kept])
    return DimensionalScores.from_predictions(ratings, predicted, DIMENSIONS)


def _enhancement_row(batch, enhanced, i: int) -> dict[str, float | None] | None:
    """One utterance's SE scores, or None (logged) when a metric rejects it (PESQ finds no speech)."""
    n = int(batch.lengths[i])
    try:
        return enhancement_scores(batch.clean[i, :n].numpy(), batch.noisy[i, :n].numpy(), enhanced[i, :n].numpy(),
                                  SAMPLE_RATE)
    except ValueError as error:
        logger.warning("enhancement scores left out for one utterance: %s", error)
        return None


def _per_item(rows: list[dict[str, float | None] | None]) -> dict[str, np.ndarray] | None:
    """Each SE metric as an array over the items, NaN where an utterance or the metric's package gave none."""
    keys = next((list(row) for row in rows if row is not None), None)
    if keys is None:
        return None
    return {key: np.array([np.nan if row is None or row[key] is None else row[key] for row in rows], dtype=np.float64)
            for key in keys}


def _mean_rows(rows: list[dict[str, float | None]]) -> dict[str, float | None]:
    """Each metric's mean over the utterances that have it (None where none has)."""
    values = {key: [r[key] for r in rows if r[key] is not None] for key in (rows[0] if rows else ())}
    return {key: float(np.mean(v)) if v else None for key, v in values.items()}
