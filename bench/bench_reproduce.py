"""What ``make reproduce`` costs on this machine: each built-in grid's cells timed one by one, and the grid projected.

The built-in corpora and schedule (``ser_fast.reproduce.builtin``) are synthesized once into ``--corpora`` (reused when
they are there, as ``make reproduce`` leaves them in ``reproduce_out/corpora``). For each experiment, every system's
cell of the first fold is trained and tested by one call of the grid's own ``run_cells`` (so the cells share what a
grid shares: the fold's test features, the noisy inputs' SE scores), seed 0's cells then seed 1's. Seed 0's cells
carry what a fold pays once; seed 1's are what each further cell costs. So the projected grid is
``folds × Σ seed-0 cells + (seeds − 1) × folds × Σ seed-1 cells``. Grids run in order share a cells folder, as
``make reproduce``'s do: a later grid's Baseline is trained already and only tested in that grid's own settings, which
is what it costs there too.

Usage: python bench/bench_reproduce.py [--experiments dsnet edrl-mea merit] [--corpora DIR] [--markdown BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from _report import machine, replace_section

from ser_fast.data.features import extract_features
from ser_fast.data.noise import NoiseBank
from ser_fast.reproduce.builtin import BuiltinSettings, builtin_corpora
from ser_fast.reproduce.experiments import EXPERIMENTS
from ser_fast.reproduce.grid import grid_cells, run_cells
from ser_fast.training.run import make_folds

TIMED_SEEDS = 2  # seed 0 pays the fold's one-time costs, seed 1 shows a further cell's


def time_cells(name: str, corpus, other, cells_dir: Path, settings: BuiltinSettings) -> dict[str, list[float]]:
    """Seconds of each system's cell of the first fold, seed 0 then seed 1 (``{system: [seed 0, seed 1]}``)."""
    experiment, grid = EXPERIMENTS[name], settings.grid()
    first_fold = make_folds(corpus, grid.protocol)[0].name
    cells = [c for c in grid_cells(experiment.systems, grid, corpus) if c.fold == first_fold and c.seed < TIMED_SEEDS]
    seconds: dict[str, list[float]] = {}
    failed = run_cells(cells, experiment, corpus, [other], cells_dir, grid,
                       table=extract_features(corpus.utterances, corpus.classes), bank=NoiseBank(),
                       on_cell=lambda cell, s: seconds.setdefault(cell.system.name, []).append(s))
    if failed:
        raise RuntimeError(f"{failed[0][0].label}: {failed[0][1]}")
    return seconds


def projected_minutes(seconds: dict[str, list[float]], settings: BuiltinSettings, folds: int) -> float:
    first = sum(pair[0] for pair in seconds.values())
    further = sum(pair[1] for pair in seconds.values())
    return (folds * first + (settings.seeds - 1) * folds * further) / 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiments", nargs="+", choices=("dsnet", "edrl-mea", "merit"),
                        default=["dsnet", "edrl-mea", "merit"])
    parser.add_argument("--corpora", type=Path, help="where the built-in corpora are (synthesized there if not)")
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    settings = BuiltinSettings()
    if settings.seeds < TIMED_SEEDS:
        parser.error(f"the built-in grid has {settings.seeds} seed(s); timing a further cell needs {TIMED_SEEDS}")
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        corpus, other = builtin_corpora(args.corpora or work / "corpora", settings, progress=True)
        folds = len(make_folds(corpus, settings.protocol))
        rows, measured = [], {}
        for name in args.experiments:
            seconds = time_cells(name, corpus, other, work / "cells", settings)
            measured[name] = seconds
            minutes = projected_minutes(seconds, settings, folds)
            for system, (first, further) in seconds.items():
                rows.append(f"| {name} | {system} | {first:.1f} | {further:.1f} |")
            rows.append(f"| **{name}** | **grid, projected** | | **{minutes:.1f} min** |")
    body = ("## Reproduction grid: seconds per cell (bench/bench_reproduce.py)\n\n"
            f"Machine: {machine()}. Command: `python bench/bench_reproduce.py --experiments "
            f"{' '.join(args.experiments)}`, {time.strftime('%Y-%m-%d')}, torch {torch.get_num_threads()} threads. "
            f"The built-in settings ({settings.speakers} speakers × {settings.per_class} per class, protocol "
            f"`{settings.protocol}`, {settings.epochs} epochs of {settings.max_frames}-frame crops, float32): each "
            "system's cell of the first fold, trained and tested through the grid's `run_cells`, seed 0 (which pays "
            "the fold's one-time costs) then seed 1. Projected grid: folds × Σ seed 0 + (seeds − 1) × folds × Σ "
            "seed 1. The grids share a cells folder in the order run, as `make reproduce`'s do: a Baseline trained by "
            "an earlier grid is only tested in a later one.\n\n"
            "| grid | system | seed 0 cell, s | seed 1 cell, s |\n|---|---|---:|---:|\n" + "\n".join(rows) + "\n")
    print(body)
    print(json.dumps(measured))
    if args.markdown:
        replace_section(args.markdown, "reproduce", body)


if __name__ == "__main__":
    main()
