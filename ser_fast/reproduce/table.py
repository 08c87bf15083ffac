"""``table.md``: a grid's ``results.json`` in the paper's table shape, our mean ± std over seeds with its 95 % CI, the
paper's published number in its own column, and every comparison the paper makes, marked distinguishable only where
its CI excludes 0. Everything here is read from ``results.json``, so the two always agree."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tabulate import tabulate

from ser_fast.evaluation.paper_numbers import paper_numbers
from ser_fast.evaluation.statistics import CI_METHOD, distinguishable
from ser_fast.reproduce.experiments import ALL_NOISE, is_noisy, paper_setting
from ser_fast.runs.atomic import atomic_write_text

TABLE_MD = "table.md"
METRIC_NAMES = {"uar": "UAR", "wa": "WA", "macro_f1": "macro-F1", "ssnr": "SSNR (dB)", "pesq": "PESQ", "stoi": "STOI"}
DECIMALS = {"pesq": 2, "stoi": 3}
RELATIVE_GAIN = "_gain_pct"  # a paper's gain relative to the baseline's value, in %


def format_row(row: dict) -> str:
    """``mean ± std [lo, hi]``: % with one decimal, SSNR in dB, PESQ and STOI on their scales."""
    lo, hi = row["ci95"]
    d = DECIMALS.get(row["metric"], 1)
    return f"{row['mean']:.{d}f} ± {row['std']:.{d}f} [{lo:.{d}f}, {hi:.{d}f}]"


def format_comparison(comparison: dict) -> tuple[str, str, str, str]:
    """diff, CI, p, distinguishable; a per-utterance score's diff and CI also relative to b's mean, in %."""
    lo, hi = comparison["ci95"]
    d = DECIMALS.get(comparison["metric"], 1)
    diff, interval = f"{comparison['diff']:+.{d}f}", f"[{lo:+.{d}f}, {hi:+.{d}f}]"
    if comparison.get("relative_pct") is not None:
        diff += f" ({comparison['relative_pct']:+.1f} %)"
    if comparison.get("relative_ci95") is not None:
        interval += " ([{:+.1f}, {:+.1f}] %)".format(*comparison["relative_ci95"])
    return diff, interval, f"{comparison['p']:.3g}", "yes" if distinguishable(comparison) else "no"


def render_table(results: dict) -> str:
    settings = results["settings"]
    rows, comparisons = results["rows"], results["comparisons"]
    any_row = rows[0] if rows else {"seeds": 0, "utterances": 0, "speakers": 0}
    lines = [
        f"# Reproduction: {results['experiment']} ({results['paper']})", "",
        f"Trained on `{results['corpus']}`, protocol `{settings['protocol']}`, {settings['seeds']} seeds "
        f"(0..{settings['seeds'] - 1}), {settings['epochs']} epochs of {settings['max_frames']}-frame crops. "
        f"Within the corpus: {any_row['utterances']} pooled test utterances of {any_row['speakers']} speakers. "
        "Each cell: mean ± std over seeds of the metric of each seed's predictions pooled over folds, and its 95 % "
        f"CI ({CI_METHOD}). Classification metrics in %, SSNR in dB, PESQ and STOI on their own scales.", "",
    ]
    if results.get("pooled"):
        lines += [f"Noise `{ALL_NOISE}`: every noise type at that SNR taken together ("
                  + "; ".join(f"{name}: {', '.join(members)}" for name, members in results["pooled"].items()) + ").",
                  ""]
    clean = [s for s in results["tested"] if not is_noisy(s)]
    noisy = [s for s in results["tested"] if is_noisy(s)] + list(results.get("pooled", {}))
    for metric in _metrics(rows):
        lines += [f"## {METRIC_NAMES.get(metric, metric)}", ""]
        scored = [s for s in clean if any(r["metric"] == metric and r["setting"] == s for r in rows)]
        if scored:  # speech-enhancement metrics are scored in noise only
            lines += [_settings_table(results, metric, scored), ""]
        if noisy:
            lines += [f"### {METRIC_NAMES.get(metric, metric)} in noise", "", _noise_table(rows, metric, noisy), ""]
    lines += ["## Comparisons (a − b, paired)", "", _comparison_table(results, comparisons), ""]
    lines += ["## The paper's numbers", "", _paper_sources(results), ""]
    if comparisons:
        lines += [f"Test: {comparisons[0]['test']}. \"Distinguishable\": the 95 % CI of the difference excludes 0.", ""]
    return "\n".join(lines)


def _metrics(rows: Sequence[dict]) -> list[str]:
    return list(dict.fromkeys(row["metric"] for row in rows))


def _settings_table(results: dict, metric: str, settings: Sequence[str]) -> str:
    rows = {(r["system"], r["setting"]): r for r in results["rows"] if r["metric"] == metric}
    body = []
    for system in results["systems"]:
        cells = [format_row(rows[(system, s)]) if (system, s) in rows else "—" for s in settings]
        papers = [_paper_cell(rows.get((system, s))) for s in settings]
        body.append([system, *cells, *papers])
    headers = ["system", *settings, *[f"paper: {s}" for s in settings]]
    return tabulate(body, headers=headers, tablefmt="github", disable_numparse=True)


def _paper_cell(row: dict | None) -> str:
    return "—" if row is None or row.get("paper") is None else f"{row['paper']['value']:g}"


def _paper_sources(results: dict) -> str:
    """Where each published number comes from; they were measured on real corpora, so they are context, not targets."""
    sources = dict.fromkeys(r["paper"]["source"] for r in results["rows"] if r.get("paper"))
    sources.update(dict.fromkeys(p.source for p in paper_numbers(results["experiment"]) if p.versus is not None))
    if not sources:
        return "The paper prints no number for these systems and settings."
    return ("The paper's columns are its published numbers on real corpora (our synthetic corpus is not theirs: "
            "context, not targets). Sources:\n\n" + "\n".join(f"- {source}" for source in sources))


def _noise_table(rows: Sequence[dict], metric: str, settings: Sequence[str]) -> str:
    by_key = {(r["system"], r["setting"]): r for r in rows if r["metric"] == metric}
    kinds = list(dict.fromkeys(s.split("@")[0] for s in settings))
    snrs = list(dict.fromkeys(s.split("@")[1] for s in settings))
    systems = list(dict.fromkeys(r["system"] for r in rows))
    body = []
    for kind in kinds:
        for system in systems:
            cells = [by_key.get((system, f"{kind}@{snr}")) for snr in snrs]
            body.append([kind, system, *[format_row(c) if c else "—" for c in cells]])
    return tabulate(body, headers=["noise", "system", *[f"{snr} dB" for snr in snrs]], tablefmt="github",
                    disable_numparse=True)


def _comparison_table(results: dict, comparisons: Sequence[dict]) -> str:
    gains = {(p.system, p.versus, p.setting, _gained_metric(p.metric)): p
             for p in paper_numbers(results["experiment"]) if p.versus is not None}
    absolute = {(r["system"], r["setting"], r["metric"]): r["paper"]["value"] for r in results["rows"]
                if r.get("paper")}
    body = []
    for c in comparisons:
        paper = _paper_difference(c, gains, absolute)
        body.append([f"{c['a']} − {c['b']}", c["setting"], METRIC_NAMES.get(c["metric"], c["metric"]),
                     *format_comparison(c), paper])
    return tabulate(body, headers=["a − b", "setting", "metric", "diff", "95 % CI", "p", "distinguishable",
                                   "paper's a − b"], tablefmt="github", disable_numparse=True)


def _paper_difference(comparison: dict, gains: dict, absolute: dict) -> str:
    gain = gains.get((comparison["a"], comparison["b"], paper_setting(comparison["setting"]), comparison["metric"]))
    if gain is not None:
        return f"{gain.value:+g}{' %' if gain.metric.endswith(RELATIVE_GAIN) else ''}"
    a = absolute.get((comparison["a"], comparison["setting"], comparison["metric"]))
    b = absolute.get((comparison["b"], comparison["setting"], comparison["metric"]))
    return "—" if a is None or b is None else f"{a - b:+.2f}"


def _gained_metric(paper_metric: str) -> str:
    """The metric a paper's gain is of: ``"macro_f1_gain"`` (points) → ``"macro_f1"``, ``"ssnr_gain_pct"`` (relative,
    compared with our ``relative_pct``) → ``"ssnr"``."""
    return paper_metric.removesuffix(RELATIVE_GAIN).removesuffix("_gain")


def write_table(results: dict, out: Path) -> Path:
    path = out / TABLE_MD
    atomic_write_text(path, render_table(results))
    return path
