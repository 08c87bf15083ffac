"""A grid's figures: the headline metric against SNR with CI bands (grids tested in noise), the loss terms of every
training run against epochs, and each system's pooled confusion matrix per setting."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ser_fast.data.corpus import Corpus
from ser_fast.evaluation.plots import plot_confusion, plot_loss_curves, plot_metric_bands
from ser_fast.reproduce.experiments import is_noisy, setting_file_name
from ser_fast.reproduce.grid import Cell, GridSettings
from ser_fast.reproduce.table import METRIC_NAMES
from ser_fast.runs.layout import fold_folder, read_json_records
from ser_fast.runs.metrics import ClassificationScores
from ser_fast.runs.names import METRICS

FIGURES = "figures"


def write_figures(results: dict, cells: Sequence[Cell], out: Path, cells_dir: Path, settings: GridSettings,
                  corpus: Corpus) -> list[Path]:
    folder = out / FIGURES
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    noisy = [r for r in results["rows"] if is_noisy(r["setting"])]
    for metric in dict.fromkeys(r["metric"] for r in noisy):
        series: dict[str, dict[str, list]] = {}
        for r in noisy:
            if r["metric"] == metric:
                kind, snr = r["setting"].split("@")
                series.setdefault(r["system"], {}).setdefault(kind, []).append((float(snr), r["mean"], *r["ci95"]))
        name = METRIC_NAMES.get(metric, metric)
        written.append(plot_metric_bands(series, folder / f"{metric}_vs_snr.png", ylabel=f"{name} (%)",
                                         title=f"{results['experiment']}: {name} in noise (mean over seeds, 95 % CI)"))
    for system in results["systems"]:
        histories = []
        for cell in cells:
            if cell.system.name == system:
                path = fold_folder(cell.folder(cells_dir, settings, corpus), cell.fold) / METRICS
                if path.is_file():
                    histories.append((f"seed {cell.seed} {cell.fold}", read_json_records(path)))
        if histories:
            written.append(plot_loss_curves(histories, folder / f"losses_{system}.png",
                                            title=f"{system}: loss terms per epoch, every training run"))
    classes = results["classes"]
    for setting, by_system in results["confusions"].items():
        if is_noisy(setting):
            continue
        for system, confusion in by_system.items():
            scores = ClassificationScores(tuple(classes), np.asarray(confusion))
            written.append(plot_confusion(scores, folder / f"confusion_{system}_{setting_file_name(setting)}.png",
                                          title=f"{system}, {setting}, all seeds pooled"))
    return written
