"""``ser-fast reproduce EXPERIMENT``: train a paper's grid cell by cell, then write its ``results.json``, ``table.md``
and figures. With ``shard=(I, N)`` only every N-th cell runs, so a grid can be split over processes or machines that
share the output folder; ``merge=True`` then trains nothing and writes the outputs from every cell's predictions."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ser_fast.data.corpus import Corpus
from ser_fast.data.features import extract_features
from ser_fast.data.noise import NoiseBank
from ser_fast.reproduce.experiments import SETTING_NAME
from ser_fast.reproduce.experiments import experiment as find_experiment
from ser_fast.reproduce.figures import write_figures
from ser_fast.reproduce.grid import GridSettings, grid_cells, run_cells, shard_cells, tested_settings
from ser_fast.reproduce.results import grid_results, write_results
from ser_fast.reproduce.table import write_table

logger = logging.getLogger(__name__)

CELLS = "cells"


@dataclass(frozen=True)
class Reproduction:
    """What a call did: ``results`` (None for a shard, which leaves the outputs to ``--merge``), the files written,
    and ``failed``: ``(cell label, error)`` of cells that failed (the others ran)."""

    out: Path
    results: dict | None
    files: tuple[Path, ...]
    failed: tuple[tuple[str, str], ...]


def reproduce(name: str, corpus: Corpus, out: str | Path, *, crosses: Sequence[Corpus] = (),
              settings: GridSettings | None = None, systems: Sequence[str] | None = None,
              shard: tuple[int, int] | None = None, merge: bool = False, bank: NoiseBank | None = None,
              cells_dir: str | Path | None = None, progress: bool = False, n_resamples: int = 2000,
              n_permutations: int = 1999) -> Reproduction:
    """Run experiment ``name`` ("dsnet", "edrl-mea") trained on ``corpus`` and tested within it (and in noise where the
    paper does), and on each of ``crosses``. Returns what was done; results go to ``out``, the cells' training runs to
    ``cells_dir`` (``out/cells`` by default; experiments that share it share the cells they both train)."""
    experiment = find_experiment(name)
    if not isinstance(corpus, Corpus) or not all(isinstance(c, Corpus) for c in crosses):
        raise TypeError("corpus and crosses must be ser_fast.data.Corpus objects")
    names = [other.name for other in crosses]
    for other in crosses:
        if not SETTING_NAME.match(other.name) or names.count(other.name) > 1:
            raise ValueError(f"cross corpus name {other.name!r}: each needs its own name of letters, digits, '.', '_' "
                             "and '-' (it names a setting and a file)")
        if tuple(other.classes) != tuple(corpus.classes):
            raise ValueError(f"cross corpus {other.name!r} has classes {other.classes}; {corpus.name!r} has "
                             f"{corpus.classes}: load both with the same classes")
        if other.name == corpus.name:
            raise ValueError(f"cross corpus {other.name!r} has the training corpus' name; give it another")
    if shard is not None and merge:
        raise ValueError("shard and merge exclude each other: run the shards, then merge once")
    if shard is not None and not (isinstance(shard, tuple) and len(shard) == 2 and all(
            isinstance(n, int) and not isinstance(n, bool) for n in shard) and 0 <= shard[0] < shard[1]):
        raise ValueError(f"shard must be (I, N) with 0 <= I < N, got {shard!r}")
    for name, count in (("n_resamples", n_resamples), ("n_permutations", n_permutations)):
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"{name} must be a positive int, got {count!r}")
    out = Path(out)
    settings = settings or GridSettings()
    cells_dir = Path(cells_dir) if cells_dir is not None else out / CELLS
    chosen = experiment.select(list(systems) if systems else None)
    bank = bank or NoiseBank()
    cells = grid_cells(chosen, settings, corpus)
    failed = []
    if not merge:
        todo = shard_cells(cells, *shard) if shard else cells
        table = extract_features(corpus.utterances, corpus.classes, progress=progress, desc=f"{corpus.name} features")
        failed = run_cells(todo, experiment, corpus, crosses, cells_dir, settings, table=table, bank=bank,
                           progress=progress)
        if shard is not None or failed:  # the outputs wait for every cell: re-run (or --merge) once they are done
            return Reproduction(out, None, (), tuple((c.label, e) for c, e in failed))
    tested = tested_settings(experiment, crosses, bank)
    results = grid_results(experiment, chosen, cells, tested, cells_dir, settings, corpus, n_resamples=n_resamples,
                           n_permutations=n_permutations)
    out.mkdir(parents=True, exist_ok=True)
    files = [write_results(results, out), write_table(results, out)]
    files += write_figures(results, cells, out, cells_dir, settings, corpus)
    return Reproduction(out, results, tuple(files), tuple((c.label, e) for c, e in failed))
