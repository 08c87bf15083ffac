"""A MERIT evaluation's markdown: emotion and enhancement tables per condition, the expert-usage
table, and its two plots (macro-F1 against SNR, each task's share of frames per expert) linked;
``report.write_report`` writes them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tabulate import tabulate

from ser_fast.evaluation.merit_eval import MeritResults
from ser_fast.evaluation.plots import plot_expert_usage, plot_f1_vs_snr


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
