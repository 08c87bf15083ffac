"""PNG plots of evaluation results: confusion matrices, UAR against SNR, and 2-D projections of the embedding spaces
(the DSNet paper's Figs. 3 and 4). Built with ``matplotlib.figure.Figure`` and saved through the Agg canvas, never
through pyplot: no global backend switch, no figure registry, nothing left open between calls."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE

from ser_fast.evaluation.confidence import ConfidenceScores
from ser_fast.evaluation.evaluate import Embeddings, RunResults
from ser_fast.evaluation.merit_eval import MeritResults
from ser_fast.runs.calibration import ECE_BINS
from ser_fast.runs.metrics import ClassificationScores

PROJECTIONS = ("pca", "tsne")
PROJECTION_NAMES = {"pca": "PCA", "tsne": "t-SNE"}
SPACE_TITLES = {"h": "h (encoder output)", "z_er": "z_er (emotion-relevant)", "z_ei": "z_ei (emotion-irrelevant)"}
# Categorical palettes; tab20 only past 10 speakers, as its neighbouring colours are pairs of one hue.
CLASS_COLOURS = "tab10"
MAX_SPEAKER_LEGEND = 20
DPI = 120


def plot_confusion(scores: ClassificationScores, path: str | os.PathLike, *, title: str) -> Path:
    """Two panels: counts, and row-normalised % (each true class sums to 100)."""
    if not isinstance(scores, ClassificationScores):
        raise TypeError(f"scores must be ClassificationScores, got {type(scores).__name__}")
    path = _check_png_path(path)
    counts = scores.confusion
    with np.errstate(invalid="ignore", divide="ignore"):
        percent = 100.0 * counts / counts.sum(axis=1, keepdims=True)
    size = 2.2 + 0.9 * len(scores.classes)
    figure = Figure(figsize=(2 * size + 1.5, size + 0.6), layout="constrained")
    left, right = figure.subplots(1, 2)
    _heatmap(left, counts, scores.classes, counts.astype(float), "{:d}", "utterances", integer_ticks=True)
    _heatmap(right, percent, scores.classes, np.nan_to_num(percent), "{:.1f}", "% of the true class")
    left.set_title("counts")
    right.set_title("row-normalised %")
    figure.suptitle(f"{title}\nUAR {100 * scores.uar:.1f} %, WA {100 * scores.wa:.1f} %, "
                    f"macro-F1 {100 * scores.macro_f1:.1f} %")
    return _save(figure, path)


def _heatmap(axes, values: np.ndarray, classes: Sequence[str], shade: np.ndarray, fmt: str, bar_label: str,
             integer_ticks: bool = False) -> None:
    image = axes.imshow(shade, cmap="Blues", vmin=0)
    threshold = shade.max() / 2 if shade.size else 0
    for (i, j), value in np.ndenumerate(values):
        text = "—" if np.isnan(value) else fmt.format(int(value) if fmt == "{:d}" else value)
        axes.text(j, i, text, ha="center", va="center", color="white" if shade[i, j] > threshold else "black")
    axes.set_xticks(range(len(classes)), classes, rotation=30, ha="right")
    axes.set_yticks(range(len(classes)), classes)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    bar = axes.figure.colorbar(image, ax=axes, shrink=0.8, label=bar_label)
    if integer_ticks:
        bar.locator = MaxNLocator(integer=True)
        bar.update_ticks()


def plot_uar_vs_snr(runs: Sequence[tuple[str, RunResults]], path: str | os.PathLike, *, title: str) -> Path:
    """UAR against SNR: one line per (model, noise type), colour per noise type and line style per model; each model's
    clean UAR as a horizontal dashed line. ``runs`` pairs a legend label with each :class:`RunResults`."""
    path = _check_png_path(path)
    if not runs or not all(isinstance(r, tuple) and len(r) == 2 and isinstance(r[1], RunResults) for r in runs):
        raise TypeError("runs must be a non-empty sequence of (label, RunResults) pairs")
    kinds = sorted({c.condition.kind for _, r in runs for c in r.conditions if c.condition.kind is not None})
    if not kinds:
        raise ValueError("runs hold clean results only: there is no SNR to plot against")
    kind_colour = {kind: f"C{i % 10}" for i, kind in enumerate(kinds)}
    styles, markers, clean_greys = ["-", ":", "-.", (0, (5, 1))], ["o", "s", "^", "D"], ["0.0", "0.45", "0.7"]
    figure = Figure(figsize=(8.5, 5.0), layout="constrained")
    axes = figure.subplots()
    for index, (label, results) in enumerate(runs):
        for kind in kinds:
            points = sorted((c.condition.snr_db, 100 * c.uar) for c in results.conditions if c.condition.kind == kind)
            if points:
                snr, uar = zip(*points)
                axes.plot(snr, uar, linestyle=styles[index % len(styles)], marker=markers[index % len(markers)],
                          color=kind_colour[kind], label=f"{label}: {kind}")
        axes.axhline(100 * results.clean.uar, color=clean_greys[index % len(clean_greys)], linestyle="--",
                     linewidth=1.5, label=f"{label}: clean ({100 * results.clean.uar:.1f} %)")
    chance = 100 / len(runs[0][1].classes)
    axes.axhline(chance, color="tab:red", linestyle=":", linewidth=1, alpha=0.6, label=f"chance ({chance:.1f} %)")
    return _save_against_snr(axes, path, "UAR (%)", title, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def project_2d(points: np.ndarray, projection: str = "pca", *, seed: int = 0) -> np.ndarray:
    """``[N, D]`` to ``[N, 2]`` by PCA, or t-SNE (perplexity capped below N, as t-SNE requires)."""
    if projection not in PROJECTIONS:
        raise ValueError(f"projection {projection!r}: expected one of {PROJECTIONS}")
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[0] < 3:
        raise ValueError(f"points must be [N >= 3, D], got shape {points.shape}")
    if projection == "pca":
        projected = PCA(n_components=min(2, points.shape[1]), random_state=seed).fit_transform(points)
        return np.pad(projected, ((0, 0), (0, 2 - projected.shape[1])))
    perplexity = min(30.0, (points.shape[0] - 1) / 3.0)
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(points)


def plot_embeddings(embeddings: Embeddings, path: str | os.PathLike, *, title: str, projection: str = "pca",
                    seed: int = 0) -> Path:
    """One column per space (h, z_er, z_ei), each projected on its own; top row coloured by
    emotion, bottom row by speaker; circles validation, squares test; large points are class centres."""
    if not isinstance(embeddings, Embeddings):
        raise TypeError(f"embeddings must be Embeddings, got {type(embeddings).__name__}")
    if projection not in PROJECTIONS:
        raise ValueError(f"projection {projection!r}: expected one of {PROJECTIONS}")
    path = _check_png_path(path)
    spaces = list(embeddings.spaces)
    figure = Figure(figsize=(4.2 * len(spaces) + 2.2, 8.0), layout="constrained")
    grid = np.asarray(figure.subplots(2, len(spaces), squeeze=False))
    speakers, speaker_index = np.unique(embeddings.speakers, return_inverse=True)
    is_test = np.array([p == "test" for p in embeddings.parts])
    speaker_palette = "tab10" if len(speakers) <= 10 else "tab20"
    size, alpha = (28, 0.75) if len(embeddings.labels) < 200 else (12, 0.4)
    axis_name = "PC" if projection == "pca" else PROJECTION_NAMES[projection]
    for column, space in enumerate(spaces):
        xy = project_2d(embeddings.spaces[space], projection, seed=seed)
        for row, (colour_index, palette, what) in enumerate(((embeddings.labels, CLASS_COLOURS, "emotion"),
                                                            (speaker_index, speaker_palette, "speaker"))):
            axes = grid[row, column]
            for marker, chosen in (("o", ~is_test), ("s", is_test)):
                if chosen.any():
                    colours = [_colour(palette, int(i)) for i in colour_index[chosen]]
                    axes.scatter(xy[chosen, 0], xy[chosen, 1], color=colours, marker=marker, s=size, alpha=alpha,
                                 linewidths=0)
            if row == 0:
                _class_centres(axes, xy, embeddings.labels, len(embeddings.classes))
            axes.set_title(f"{SPACE_TITLES.get(space, space)}, by {what}")
            axes.set_xlabel(f"{axis_name} 1")
            axes.set_ylabel(f"{axis_name} 2")
    grid[0, -1].legend(handles=_legend(embeddings.classes, CLASS_COLOURS, is_test), title="emotion",
                       loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small")
    if len(speakers) <= MAX_SPEAKER_LEGEND:
        grid[1, -1].legend(handles=_legend(speakers, speaker_palette, None), title="speaker", loc="upper left",
                           bbox_to_anchor=(1.02, 1.0), fontsize="small")
    else:
        grid[1, -1].text(1.02, 1.0, f"{len(speakers)} speakers", transform=grid[1, -1].transAxes, va="top")
    figure.suptitle(f"{title}\n{PROJECTION_NAMES[projection]} of fold {embeddings.fold}'s model, "
                    f"{len(embeddings.labels)} utterances")
    return _save(figure, path)


def plot_f1_vs_snr(runs: Sequence[MeritResults], labels: Sequence[str], path: str | os.PathLike) -> Path:
    """Macro-F1 against SNR, a solid line for seen and a dotted one for unseen noise, a colour per run."""
    path = _check_png_path(path)
    figure = Figure(figsize=(7.5, 4.5), layout="constrained")
    axes = figure.subplots()
    for index, (label, run) in enumerate(zip(labels, runs)):
        for noise_set, style in (("seen", "-"), ("unseen", ":")):
            points = sorted((c.snr_db, 100 * c.scores.macro_f1) for c in run.conditions if c.noise_set == noise_set)
            if points:
                snr, f1 = zip(*points)
                axes.plot(snr, f1, linestyle=style, marker="o", color=f"C{index % 10}", label=f"{label}: {noise_set}")
    return _save_against_snr(axes, path, "macro-F1 (%)", "Emotion recognition in noise")


def _save_against_snr(axes, path: Path, ylabel: str, title: str, **legend) -> Path:
    axes.set_xlabel("SNR (dB)")
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small", **legend)
    return _save(axes.figure, path)


def plot_expert_usage(routed: Sequence[tuple[str, MeritResults]], path: str | os.PathLike) -> Path:
    """Grouped bars: each expert's share of frames, one group per (run, task)."""
    path = _check_png_path(path)
    groups = [(f"{label}\n{task}", np.asarray(share)) for label, r in routed for task, share in r.expert_usage.items()]
    experts = max(len(share) for _, share in groups)
    width = 0.8 / experts
    figure = Figure(figsize=(max(5.0, 1.4 * len(groups)), 4.0), layout="constrained")
    axes = figure.subplots()
    x = np.arange(len(groups))
    for e in range(experts):
        heights = [100 * share[e] if e < len(share) else 0.0 for _, share in groups]
        axes.bar(x + (e - (experts - 1) / 2) * width, heights, width, label=f"expert {e}", color=f"C{e % 10}")
    axes.set_xticks(x, [name for name, _ in groups], fontsize="small")
    axes.set_ylabel("share of frames (%)")
    axes.set_ylim(0, 100)
    axes.set_title("Expert usage per task")
    axes.legend(fontsize="small", ncols=min(experts, 4))
    return _save(figure, path)


def _colour(palette: str, index: int):
    colours = colormaps[palette]
    return colours(index % colours.N)


def _class_centres(axes, xy: np.ndarray, labels: np.ndarray, num_classes: int) -> None:
    for k in range(num_classes):
        if (labels == k).any():
            centre = xy[labels == k].mean(axis=0)
            axes.scatter(*centre, color=_colour(CLASS_COLOURS, k), s=160, marker="*", edgecolors="black",
                         linewidths=0.8, zorder=3)


def _legend(names: Sequence[str], palette: str, is_test: np.ndarray | None) -> list[Line2D]:
    handles = [Line2D([], [], linestyle="", marker="o", color=_colour(palette, i), label=name)
               for i, name in enumerate(names)]
    if is_test is not None:
        handles += [Line2D([], [], linestyle="", marker="*", markersize=12, color="grey", markeredgecolor="black",
                           label="class centre")]
        if (~is_test).any():
            handles.append(Line2D([], [], linestyle="", marker="o", color="grey", label="validation"))
        if is_test.any():
            handles.append(Line2D([], [], linestyle="", marker="s", color="grey", label="test"))
    return handles


def plot_reliability(scores: ConfidenceScores, path: str | os.PathLike, *, title: str,
                     bins: int = ECE_BINS) -> Path:
    """The reliability diagram before and after temperature scaling: in each equal-width bin of the top-1 confidence,
    the accuracy (bars) against the confidence (the diagonal is perfect calibration), with each bin's share of
    utterances; the ECE of each panel in its title."""
    if not isinstance(scores, ConfidenceScores):
        raise TypeError(f"scores must be ConfidenceScores, got {type(scores).__name__}")
    path = _check_png_path(path)
    figure = Figure(figsize=(9.5, 4.4), layout="constrained")
    edges = np.linspace(0.0, 1.0, bins + 1)
    for axes, (name, probabilities, ece) in zip(figure.subplots(1, 2, sharey=True), (
            ("softmax", scores.before, scores.ece_before), ("calibrated", scores.after, scores.ece_after))):
        confidence = probabilities.max(axis=1)
        correct = probabilities.argmax(axis=1) == scores.labels
        which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
        counts = np.bincount(which, minlength=bins)
        with np.errstate(invalid="ignore"):
            accuracy = np.bincount(which, weights=correct, minlength=bins) / counts
        centres = (edges[:-1] + edges[1:]) / 2
        axes.bar(centres, np.nan_to_num(accuracy), width=1 / bins, edgecolor="black", alpha=0.7, label="accuracy")
        axes.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
        shares = axes.twinx()
        shares.plot(centres, counts / max(counts.sum(), 1), "o-", color="tab:orange", markersize=3,
                    label="share of utterances")
        shares.set_ylim(0, 1)
        shares.set_ylabel("share of utterances", color="tab:orange")
        axes.set_xlim(0, 1)
        axes.set_ylim(0, 1)
        axes.set_xlabel("top-1 confidence")
        axes.set_title(f"{name}: ECE {ece:.1f} %")
        axes.legend(loc="upper left", fontsize="small")
    figure.axes[0].set_ylabel("accuracy")
    figure.suptitle(f"{title} (temperatures: {_temperatures(scores.temperatures)})")
    return _save(figure, path)


def _temperatures(temperatures: dict[str, float]) -> str:
    values = sorted(temperatures.values())
    return f"{values[0]:.2f}" if values[0] == values[-1] else f"{values[0]:.2f} to {values[-1]:.2f}"


def _check_png_path(path) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file path (str or os.PathLike), got {type(path).__name__}")
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"path {path} must end in .png")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"folder {path.parent} for {path.name} does not exist")
    return path


def _save(figure: Figure, path: Path) -> Path:
    figure.savefig(path, dpi=DPI)
    return path


def plot_metric_bands(series: dict[str, dict[str, list[tuple[float, float, float, float]]]], path: str | os.PathLike,
                      *, ylabel: str, title: str) -> Path:
    """A metric against SNR with its confidence band: one panel per noise type, one line per system.
    ``series[system][noise]`` holds ``(snr_db, mean, lo, hi)`` points."""
    path = _check_png_path(path)
    kinds = list(dict.fromkeys(kind for by_kind in series.values() for kind in by_kind))
    if not kinds:
        raise ValueError("series holds no noise condition to plot")
    figure = Figure(figsize=(3.2 * len(kinds) + 1.5, 3.8), layout="constrained")
    panels = np.atleast_1d(figure.subplots(1, len(kinds), sharey=True))
    for axes, kind in zip(panels, kinds):
        for index, (system, by_kind) in enumerate(series.items()):
            points = sorted(by_kind.get(kind, []))
            if points:
                snr, mean, lo, hi = map(np.array, zip(*points))
                axes.plot(snr, mean, marker="o", color=f"C{index % 10}", label=system)
                axes.fill_between(snr, lo, hi, color=f"C{index % 10}", alpha=0.18, linewidth=0)
        axes.set_title(kind)
        axes.set_xlabel("SNR (dB)")
        axes.grid(alpha=0.3)
    panels[0].set_ylabel(ylabel)
    panels[-1].legend(fontsize="small", loc="lower right")
    figure.suptitle(title)
    return _save(figure, path)


def plot_loss_curves(histories: Sequence[tuple[str, Sequence[dict]]], path: str | os.PathLike, *, title: str) -> Path:
    """Each loss term of each training run against epochs (the DSNet paper's Fig. 2): one panel per term, one colour
    per run; the term on the training batches (``train_<term>`` of ``metrics.jsonl``) solid, on the validation
    utterances (``val_loss_<term>``) dashed."""
    path = _check_png_path(path)
    terms = list(dict.fromkeys(key.removeprefix("train_") for _, records in histories for r in records for key in r
                               if key.startswith("train_")))
    if not terms:
        raise ValueError("the histories hold no loss term (train_*) to plot")
    columns = min(len(terms), 4)
    rows = -(-len(terms) // columns)
    figure = Figure(figsize=(3.4 * columns, 2.8 * rows + 0.6), layout="constrained")
    panels = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
    for axes, term in zip(panels, terms):
        for index, (label, records) in enumerate(histories):
            for key, style, part in ((f"train_{term}", "-", "train"), (f"val_loss_{term}", "--", "validation")):
                points = [(r["epoch"], r[key]) for r in records if r.get(key) is not None]
                if points:
                    epochs, values = zip(*points)
                    axes.plot(epochs, values, linestyle=style, color=f"C{index % 10}", linewidth=1, alpha=0.8,
                              label=f"{label} ({part})")
        axes.set_title(term)
        axes.set_xlabel("epoch")
        axes.grid(alpha=0.3)
    for axes in panels[len(terms):]:
        axes.set_visible(False)
    if len(histories) <= 12:
        panels[0].legend(fontsize="x-small")
    figure.suptitle(title)
    return _save(figure, path)
