"""A grid's cells' predictions as ``results.json``: one row per system, setting and metric, and the paired comparisons
the paper makes, with the statistics of ``ser_fast.evaluation.statistics``.

Each seed's predictions are pooled over the folds (every test utterance once within the corpus; every utterance once
per fold model across corpora), as the papers pool theirs. A system's seeds and two compared systems are paired item by
item: the same utterance tested by the same fold."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ser_fast.data.corpus import Corpus
from ser_fast.evaluation.paper_numbers import paper_value
from ser_fast.evaluation.statistics import compare_systems, compare_values, summarize_system, summarize_values
from ser_fast.reproduce.experiments import Experiment, System, paper_setting, pooled_noise_settings
from ser_fast.reproduce.grid import Cell, GridSettings, read_predictions
from ser_fast.runs.atomic import atomic_write_text

logger = logging.getLogger(__name__)

RESULTS_JSON = "results.json"
RESULTS_FORMAT = 1


class MissingCells(RuntimeError):
    """Some cells of the grid have no predictions yet (a shard not run, or a cell that failed)."""


def pooled_predictions(cells: Sequence[Cell], systems: Sequence[System], setting: str, cells_dir: Path,
                       settings: GridSettings, corpus: Corpus) -> dict:
    """``{"keys": [(fold, path)], "labels": [N], "speakers": [N], "classes", "predictions": {system: [S, N]},
    "enhancement": {system: {metric: [S, N] float, NaN where missing}}}`` for one setting: items in a fixed order
    shared by every system and seed. An item some system or seed lacks (an
    utterance that failed to decode for one of them) is left out of all, loudly. A MissingCells error lists cells with
    no predictions."""
    tables, missing = {}, []
    for cell in cells:
        values = read_predictions(cell.folder(cells_dir, settings, corpus), setting)
        if values is None:
            missing.append(cell.label)
            continue
        table = tables.setdefault((cell.system.name, cell.seed), {})
        enhancement = values.get("enhancement") or {}
        for index, (path, speaker, fold, label, prediction) in enumerate(zip(
                values["paths"], values["speakers"], values["folds"], values["labels"], values["predictions"])):
            scores = {name: per_item[index] for name, per_item in enhancement.items()}
            table[(fold, path)] = (speaker, int(label), int(prediction), scores)
        classes = tuple(values["classes"])
    if missing:
        raise MissingCells(f"{len(missing)} cell(s) have no predictions in {setting!r}: {', '.join(missing[:6])}"
                           f"{' ...' if len(missing) > 6 else ''}; run the grid (or its remaining shards) first")
    common = set.intersection(*(set(t) for t in tables.values()))
    dropped = set.union(*(set(t) for t in tables.values())) - common
    if dropped:
        logger.warning("%s: %d item(s) tested for some systems or seeds only are left out, e.g. %s", setting,
                       len(dropped), sorted(dropped)[:3])
    keys = sorted(common)
    first = next(iter(tables.values()))
    seeds = sorted({seed for _, seed in tables})
    return {
        "keys": keys, "classes": classes,
        "speakers": [first[k][0] for k in keys],
        "labels": np.array([first[k][1] for k in keys], dtype=np.int64),
        "predictions": {s.name: np.array([[tables[(s.name, seed)][k][2] for k in keys] for seed in seeds],
                                         dtype=np.int64) for s in systems},
        "enhancement": {s.name: _enhancement(tables, s.name, seeds, keys) for s in systems},
    }


def _enhancement(tables: dict, system: str, seeds: list[int], keys: list) -> dict[str, np.ndarray]:
    metrics = dict.fromkeys(m for seed in seeds for k in keys for m in tables[(system, seed)][k][3])
    return {metric: np.array([[_number(tables[(system, seed)][k][3].get(metric)) for k in keys] for seed in seeds])
            for metric in metrics}


def _number(value) -> float:
    return np.nan if value is None else float(value)


def grid_results(experiment: Experiment, systems: Sequence[System], cells: Sequence[Cell], tested: Sequence[str],
                 cells_dir: Path, settings: GridSettings, corpus: Corpus, *, n_resamples: int = 2000,
                 n_permutations: int = 1999) -> dict:
    """``{"experiment", "settings", "tested", "pooled", "rows", "comparisons", "confusions"}`` (metrics in %).
    ``pooled``: the settings that take every noise type at one SNR together (``"all@<snr>"``,
    :func:`~ser_fast.reproduce.experiments.pooled_noise_settings`), scored like the tested ones."""
    statistics = {"n_resamples": n_resamples, "n_permutations": n_permutations}
    rows, comparisons, confusions, by_setting = [], [], {}, {}
    pooled_settings = pooled_noise_settings(tested)
    kept = {member for members in pooled_settings.values() for member in members}
    for setting in tested:
        pooled = pooled_predictions(cells, systems, setting, cells_dir, settings, corpus)
        if setting in kept:
            by_setting[setting] = pooled
        _score_setting(experiment, systems, setting, pooled, rows, comparisons, confusions, statistics)
    for setting, members in pooled_settings.items():
        pooled = concatenated([by_setting[member] for member in members], members)
        _score_setting(experiment, systems, setting, pooled, rows, comparisons, confusions, statistics)
    return {"format": RESULTS_FORMAT, "experiment": experiment.name, "paper": experiment.paper,
            "classes": list(pooled["classes"]), "systems": [s.name for s in systems], "tested": list(tested),
            "pooled": pooled_settings, "settings": asdict(settings), "corpus": corpus.name, "rows": rows,
            "comparisons": comparisons, "confusions": confusions}


def concatenated(pooled: Sequence[dict], names: Sequence[str]) -> dict:
    """Several settings' :func:`pooled_predictions` as one: every setting's items, keys prefixed by its name."""
    first = pooled[0]
    systems = list(first["predictions"])
    return {
        "keys": [(name, *key) for name, part in zip(names, pooled) for key in part["keys"]],
        "classes": first["classes"],
        "speakers": [speaker for part in pooled for speaker in part["speakers"]],
        "labels": np.concatenate([part["labels"] for part in pooled]),
        "predictions": {s: np.concatenate([part["predictions"][s] for part in pooled], axis=1) for s in systems},
        "enhancement": {s: {metric: np.concatenate([part["enhancement"][s][metric] for part in pooled], axis=1)
                            for metric in first["enhancement"][s]
                            if all(metric in part["enhancement"][s] for part in pooled)} for s in systems},
    }


def _score_setting(experiment: Experiment, systems: Sequence[System], setting: str, pooled: dict, rows: list,
                   comparisons: list, confusions: dict, statistics: dict) -> None:
    """Append one setting's rows, comparisons and confusion matrices. The bootstrap draws the items that test one
    utterance (fold models across corpora, noise types in a pooled setting) together: their ``utterances`` id is the
    path, the last part of every key."""
    labels, speakers, classes = pooled["labels"], pooled["speakers"], pooled["classes"]
    same = {"utterances": [key[-1] for key in pooled["keys"]], "n_resamples": statistics["n_resamples"]}
    paired = {**same, "n_permutations": statistics["n_permutations"]}
    chosen = {s.name for s in systems}
    for system in systems:
        predictions = pooled["predictions"][system.name]
        for metric in experiment.metrics:
            summary = summarize_system(labels, predictions, speakers, metric, len(classes), **same)
            paper = paper_value(experiment.name, system.name, paper_setting(setting), metric)
            rows.append({"system": system.name, "setting": setting, "metric": metric, **summary,
                         "paper": None if paper is None else {"value": paper.value, "source": paper.source}})
        confusions.setdefault(setting, {})[system.name] = _confusion(labels, predictions, len(classes))
        for metric in experiment.enhancement:
            values = pooled["enhancement"][system.name].get(metric)
            if values is not None and not np.isnan(values).all():
                summary = summarize_values(values, speakers, **same)
                rows.append({"system": system.name, "setting": setting, "metric": metric, **summary, "paper": None})
    for pair in experiment.comparisons:
        a, b = pair.a, pair.b
        if a not in chosen or b not in chosen:
            continue
        for metric in experiment.metrics:
            result = compare_systems(labels, pooled["predictions"][a], pooled["predictions"][b], speakers, metric,
                                     len(classes), **paired)
            comparisons.append({"a": a, "b": b, "setting": setting, "metric": metric, **result})
        for metric in experiment.enhancement:
            values_a = pooled["enhancement"][a].get(metric)
            values_b = pooled["enhancement"][b].get(metric)
            if values_a is None or values_b is None or np.isnan(values_a + values_b).all():
                continue
            result = compare_values(values_a, values_b, speakers, **paired)
            comparisons.append({"a": a, "b": b, "setting": setting, "metric": metric, **result})


def _confusion(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> list[list[int]]:
    """Counts over every seed: ``[true][predicted]``."""
    flat = np.bincount((labels[None, :] * num_classes + predictions).ravel(), minlength=num_classes ** 2)
    return flat.reshape(num_classes, num_classes).tolist()


def write_results(results: dict, out: Path) -> Path:
    path = out / RESULTS_JSON
    atomic_write_text(path, json.dumps(results, indent=1))
    return path
