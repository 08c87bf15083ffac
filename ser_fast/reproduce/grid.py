"""The cells of a reproduction grid (system × seed × fold), each an ordinary resumable training run in its own folder,
and the per-utterance predictions each cell leaves for the statistics.

A cell's folder is named by a digest of what trains it (the system's settings, the schedule, the protocol and the
corpus), so two grids that train the same system the same way (the Baseline of ``dsnet`` and of ``edrl-mea``) share one
cell, and a changed schedule never resumes a cell trained under another. A cell is done when its folder holds the
predictions of every setting its experiment tests (``predictions/<setting>.json``); re-running the same command skips
it, and a cell interrupted in training resumes from its checkpoint."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ser_fast.data.corpus import Corpus
from ser_fast.data.features import FeatureTable
from ser_fast.data.noise import DEFAULT_SNRS_DB, NoiseBank
from ser_fast.evaluation import MeritResults, score_run
from ser_fast.evaluation.evaluate import ScoredItems
from ser_fast.evaluation.merit_eval import TEST_SNRS_DB
from ser_fast.frontend.constants import FRAME_SHIFT_S
from ser_fast.models.edrl_mea.model import DEFAULT_COMPONENTS
from ser_fast.reproduce.experiments import (
    ALL_NOISE,
    CROSS_PREFIX,
    NOISE_GRID,
    SEEN_UNSEEN,
    WITHIN,
    Experiment,
    System,
    noise_setting,
    setting_file_name,
)
from ser_fast.runs.atomic import atomic_write_text
from ser_fast.runs.config import LATER_DEFAULTS
from ser_fast.runs.precision import PRECISIONS
from ser_fast.runs.registry import model_kind
from ser_fast.training.run import PROTOCOLS, make_folds, train_run

logger = logging.getLogger(__name__)

PREDICTIONS = "predictions"
PREDICTIONS_FORMAT = 1
_SHARD = re.compile(r"^(\d+)/(\d+)$")


@dataclass(frozen=True)
class GridSettings:
    """What every cell of a grid shares. The papers' recipe is the default (DSNet: 100 epochs of 600-frame crops, the
    best epoch on validation UAR); ``protocol`` is one of ``ser_fast.training.run.PROTOCOLS``."""

    seeds: int = 3
    epochs: int = 100
    max_frames: int = 600
    protocol: str = "loso"
    n_components: int = DEFAULT_COMPONENTS
    noise_seed: int = 0
    device: str = "cpu"
    precision: str = "auto"

    def __post_init__(self) -> None:
        for name in ("seeds", "epochs", "max_frames", "n_components"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol {self.protocol!r}: expected one of {PROTOCOLS}")
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {self.device!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r}: expected one of {PRECISIONS}")

    def config(self, system: System, seed: int) -> Any:
        """The system's training config (its kind's config class) on this schedule: ``max_frames`` is the crop of the
        models on log-Mel features, and as ``max_frames`` × 10 ms the crop of those on waveforms."""
        config_class = model_kind(system.overrides["model"]).config_class
        known = {f.name for f in fields(config_class)}
        schedule = {"epochs": self.epochs, "seed": seed, "max_frames": self.max_frames,
                    "max_seconds": self.max_frames * FRAME_SHIFT_S, "n_components": self.n_components,
                    "precision": self.precision}
        return config_class(**system.overrides, **{k: v for k, v in schedule.items() if k in known})


@dataclass(frozen=True)
class Cell:
    """One training run of the grid: ``system`` trained with ``seed`` on fold ``fold`` (its index and name)."""

    system: System
    seed: int
    fold_index: int
    fold: str

    @property
    def label(self) -> str:
        return f"{self.system.name} seed {self.seed} {self.fold}"

    def folder(self, cells_dir: Path, settings: GridSettings, corpus: Corpus) -> Path:
        """Named by a digest of what trains and tests the cell: the system's config, the protocol, the corpus (its
        name, classes and every utterance's path, label and speaker) and the noise seed. ``precision="auto"`` is
        in it as "auto": shards on machines of different ISAs would train at different precisions."""
        config = settings.config(self.system, 0).to_dict()
        config.pop("seed")
        for key, default in LATER_DEFAULTS.items():
            if config.get(key, default) == default:
                config.pop(key, None)
        contents = sorted((str(u.path), u.label, u.speaker) for u in corpus)
        identity = json.dumps({"config": config, "protocol": settings.protocol, "corpus": corpus.name,
                               "classes": list(corpus.classes), "contents": contents,
                               "noise_seed": settings.noise_seed}, sort_keys=True)
        digest = hashlib.sha256(identity.encode()).hexdigest()[:10]
        return cells_dir / f"{self.system.name}-{digest}" / f"seed-{self.seed}" / self.fold


def grid_cells(systems: Sequence[System], settings: GridSettings, corpus: Corpus) -> list[Cell]:
    """Every cell, fold by fold (the cells of one fold share its test features), then seed, then system."""
    folds = make_folds(corpus, settings.protocol)
    return [Cell(system, seed, index, fold.name) for index, fold in enumerate(folds)
            for seed in range(settings.seeds) for system in systems]


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` (0 <= I < N) as ``(I, N)``."""
    match = _SHARD.match(text.strip()) if isinstance(text, str) else None
    if match is None or not 0 <= int(match.group(1)) < int(match.group(2)):
        raise ValueError(f"--shard {text!r}: expected I/N with 0 <= I < N, e.g. 0/4 .. 3/4")
    return int(match.group(1)), int(match.group(2))


def shard_cells(cells: Sequence[Cell], index: int, count: int) -> list[Cell]:
    """Every ``count``-th cell starting at ``index``: ``count`` shards together run each cell once."""
    return [cell for i, cell in enumerate(cells) if i % count == index]


def tested_settings(experiment: Experiment, crosses: Sequence[Corpus], bank: NoiseBank | None) -> list[str]:
    """The settings every cell of ``experiment`` is tested in: within the corpus, each noise condition, each corpus."""
    settings = [WITHIN]
    if experiment.noise == NOISE_GRID:
        if ALL_NOISE in bank.types:
            raise ValueError(f"the noise bank has a type named {ALL_NOISE!r}, the name of the settings that pool every "
                             "noise type at one SNR; rename its folder")
        settings += [noise_setting(kind, snr) for kind in bank.types for snr in DEFAULT_SNRS_DB]
    elif experiment.noise == SEEN_UNSEEN:
        settings += [noise_setting(kind, snr) for kind in ("seen", "unseen") for snr in TEST_SNRS_DB]
    return settings + [CROSS_PREFIX + corpus.name for corpus in crosses]


def run_cells(cells: Sequence[Cell], experiment: Experiment, corpus: Corpus, crosses: Sequence[Corpus],
              cells_dir: Path, settings: GridSettings, *, table: FeatureTable | None = None,
              bank: NoiseBank | None = None, progress: bool = False,
              on_cell: Callable[[Cell, float], None] | None = None) -> list[tuple[Cell, str]]:
    """Train and test each cell that is not done; returns ``(cell, error)`` for the cells that failed (each is logged,
    and the others still run). ``on_cell(cell, seconds)`` is called after each cell that ran and did not fail, with
    the seconds it took (``bench/bench_reproduce.py`` times the grid with it)."""
    bank = bank or NoiseBank()
    wanted = tested_settings(experiment, crosses, bank)
    failed, cache, cache_fold = [], {}, None
    bar = tqdm(cells, desc=f"reproduce {experiment.name}", unit="cell", disable=not progress)
    for cell in bar:
        bar.set_postfix_str(cell.label)
        folder = cell.folder(cells_dir, settings, corpus)
        missing = [s for s in wanted if not prediction_path(folder, s).is_file()]
        if not missing:
            continue
        if cell.fold != cache_fold:  # one fold's test features at a time: a noise grid of them is large
            cache, cache_fold = {}, cell.fold
        started = time.perf_counter()
        try:
            train_run(corpus, folder, settings.config(cell.system, cell.seed), protocol=settings.protocol,
                      folds=[cell.fold_index], resume=True, table=table, device=settings.device)
            _test_cell(cell, folder, experiment, corpus, crosses, missing, settings, bank, cache)
        except (ValueError, RuntimeError, OSError) as error:
            logger.error("cell %s failed: %s", cell.label, error)
            failed.append((cell, f"{type(error).__name__}: {error}"))
            continue
        if on_cell is not None:
            on_cell(cell, time.perf_counter() - started)
    return failed


def _test_cell(cell: Cell, folder: Path, experiment: Experiment, corpus: Corpus, crosses: Sequence[Corpus],
               missing: list[str], settings: GridSettings, bank: NoiseBank, cache: dict) -> None:
    if any(not s.startswith(CROSS_PREFIX) for s in missing):
        results = score_run(folder, corpus, noise="all" if experiment.noise == NOISE_GRID else None, noise_bank=bank,
                            seed=settings.noise_seed, enhancement=bool(experiment.enhancement), feature_cache=cache,
                            embeddings=False)
        for name, items, enhancement in tested_items(results):
            write_predictions(folder, name, cell, results.classes, items, enhancement)
    for other in crosses:
        if CROSS_PREFIX + other.name in missing:
            # Clean speech only: a Sparse MERIT run would otherwise be scored in all its noise conditions too.
            results = score_run(folder, other, snrs_db=(), seed=settings.noise_seed, enhancement=False,
                                feature_cache=cache, embeddings=False)
            _, items, _ = tested_items(results)[0]
            write_predictions(folder, CROSS_PREFIX + other.name, cell, results.classes, items, None)


def tested_items(results) -> list[tuple[str, ScoredItems, dict[str, np.ndarray] | None]]:
    """``(setting, items, per-item SE metrics or None)`` of each condition of a run's evaluation, clean first."""
    if isinstance(results, MeritResults):
        return [(WITHIN if c.snr_db is None else noise_setting(c.noise_set, c.snr_db), c.items,
                 c.enhancement_items if c.snr_db is not None else None) for c in results.conditions]
    return [(WITHIN if c.condition.kind is None else noise_setting(c.condition.kind, c.condition.snr_db), c.items, None)
            for c in results.conditions]


def prediction_path(folder: Path, setting: str) -> Path:
    return folder / PREDICTIONS / f"{setting_file_name(setting)}.json"


def write_predictions(folder: Path, setting: str, cell: Cell, classes: Sequence[str], items: ScoredItems,
                      enhancement: dict[str, np.ndarray] | None) -> Path:
    """The cell's predictions in ``setting`` and, for a speech-enhancement system in noise, each SE metric per item
    (null where it could not be computed)."""
    path = prediction_path(folder, setting)
    path.parent.mkdir(parents=True, exist_ok=True)
    per_item = {name: [None if np.isnan(v) else float(v) for v in values]
                for name, values in (enhancement or {}).items()}
    atomic_write_text(path, json.dumps({
        "format": PREDICTIONS_FORMAT, "system": cell.system.name, "seed": cell.seed, "fold": cell.fold,
        "setting": setting, "classes": list(classes), **items.as_dict(), "enhancement": per_item,
    }))
    return path


def read_predictions(folder: Path, setting: str) -> dict | None:
    """A cell's predictions in ``setting``, or None when it has none yet; a ValueError naming a damaged file."""
    path = prediction_path(folder, setting)
    if not path.is_file():
        return None
    try:
        values = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not a readable predictions file ({error}); delete it to re-test the cell") from None
    if not isinstance(values, dict) or values.get("format") != PREDICTIONS_FORMAT:
        raise ValueError(f"{path}: predictions of another format; delete it to re-test the cell")
    return values
