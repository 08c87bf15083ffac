"""The run folder: what a training run writes, where, and the one rule that picks its fold.

    RUN_DIR/run.json                     corpus, root, protocol, classes, settings, fold names
    RUN_DIR/folds/<fold>/fold.json       the fold's train/validation/test utterance paths
    RUN_DIR/folds/<fold>/metrics.jsonl   one JSON line per epoch
    RUN_DIR/folds/<fold>/latest.json     the latest checkpoint-NNNN/ (``ser_fast.runs.checkpoint``)
    RUN_DIR/folds/<fold>/model.safetensors + config.json
                                         the best epoch's model (``ser_fast.runs.model_files``);
                                         EDRL-MEA adds alignment.json

A fold's folder is a saved model folder too, as is one written by ``EmotionRecognizer.save``."""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ser_fast.data.corpus import Corpus
from ser_fast.data.protocols import Fold
from ser_fast.runs.model_files import CONFIG_FILE, WEIGHTS_FILE, ModelFileError
from ser_fast.runs.names import FOLD_JSON, FOLDS, METRICS, RUN_JSON
from ser_fast.runs.registry import model_kind

logger = logging.getLogger(__name__)

PARTS = ("train", "validation", "test")
RUN_KEYS = ("corpus", "root", "classes", "config")


def write_run_json(run_dir: Path, corpus: Corpus, protocol: str, config: dict, folds: Sequence[Fold]) -> None:
    """``run.json``: what the evaluation needs to find the corpus, the folds and the model's settings."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RUN_JSON).write_text(json.dumps({
        "corpus": corpus.name, "root": str(corpus.root), "protocol": protocol, "classes": list(corpus.classes),
        "config": config, "folds": [f.name for f in folds],
    }, indent=1))


def check_run_dir(run_dir: object) -> Path:
    if not isinstance(run_dir, (str, os.PathLike)):
        raise TypeError(f"run_dir must be a path (str or os.PathLike), got {type(run_dir).__name__}")
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {run_dir} does not exist")
    return run_dir


def read_run_json(run_dir: Path) -> dict[str, Any]:
    path = run_dir / RUN_JSON
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {run_dir} is not a training run folder (train_run writes one)")
    try:
        run = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise ValueError(f"{path}: not a readable run description ({error})") from None
    missing = [key for key in RUN_KEYS if key not in run] if isinstance(run, dict) else list(RUN_KEYS)
    if missing:
        raise ValueError(f"{path} lacks {missing}: expected the run.json that train_run writes")
    return run


def write_fold_json(run_dir: Path, fold: Fold) -> Path:
    """The fold's folder with ``fold.json`` (its train/validation/test paths); returns the folder."""
    fold_dir = run_dir / FOLDS / fold.name
    fold_dir.mkdir(parents=True, exist_ok=True)
    (fold_dir / FOLD_JSON).write_text(json.dumps(
        {part: [str(u.path) for u in getattr(fold, part)] for part in PARTS}, indent=1))
    return fold_dir


def read_fold_parts(fold_dir: Path) -> dict[str, list[str]]:
    """``fold.json``: the paths of the fold's train, validation and test utterances."""
    path = fold_dir / FOLD_JSON
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the fold's utterance lists are needed")
    parts = json.loads(path.read_text())
    return {part: list(parts.get(part, [])) for part in PARTS}


def fold_folder(run_dir: Path, name: object) -> Path:
    """``run_dir/folds/<name>`` for a fold that run.json lists; a :class:`ModelFileError` for a name that is not a plain
    folder name (an absolute path or ``..`` would load a model from outside the run)."""
    if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name or "\\" in name:
        raise ModelFileError(f"{Path(run_dir) / RUN_JSON}: fold {name!r} is not a folder name of this run (a fold "
                             "is named like Session1 or spk03, never a path); the file was edited. Restore it, or "
                             "point at the fold's folder directly.")
    return Path(run_dir) / FOLDS / name


def trained_folds(run_dir: Path, run: dict[str, Any]) -> list[tuple[str, Path]]:
    """``(name, folder)`` of the run's trained folds in run.json's order; a fold without a model yet is left out,
    loudly, and a run without any is a FileNotFoundError."""
    folds_dir = run_dir / FOLDS
    if not folds_dir.is_dir():
        raise FileNotFoundError(f"{folds_dir} not found: {run_dir} holds no trained fold")
    names = run.get("folds") or sorted(p.name for p in folds_dir.iterdir() if p.is_dir())
    trained = []
    for name in names:
        fold_dir = fold_folder(run_dir, name)
        if (fold_dir / WEIGHTS_FILE).is_file():
            trained.append((name, fold_dir))
        else:
            logger.warning("%s: fold %s has no trained model yet; left out of the evaluation", run_dir, name)
    if not trained:
        raise FileNotFoundError(f"{folds_dir} holds no trained fold (no <fold>/{WEIGHTS_FILE}): train the run first")
    return trained


def start_metrics(fold_dir: Path) -> None:
    (fold_dir / METRICS).write_text("")


def append_metrics(fold_dir: Path, record: dict[str, Any]) -> None:
    with open(fold_dir / METRICS, "a") as f:
        f.write(json.dumps(record) + "\n")


def read_json_records(path: Path) -> list[dict[str, Any]]:
    """A JSON file's object, or a JSON-lines file's objects (lines cut short by a kill are skipped)."""
    text = path.read_text()
    if path.suffix == ".jsonl":
        records = []
        for line in text.splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return [r for r in records if isinstance(r, dict)]
    value = json.loads(text)
    return [value] if isinstance(value, dict) else []


def validation_score(fold_dir: Path) -> float:
    """The fold's selection score by its model kind's rule (``ModelKind.selection``): the largest value recorded in the
    first of the kind's files that records one; -inf when none does or the fold's files cannot be read."""
    try:
        kind = model_kind(json.loads((fold_dir / CONFIG_FILE).read_text()).get("model"))
    except (OSError, ValueError, AttributeError, RecursionError):
        return -math.inf
    for file, key in kind.selection:
        try:
            records = read_json_records(fold_dir / file)
        except (OSError, ValueError, RecursionError):
            continue
        values = [float(r[key]) for r in records if isinstance(r.get(key), (int, float))]
        if values:
            return max(values)
    return -math.inf


def model_folder(path: Path, fold: str | None = None) -> Path:
    """The saved model folder that ``path`` names: itself (a fold, or a folder written by ``save``), or a fold of the
    run folder ``path``: ``fold`` by name, by default the one whose saved model scored best on its own validation set by
    its kind's rule (ties: the first in run.json's order). predict, enhance and export all choose by this rule."""
    if fold is not None and not isinstance(fold, str):
        raise TypeError(f"fold must be a fold name (str) or None, got {type(fold).__name__}")
    if not path.exists():
        raise ModelFileError(f"{path}: no such folder; expected a training run, a fold or a folder written by "
                             "EmotionRecognizer.save()")
    if (path / CONFIG_FILE).is_file() or (path / WEIGHTS_FILE).is_file():
        if fold is not None:
            raise ValueError(f"fold={fold!r} picks a fold of a run folder, but {path} is one model's folder")
        return path
    if not (path / RUN_JSON).is_file():
        raise ModelFileError(f"{path}: neither a saved model ({CONFIG_FILE} + {WEIGHTS_FILE}) nor a training run "
                             "(run.json + folds/); point at a run folder, a fold or a folder written by save()")
    try:
        run = json.loads((path / RUN_JSON).read_text())
        names = list(run.get("folds") or [])
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError, TypeError) as error:
        raise ModelFileError(f"{path / RUN_JSON}: not a readable run description ({error})") from None
    trained = [name for name in names if (fold_folder(path, name) / CONFIG_FILE).is_file()]
    if not trained:
        raise ModelFileError(f"{path / FOLDS}: no trained fold (no <fold>/{CONFIG_FILE}); train the run first")
    if fold is not None:
        if fold not in trained:
            raise ModelFileError(f"{path}: no trained fold {fold!r}; trained folds: {trained}")
        return path / FOLDS / fold
    scores = {name: validation_score(path / FOLDS / name) for name in trained}
    best = max(trained, key=lambda name: scores[name])
    logger.info("%s: using fold %s (validation score %.4f; folds: %s)", path, best, scores[best],
                ", ".join(f"{n} {s:.4f}" for n, s in scores.items()))
    return path / FOLDS / best
