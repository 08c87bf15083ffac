"""A MERIT evaluation as files: ``results.json``, ``report.md`` (emotion and enhancement tables per
condition, the expert-usage table) and two PNG plots: macro-F1 against SNR, and each task's share
of frames per expert."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from tabulate import tabulate

from ser_fast.evaluation.merit_eval import MeritResults
from ser_fast.evaluation.plots import _check_png_path, _save
from ser_fast.evaluation.report import _finite

RESULTS_JSON = "results.json"
REPORT_MD = "report.md"


def write_merit_report(results: MeritResults | Sequence[MeritResults], out_dir: str | os.PathLike, *,
                       title: str = "Sparse MERIT evaluation", labels: Sequence[str] | None = None) -> Path:
    """Write the report of one or several MERIT runs (e.g. the designs side by side) into ``out_dir``;
    returns report.md's path. ``labels`` names each run (default: its design)."""
    runs = [results] if isinstance(results, MeritResults) else list(results)
    if not runs or not all(isinstance(r, MeritResults) for r in runs):
        raise TypeError("results must be a MeritResults or a non-empty sequence of them")
    labels = list(labels) if labels is not None else [r.design for r in runs]
    if len(labels) != len(runs) or len(set(labels)) != len(labels):
        raise ValueError(f"labels must name each run once, got {labels} for {len(runs)} runs")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    numbers = {"title": title, "runs": [{"label": label, **r.as_dict()} for label, r in zip(labels, runs)]}
    (out_dir / RESULTS_JSON).write_text(json.dumps(_finite(numbers), indent=1, allow_nan=False))
    sections = [f"# {title}", merit_sections(runs, labels, out_dir)]
    path = out_dir / REPORT_MD
    path.write_text("\n\n".join(sections) + "\n")
    return path


def merit_sections(runs: Sequence[MeritResults], labels: Sequence[str], out_dir: Path, prefix: str = "") -> str:
    """The tables and plots (written into ``out_dir``, names starting with ``prefix``) as markdown."""
    first = runs[0]
    parts = [f"Trained on {first.train_corpus}, evaluated on {first.eval_corpus}; seen noise: "
             f"{', '.join(first.seen_noise)}; unseen noise: {', '.join(first.unseen_noise) or 'none'}.",
             "### Emotion recognition (macro-F1 / UAR, %)", ser_table(runs, labels),
             "### Speech enhancement (mean over utterances; noisy input → enhanced)", se_table(runs, labels)]
    if any(len(r.conditions) > 1 for r in runs):
        plot_f1_vs_snr(runs, labels, out_dir / f"{prefix}merit_f1_vs_snr.png")
        parts.append(f"![macro-F1 against SNR]({prefix}merit_f1_vs_snr.png)")
    routed = [(label, r) for label, r in zip(labels, runs) if r.expert_usage]
    if routed:
        parts += ["### Expert usage (share of each task's frames, noisy test speech)", usage_table(routed)]
        plot_expert_usage(routed, out_dir / f"{prefix}merit_expert_usage.png")
        parts.append(f"![share of frames per expert and task]({prefix}merit_expert_usage.png)")
    return "\n\n".join(parts)


def ser_table(runs: Sequence[MeritResults], labels: Sequence[str]) -> str:
    names = [c.name for c in runs[0].conditions]
    rows = [[name] + [_ser_cell(r, name) for r in runs] for name in names]
    return tabulate(rows, headers=["condition", *labels], tablefmt="github")


def se_table(runs: Sequence[MeritResults], labels: Sequence[str]) -> str:
    rows = []
    for label, run in zip(labels, runs):
        for c in run.conditions:
            if c.enhancement:
                rows.append([label, c.name] + [_se_cell(c.enhancement, m) for m in ("ssnr", "pesq", "stoi")])
    if not rows:
        return "Not computed (the evaluation ran with enhancement scores off)."
    return tabulate(rows, headers=["model", "condition", "SSNR (dB)", "PESQ (wb)", "STOI"], tablefmt="github")


def usage_table(routed: Sequence[tuple[str, MeritResults]]) -> str:
    experts = max(len(share) for _, r in routed for share in r.expert_usage.values())
    rows = [[label, task] + [f"{100 * s:.1f} %" for s in share] for label, r in routed
            for task, share in r.expert_usage.items()]
    return tabulate(rows, headers=["model", "task", *[f"expert {e}" for e in range(experts)]], tablefmt="github")


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
    axes.set_xlabel("SNR (dB)")
    axes.set_ylabel("macro-F1 (%)")
    axes.set_title("Emotion recognition in noise")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    return _save(figure, path)


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


def _ser_cell(run: MeritResults, name: str) -> str:
    try:
        c = run.condition(name)
    except KeyError:
        return "–"
    return f"{100 * c.scores.macro_f1:.1f} / {100 * c.scores.uar:.1f}"


def _se_cell(scores: dict, metric: str) -> str:
    enhanced, noisy = scores.get(metric), scores.get(f"{metric}_noisy")
    if enhanced is None or noisy is None:
        return "not installed"
    return f"{noisy:.2f} → {enhanced:.2f}"
