"""A training run: a corpus, a protocol, its folds, one model per fold, in one run folder (layout:
``ser_fast.runs.layout``), for every model kind through the trainer task its registration names."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from ser_fast.data.corpus import Corpus
from ser_fast.data.dimensions import DimensionScale, corpus_scale, with_dimensions
from ser_fast.data.features import FeatureTable
from ser_fast.data.noise import NoiseBank
from ser_fast.data.protocols import Fold, corpus_split, emobox_folds, halves_folds, loso_folds, session_folds
from ser_fast.models.targets import has_classes, has_dimensions
from ser_fast.runs.layout import FOLDS, write_fold_json, write_run_json
from ser_fast.runs.registry import ModelKind, kind_names, kind_of_config, model_kind
from ser_fast.training.distributed import World, join_world

logger = logging.getLogger(__name__)

_FOLDS_OF = {"loso": loso_folds, "session": session_folds, "halves": halves_folds,
             "split": lambda corpus: [corpus_split(corpus)], "emobox": emobox_folds}
PROTOCOLS = tuple(_FOLDS_OF)


def make_folds(corpus: Corpus, protocol: str) -> list[Fold]:
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol {protocol!r}: expected one of {PROTOCOLS}")
    return _FOLDS_OF[protocol](corpus)


def select_folds(folds: list[Fold], which: str | int | Sequence[int] = "all") -> list[Fold]:
    """``"all"``, one 0-based fold index, or several."""
    if which == "all":
        return folds
    indices = [which] if isinstance(which, int) else list(which)
    bad = [i for i in indices if not isinstance(i, int) or not 0 <= i < len(folds)]
    if bad:
        raise ValueError(f"fold indices {bad} out of range: the protocol has folds 0..{len(folds) - 1}")
    return [folds[i] for i in indices]


def refuse_torchrun(kind: ModelKind) -> None:
    """Raise ValueError under torchrun for a kind whose trainer task is one-process, before any group is set up."""
    if kind.trainer_task().one_process and World.from_env().enabled:
        parallel = [name for name in kind_names() if not model_kind(name).trainer_task().one_process]
        raise ValueError(f"--model {kind.name} trains in one process; torchrun is for {', '.join(parallel[:-1])} and "
                         f"{parallel[-1]}")


def rated_corpus(corpus: Corpus, config: Any, scale: DimensionScale | None = None) -> tuple[Corpus, Any]:
    """For a model with a dimensional head: the utterances of ``corpus`` rated on every dimension within its scale
    (``scale``, else the config's, else the corpus' known one; the others logged and added to ``skipped``), and the
    config with that scale, which the model keeps to restore its predictions. Otherwise both as given."""
    if not has_dimensions(config.target):
        return corpus, config
    scale = corpus_scale(corpus.name, scale or config.scale)
    rated = with_dimensions(corpus, scale)
    for skipped in rated.skipped[len(corpus.skipped):]:
        logger.warning("left out of training (dimensional target): %s (%s)", skipped.item, skipped.reason)
    if len(rated) == 0:
        raise ValueError(f"no utterance of {corpus.name!r} is rated on arousal, valence and dominance within {scale}; "
                         "a dimensional target needs the ratings (IEMOCAP, MSP-IMPROV and MSP-Podcast have them, a "
                         "manifest's arousal/valence/dominance columns)")
    return rated, replace(config, dimension_scale=(scale.low, scale.high))


def train_run(corpus: Corpus, run_dir: Path, config: Any, *, protocol: str = "loso",
              folds: str | int | Sequence[int] = "all", resume: bool = False, progress: bool = False,
              table: FeatureTable | None = None, bank: NoiseBank | None = None,
              device: str | torch.device = "cpu", dimension_scale: DimensionScale | None = None) -> dict:
    """Train one model per selected fold; returns ``{fold name: best validation state}``. ``config``: a
    :class:`~ser_fast.runs.config.TrainConfig` (Baseline, DSNet, EDRL-MEA) or a
    :class:`~ser_fast.runs.config.MeritTrainConfig` (Sparse MERIT); its ``model`` names the kind. ``table``: the corpus'
    features when the caller has them (the log-Mel models); ``bank``: the noise of the training pairs (Sparse MERIT; the
    built-in bank by default). ``device``: "cpu" or "cuda"; under ``torchrun`` the processes train each fold of a
    log-Mel model together (see :func:`~ser_fast.training.cnn_task.train_fold`), each extracting its features.
    A config whose ``target`` has a dimensional head trains on the rated utterances only, on ``dimension_scale`` (the
    corpus' own scale by default; :func:`rated_corpus`); a dimensional model has no classes."""
    kind = kind_of_config(config)
    corpus, config = rated_corpus(corpus, config, dimension_scale)
    if table is not None and has_dimensions(config.target):
        table = table.subset([u.path for u in corpus])
    classes = corpus.classes if has_classes(config.target) else ()
    refuse_torchrun(kind)
    task = kind.trainer_task()
    run_dir = Path(run_dir)
    chosen = select_folds(make_folds(corpus, protocol), folds)
    world = join_world(device)
    shared = task.prepare(corpus, config, world, progress=progress, table=table, bank=bank)
    if world.is_main:
        write_run_json(run_dir, corpus, protocol, config.to_dict(), chosen)
    results = {}
    for fold in chosen:
        fold_dir = write_fold_json(run_dir, fold) if world.is_main else run_dir / FOLDS / fold.name
        results[fold.name] = task.train(fold, shared, config, fold_dir, classes, resume=resume,
                                        progress=progress, device=device)
    return results
