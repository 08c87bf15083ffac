"""A training run: a corpus, a protocol, its folds, one model per fold, in one folder.

RUN_DIR/run.json                  corpus, root, protocol, classes, settings, fold names
RUN_DIR/folds/<fold>/fold.json    the fold's train/validation/test utterance paths
RUN_DIR/folds/<fold>/...          what ``train_fold`` writes (model.safetensors + config.json of the
                                  best epoch, metrics.jsonl, the latest checkpoint; for EDRL-MEA the
                                  aligned model and alignment.json)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from ser_fast.data.corpus import Corpus
from ser_fast.data.protocols import Fold, corpus_split, loso_folds, neutral_references, session_folds
from ser_fast.inference.model_files import (
    ModelFileError,
    SavedModel,
    load_weights,
    read_model_files,
    settings_error,
)
from ser_fast.training.config import MODELS, TrainConfig
from ser_fast.training.distributed import join_world
from ser_fast.training.features import FeatureTable, extract_features
from ser_fast.training.trainer import FoldData, _save_model, build_model, load_saved_model, train_fold

logger = logging.getLogger(__name__)

PROTOCOLS = ("loso", "session", "split")


def make_folds(corpus: Corpus, protocol: str) -> list[Fold]:
    if protocol == "loso":
        return loso_folds(corpus)
    if protocol == "session":
        return session_folds(corpus)
    if protocol == "split":
        return [corpus_split(corpus)]
    raise ValueError(f"protocol {protocol!r}: expected one of {PROTOCOLS}")


def select_folds(folds: list[Fold], which: str | int | Sequence[int] = "all") -> list[Fold]:
    """``"all"``, one 0-based fold index, or several."""
    if which == "all":
        return folds
    indices = [which] if isinstance(which, int) else list(which)
    bad = [i for i in indices if not isinstance(i, int) or not 0 <= i < len(folds)]
    if bad:
        raise ValueError(f"fold indices {bad} out of range: the protocol has folds 0..{len(folds) - 1}")
    return [folds[i] for i in indices]


def write_run_json(run_dir: Path, corpus: Corpus, protocol: str, config: dict, folds: Sequence[Fold]) -> None:
    """``run.json``: what the evaluation needs to find the corpus, the folds and the model's settings."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "run.json").write_text(json.dumps({
        "corpus": corpus.name, "root": str(corpus.root), "protocol": protocol, "classes": list(corpus.classes),
        "config": config, "folds": [f.name for f in folds],
    }, indent=1))


def write_fold_json(run_dir: Path, fold: Fold) -> Path:
    """The fold's folder with ``fold.json`` (its train/validation/test paths); returns the folder."""
    fold_dir = run_dir / "folds" / fold.name
    fold_dir.mkdir(parents=True, exist_ok=True)
    (fold_dir / "fold.json").write_text(json.dumps(
        {part: [str(u.path) for u in getattr(fold, part)] for part in ("train", "validation", "test")}, indent=1))
    return fold_dir


def train_run(corpus: Corpus, run_dir: Path, config: TrainConfig, *, protocol: str = "loso",
              folds: str | int | Sequence[int] = "all", resume: bool = False, progress: bool = False,
              table: FeatureTable | None = None, device: str | torch.device = "cpu") -> dict:
    """Train one model per selected fold on ``device`` ("cpu" or "cuda"); returns ``{fold name: best
    validation state}``. Under ``torchrun`` the processes train each fold together (see
    :func:`~ser_fast.training.trainer.train_fold`); each extracts the features itself, rank 0 writes the files."""
    run_dir = Path(run_dir)
    chosen = select_folds(make_folds(corpus, protocol), folds)
    references = neutral_references(corpus, seed=config.seed) if config.model == "dsnet" else None
    world = join_world(device)
    if table is None:
        table = extract_features(corpus.utterances, corpus.classes, progress=progress and world.is_main,
                                 desc=f"{corpus.name} features")
    if world.is_main:
        for path, reason in table.failed:
            logger.warning("left out of training: %s (%s)", path, reason)
        write_run_json(run_dir, corpus, protocol, config.to_dict(), chosen)
    results = {}
    for fold in chosen:
        fold_dir = write_fold_json(run_dir, fold) if world.is_main else run_dir / "folds" / fold.name
        data = FoldData.build(table, fold.train, fold.validation, references)
        results[fold.name] = train_fold(data, config, fold_dir, classes=corpus.classes, resume=resume,
                                        progress=progress, desc=f"{config.model} {fold.name}", device=device)
    return results


def load_fold_model(fold_dir: Path) -> tuple[torch.nn.Module, TrainConfig, tuple[str, ...]]:
    """The fold's best model (eval mode; EDRL-MEA aligned), its settings and class names: safetensors
    + JSON only, checked by :func:`~ser_fast.inference.model_files.read_model_files` (a wrong, tampered
    or pickled file is a ``ModelFileError``)."""
    fold_dir = Path(fold_dir)
    for name in ("config.json", "model.safetensors"):
        if not (fold_dir / name).is_file():
            raise FileNotFoundError(f"{fold_dir / name} not found: is {fold_dir} a trained fold?")
    return fold_model_from_saved(read_model_files(fold_dir))


def fold_model_from_saved(saved: SavedModel) -> tuple[torch.nn.Module, TrainConfig, tuple[str, ...]]:
    """The CNN model (eval mode), settings and class names that a checked saved folder describes."""
    if saved.kind not in MODELS:
        raise ModelFileError(f"{saved.config_path}: a {saved.kind} model, not one of {MODELS}; "
                             "load Sparse MERIT folds with ser_fast.training.merit_trainer.load_merit_model")
    try:
        config = TrainConfig.from_dict(saved.settings)
        if config.model != saved.kind:
            raise ValueError(f"settings say model {config.model!r}, the file says {saved.kind!r}")
    except (TypeError, ValueError) as error:
        raise settings_error(saved, error) from None
    model = build_model(config, len(saved.classes))
    load_weights(model, saved, lambda m, s: load_saved_model(m, s.tensors, s.values))
    return model.eval(), config, saved.classes


def save_fold_model(fold_dir: Path, model: torch.nn.Module, config: TrainConfig, classes: Sequence[str]) -> Path:
    """Write ``model`` as the trainer writes a fold's best model (what :func:`load_fold_model` reads)."""
    fold_dir = Path(fold_dir)
    _save_model(fold_dir, model, config, tuple(classes))
    return fold_dir
