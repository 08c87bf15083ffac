"""Evaluation results as files in one folder: ``results.json`` (every number), ``report.md`` (tables that link the
PNG plots) and the plots (see :func:`write_report`)."""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tabulate import tabulate

from ser_fast.evaluation import emobox
from ser_fast.evaluation.evaluate import RunResults, ScoredItems
from ser_fast.evaluation.merit_eval import SE_METRICS, MeritResults
from ser_fast.evaluation.plots import (
    PROJECTIONS,
    plot_confusion,
    plot_embeddings,
    plot_expert_usage,
    plot_f1_vs_snr,
    plot_reliability,
    plot_uar_vs_snr,
)
from ser_fast.evaluation.statistics import (
    CI_METHOD,
    TEST_METHOD,
    compare_systems,
    distinguishable,
    summarize_system,
)
from ser_fast.runs.calibration import ECE_BINS

logger = logging.getLogger(__name__)

RESULTS_JSON = "results.json"
REPORT_MD = "report.md"
Results = RunResults | MeritResults


def write_report(results: Results | Sequence[Results], out_dir: str | os.PathLike, *,
                 title: str = "ser_fast evaluation", projection: str = "pca") -> Path:
    """Write results.json, report.md and its plots into ``out_dir`` (created if missing); returns report.md's path.
    ``results``: one or several :class:`RunResults` (Baseline, DSNet, EDRL-MEA) and :class:`MeritResults` (Sparse
    MERIT). Runs of the log-Mel models get ``confusion_<model>.png``, ``embeddings_<model>.png`` and (with noisy
    conditions) ``uar_vs_snr.png``; ``<model>`` is the model's name ("baseline", "dsnet") made unique by
    :func:`unique_labels`. ``projection`` is "pca" or "tsne" (slower). Sparse MERIT runs get emotion and enhancement
    tables, the expert usage and ``merit_f1_vs_snr.png`` / ``merit_expert_usage.png``, each named by its design."""
    runs = [results] if isinstance(results, Results) else list(results) if isinstance(results, Sequence) else None
    if not runs or not all(isinstance(r, Results) for r in runs):
        raise TypeError(f"results must be a RunResults or MeritResults, or a non-empty sequence of them, got "
                        f"{results!r:.80}")
    if not isinstance(out_dir, (str, os.PathLike)):
        raise TypeError(f"out_dir must be a folder path (str or os.PathLike), got {type(out_dir).__name__}")
    if projection not in PROJECTIONS:
        raise ValueError(f"projection {projection!r}: expected one of {PROJECTIONS}")
    if not isinstance(title, str) or not title:
        raise ValueError(f"title must be a non-empty string, got {title!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cnn = [r for r in runs if isinstance(r, RunResults)]
    merit = [r for r in runs if isinstance(r, MeritResults)]
    labels = unique_labels(cnn)
    merit_labels = _numbered([r.design for r in merit])

    scored = _emobox_entries(labels + merit_labels, cnn + merit)
    numbers = {"title": title, "runs": [{"label": label, **r.as_dict(),
                                         **({"emobox": scored[label]} if label in scored else {})}
                                        for label, r in zip(labels + merit_labels, cnn + merit)]}
    (out_dir / RESULTS_JSON).write_text(json.dumps(finite_json(numbers), indent=1, allow_nan=False))

    sections = [f"# {title}"]
    categorical = [(label, r) for label, r in zip(labels, cnn) if r.clean.pooled is not None]
    if categorical:
        sections += _cnn_sections([label for label, _ in categorical], [r for _, r in categorical], out_dir, title,
                                  projection)
    rated = [(label, r) for label, r in zip(labels, cnn) if any(c.dimensional is not None for c in r.conditions)]
    if rated:
        sections += ["## Arousal, valence and dominance", DIMENSIONAL_NOTE, dimensional_table(rated)]
        # A dimensional DSNet's subspaces are probed as a categorical one's are (its own section holds them).
        sections += [disentanglement_section(label, r) for label, r in rated
                     if r.clean.pooled is None and r.disentanglement is not None]
    if cnn:
        sections.append(_skipped_section(labels, cnn))
    if merit:
        if cnn:
            sections.append("## Sparse MERIT: joint enhancement and emotion recognition")
        sections.append(merit_sections(merit, merit_labels, out_dir))
    if scored:
        sections += ["## EmoBox metrics", emobox.SECTION_NOTE, emobox.emobox_table(list(scored.items()))]
    report = out_dir / REPORT_MD
    report.write_text("\n\n".join(sections) + "\n")
    logger.info("wrote %s", report)
    return report


DIMENSIONAL_NOTE = ("Lin's concordance correlation coefficient (CCC, the field's headline metric), Pearson's r and the "
                    "mean absolute error of each dimension, on the evaluated corpus' rating scale (the models' "
                    "predictions, made on [0, 1], restored to it); all fold models' predictions of the rated "
                    "utterances together.")


def dimensional_table(rated: Sequence[tuple[str, Results]]) -> str:
    """One row per run, condition and dimension: CCC, Pearson's r, MAE; and the mean CCC per run and condition."""
    rows = []
    for label, run in rated:
        for condition in run.conditions:
            scores = condition.dimensional
            if scores is None:
                continue
            for k, name in enumerate(scores.dimensions):
                rows.append((label, run.eval_corpus, condition.name, name, scores.count, _shown(scores.ccc[k]),
                             _shown(scores.pearson[k]), _shown(scores.mae[k])))
            rows.append((label, run.eval_corpus, condition.name, "mean CCC", scores.count, _shown(scores.mean_ccc),
                         "", ""))
    return _markdown_table(rows, ["model", "evaluated on", "condition", "dimension", "utterances", "CCC",
                                  "Pearson r", "MAE"], numbers=False)


def _shown(value: float) -> str:
    return "—" if value != value else f"{value:.3f}"


def _emobox_entries(labels: Sequence[str], runs: Sequence[Results]) -> dict[str, dict]:
    """EmoBox's per-fold metrics of each run trained on its folds and scored on the same corpus, by label."""
    entries = {}
    for label, run in zip(labels, runs):
        clean = run.conditions[0]
        if getattr(clean, "pooled", True) is None:
            continue
        if run.protocol == emobox.PROTOCOL and not run.cross_corpus and clean.items is not None:
            entries[label] = emobox.emobox_scores(clean.items)
    return entries


def _cnn_sections(labels: list[str], runs: list[RunResults], out_dir: Path, title: str, projection: str) -> list[str]:
    sections = [_runs_table(labels, runs)]
    if len({r.run_dir for r in runs}) > 1:
        sections += ["## Side by side", SIDE_BY_SIDE_NOTE, side_by_side_table(labels, runs)]
    sections += ["## Scores", _scores_table(labels, runs)]
    uncertainty = uncertainty_section(labels, runs)
    if uncertainty:
        sections += ["## How sure", uncertainty]
    sections += ["## Confidence", confidence_section([(label, run.conditions) for label, run in zip(labels, runs)],
                                                     out_dir)]
    noisy = [(label, r) for label, r in zip(labels, runs) if any(c.condition.kind is not None for c in r.conditions)]
    if noisy:
        plot_uar_vs_snr(noisy, out_dir / "uar_vs_snr.png", title=f"{title}: UAR against SNR")
        sections.append("![UAR against SNR, one line per model and noise type](uar_vs_snr.png)")
    for label, run in zip(labels, runs):
        sections.append(_model_section(label, run, out_dir, projection))
    return sections


def uncertainty_section(labels: Sequence[str], runs: Sequence[RunResults], *, n_resamples: int = 2000) -> str:
    """Each run's clean UAR with its 95 % CI, and each run against the first on the same corpus (paired: the same
    utterances and fold models), marked distinguishable only where the difference's CI excludes 0. One training seed:
    the CIs cover the test speakers and utterances, not the training seed. Empty when no run kept its predictions."""
    by_corpus: dict[tuple[str, Path, bool], list[tuple[str, ScoredItems]]] = {}
    for label, run in zip(labels, runs):
        if run.clean.items is not None:
            key = (run.eval_corpus, run.eval_root, run.cross_corpus)
            by_corpus.setdefault(key, []).append((label, run.clean.items))
    rows, pairs = [], []
    for (corpus, _, _), scored in by_corpus.items():
        keyed = [(label, {(f, p): (s, int(y), int(q)) for f, p, s, y, q in zip(items.folds, items.paths,
                                                                            items.speakers, items.labels,
                                                                            items.predictions)})
                 for label, items in scored]
        common = sorted(set.intersection(*(set(table) for _, table in keyed)))
        if len({table[k][0] for _, table in keyed[:1] for k in common}) < 2:
            continue
        first = keyed[0][1]
        speakers, truth = [first[k][0] for k in common], np.array([first[k][1] for k in common])
        predicted = {label: np.array([[table[k][2] for k in common]]) for label, table in keyed}
        num_classes = len(runs[0].classes)
        for label, _ in keyed:
            s = summarize_system(truth, predicted[label], speakers, "uar", num_classes, n_resamples=n_resamples)
            rows.append((label, corpus, s["utterances"], s["speakers"], f"{s['mean']:.1f}",
                         f"[{s['ci95'][0]:.1f}, {s['ci95'][1]:.1f}]"))
        reference = keyed[0][0]
        for label, _ in keyed[1:]:
            c = compare_systems(truth, predicted[label], predicted[reference], speakers, "uar", num_classes,
                                n_resamples=n_resamples)
            lo, hi = c["ci95"]
            pairs.append((f"{label} − {reference}", corpus, f"{c['diff']:+.1f}", f"[{lo:+.1f}, {hi:+.1f}]",
                          f"{c['p']:.3g}", "yes" if distinguishable(c) else "no"))
    if not rows:
        return ""
    text = ("Clean UAR % with its 95 % CI (" + CI_METHOD + "; one training seed, so the training seed's own "
            "spread is not in it):\n\n" + _markdown_table(rows, ["model", "evaluated on", "items", "speakers",
                                                                   "UAR %", "95 % CI"], numbers=False))
    if pairs:
        text += ("\n\nPaired differences (" + TEST_METHOD + "); a difference is a finding only where its CI excludes "
                 "0:\n\n" + _markdown_table(pairs, ["UAR difference", "evaluated on", "points", "95 % CI", "p",
                                                    "distinguishable"], numbers=False))
    return text


def _numbered(names: list[str]) -> list[str]:
    """Names made unique by a number where they repeat."""
    counts = Counter(names)
    seen: Counter = Counter()
    out = []
    for name in names:
        seen[name] += 1
        out.append(f"{name}-{seen[name]}" if counts[name] > 1 else name)
    return out


def unique_labels(runs: Sequence[RunResults]) -> list[str]:
    """Each result's model name, told apart where names collide: a cross-corpus result as "<model>-<train>2<eval>" (the
    paper's IEM2MSP), then by run folder, then by a number; safe in a file name."""
    describers = (lambda r: f"{r.model}-{r.train_corpus}2{r.eval_corpus}" if r.cross_corpus else r.model,
                  lambda r: f"{r.model}-{r.run_dir.name}-on-{r.eval_corpus}")
    labels = [r.model for r in runs]
    for describe in describers:
        counts = Counter(labels)
        labels = [describe(r) if counts[label] > 1 else label for label, r in zip(labels, runs)]
    return [re.sub(r"[^A-Za-z0-9._-]+", "-", label) for label in _numbered(labels)]


def _runs_table(labels: list[str], runs: list[RunResults]) -> str:
    rows = [(label, f"`{r.run_dir}`", r.train_corpus, f"{r.eval_corpus} (`{r.eval_root}`)", r.protocol, len(r.folds),
             f"mean of {len(r.folds)} fold models on the whole corpus" if r.cross_corpus
             else "each fold model on its test set, predictions pooled") for label, r in zip(labels, runs)]
    return _markdown_table(rows, ["model", "run", "trained on", "evaluated on", "protocol", "folds", "scoring"])


SIDE_BY_SIDE_NOTE = ("UAR % / macro-F1 % of each trained run: clean speech and each noise type (mean over its SNRs) "
                     "within the training corpus, then clean speech on every other corpus (mean over fold models).")


def side_by_side_table(labels: Sequence[str], runs: Sequence[RunResults]) -> str:
    """One column per training run (named by its within-corpus result's label), one row per
    condition group; a run without a result for a row gets "–"."""
    systems: dict[Path, str] = {}
    for label, run in zip(labels, runs):
        if run.run_dir not in systems or not run.cross_corpus:
            systems[run.run_dir] = label if not run.cross_corpus else run.model
    cells: dict[str, dict[Path, str]] = {}
    for run in runs:
        if run.cross_corpus:
            groups = {f"{run.eval_corpus} (cross-corpus), clean": [run.clean]}
        else:
            groups = {"clean": [run.clean]}
            for condition in run.conditions[1:]:
                groups.setdefault(f"{condition.condition.kind} (mean of {_snr_span(run, condition)})", []).append(
                    condition)
        for row, conditions in groups.items():
            uar = sum(c.uar for c in conditions) / len(conditions)
            f1 = sum(c.macro_f1 for c in conditions) / len(conditions)
            cells.setdefault(row, {})[run.run_dir] = f"{100 * uar:.1f} / {100 * f1:.1f}"
    rows = [(row, *(by_run.get(run_dir, "–") for run_dir in systems)) for row, by_run in cells.items()]
    return _markdown_table(rows, ["condition", *systems.values()], numbers=False)


def _snr_span(run: RunResults, condition) -> str:
    snrs = [c.condition.snr_db for c in run.conditions if c.condition.kind == condition.condition.kind]
    return f"{min(snrs):g}..{max(snrs):g} dB" if len(snrs) > 1 else f"{snrs[0]:g} dB"


def _scores_table(labels: list[str], runs: list[RunResults]) -> str:
    rows = [(label, r.eval_corpus, c.name, c.num_utterances, *_percents(c)) for label, r in zip(labels, runs)
            for c in r.conditions]
    return _markdown_table(rows, ["model", "evaluated on", "condition", "utterances", *PERCENT_HEADERS], numbers=False)


PERCENT_HEADERS = ("UAR %", "WA %", "macro-F1 %")


def _percents(scores) -> tuple[str, str, str]:
    """UAR, WA and macro-F1 in % (of a ``ClassificationScores`` or a ``ConditionResult``'s headline)."""
    return f"{100 * scores.uar:.2f}", f"{100 * scores.wa:.2f}", f"{100 * scores.macro_f1:.2f}"


def _model_section(label: str, run: RunResults, out_dir: Path, projection: str) -> str:
    clean = run.clean
    pooled_note = (f"Per-class recall and confusion of all {len(run.folds)} fold models' predictions together "
                   f"(the headline scores above are the mean over folds)." if run.cross_corpus else
                   "Per-class recall and confusion of all folds' test predictions together.")
    confusion = _markdown_table([(c, *row) for c, row in zip(run.classes, clean.pooled.confusion.tolist())],
                                ["true \\ predicted", *run.classes])
    parts = [f"## {label}: clean speech on {run.eval_corpus}", pooled_note, clean.pooled.to_markdown(),
             "Confusion matrix (rows: true class, columns: predicted class):", confusion]
    if run.cross_corpus:
        per_fold = [(name, *_percents(s)) for name, s in clean.per_fold.items()]
        parts.append(_markdown_table(per_fold, ["fold model", *PERCENT_HEADERS], numbers=False))
    plot_confusion(clean.pooled, out_dir / f"confusion_{label}.png",
                   title=f"{label}: {run.train_corpus} → {run.eval_corpus}, clean")
    parts.append(f"![confusion matrix of {label}](confusion_{label}.png)")
    if run.embeddings is not None and len(run.embeddings.labels) >= 3:
        plot_embeddings(run.embeddings, out_dir / f"embeddings_{label}.png", projection=projection,
                        title=f"{label}: embeddings on {run.eval_corpus}")
        parts.append(f"![{projection} of {label}'s embedding spaces](embeddings_{label}.png)")
    if run.disentanglement is not None:
        parts.append(disentanglement_section(label, run))
    return "\n\n".join(parts)


def disentanglement_section(label: str, run: RunResults) -> str:
    """What DSNet's subspaces encode (:mod:`ser_fast.runs.disentanglement`), with the paper's expected direction
    checked: z_er above z_ei on the emotion probe, z_ei above z_er on the speaker probe."""
    folds = run.disentanglement_folds
    speakers = sorted({f["speakers"] for f in folds.values()})
    rows = [(space, _percent(s["dead_fraction"]), _percent(s["emotion_probe_uar"]),
             _percent(s["speaker_probe_accuracy"])) for space, s in run.disentanglement.items()]
    table = _markdown_table(rows, ["space", "dead features %", "emotion probe UAR %", "speaker probe accuracy %"],
                            numbers=False)
    scores = run.disentanglement
    checks = [("emotion probe: z_er > z_ei", "emotion_probe_uar", "z_er", "z_ei"),
              ("speaker probe: z_ei > z_er", "speaker_probe_accuracy", "z_ei", "z_er")]
    verdicts = []
    for claim, score, high, low in checks:
        a, b = scores.get(high, {}).get(score), scores.get(low, {}).get(score)
        held = "not measurable" if a is None or b is None else "holds" if a > b else "does not hold"
        verdicts.append(f"{claim}: {held}")
    return "\n\n".join([
        f"### {label}: what the subspaces encode",
        f"Each fold model's h, z_er and z_ei on utterances it never trained on ({_held_out_note(run)}; "
        f"{'/'.join(map(str, speakers))} speakers per fold), then the mean over {len(folds)} fold models. Probes: "
        "logistic regressions, cross-validated with speakers as groups (emotion, chance "
        f"{100 / len(run.classes):.0f} %) or stratified by speaker (speaker, chance 100 % / speakers). The paper's "
        "Fig. 3 expects z_er to carry the emotion and z_ei the speaker.", table, "; ".join(verdicts) + "."])


def _held_out_note(run: RunResults) -> str:
    return "the whole corpus" if run.cross_corpus else "its validation and test speakers"


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _skipped_section(labels: list[str], runs: list[RunResults]) -> str:
    rows = []
    for label, run in zip(labels, runs):
        for path, reason in run.skipped:
            conditions = [c.name for c in run.conditions if any(p == path for p, _ in c.skipped)]
            rows.append((label, f"`{path}`", _cell(reason), ", ".join(conditions)))
    if not rows:
        return "## Skipped utterances\n\nNone: every utterance was scored."
    return "## Skipped utterances\n\n" + _markdown_table(rows, ["model", "file", "reason", "conditions"])


def _markdown_table(rows, headers: Sequence[str], *, numbers: bool = True) -> str:
    """A GitHub markdown table; ``numbers=False`` keeps cells as written (tabulate would re-format numeric text)."""
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=not numbers)


def _cell(text: str) -> str:
    """Error messages may hold '|' or line breaks, which would split a markdown table row."""
    return " ".join(str(text).split()).replace("|", "\\|")


def finite_json(value):
    """NaN (a class absent from the labels) as null: JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    return value


def merit_sections(runs: Sequence[MeritResults], labels: Sequence[str], out_dir: Path) -> str:
    """The MERIT tables, and the plots (written into ``out_dir``) linked, as markdown."""
    first = runs[0]
    parts = [f"Trained on {first.train_corpus}, evaluated on {first.eval_corpus}; seen noise: "
             f"{', '.join(first.seen_noise)}; unseen noise: {', '.join(first.unseen_noise) or 'none'}."]
    # A dimensional model (no classes) has no class scores: it appears in the dimensional table only.
    classified = [(label, r) for label, r in zip(labels, runs) if r.conditions[0].scores is not None]
    if classified:
        parts += ["### Emotion recognition (macro-F1 / UAR, %)",
                  ser_table([r for _, r in classified], [label for label, _ in classified])]
    rated = [(label, r) for label, r in zip(labels, runs) if any(c.dimensional is not None for c in r.conditions)]
    if rated:
        parts += ["### Arousal, valence and dominance", DIMENSIONAL_NOTE, dimensional_table(rated)]
    parts += ["### Speech enhancement (mean over utterances; noisy input → enhanced)", se_table(runs, labels)]
    if classified and any(len(r.conditions) > 1 for _, r in classified):
        plot_f1_vs_snr([r for _, r in classified], [label for label, _ in classified],
                       out_dir / "merit_f1_vs_snr.png")
        parts.append("![macro-F1 against SNR](merit_f1_vs_snr.png)")
    parts += ["### Confidence", confidence_section([(label, run.conditions) for label, run in zip(labels, runs)],
                                                   out_dir)]
    routed = [(label, r) for label, r in zip(labels, runs) if r.expert_usage]
    if routed:
        parts += ["### Expert usage (share of each task's frames, noisy test speech)", usage_table(routed)]
        plot_expert_usage(routed, out_dir / "merit_expert_usage.png")
        parts.append("![share of frames per expert and task](merit_expert_usage.png)")
    return "\n\n".join(parts)


def confidence_section(entries: Sequence[tuple[str, Sequence]], out_dir: Path) -> str:
    """The expected calibration error of each run's pooled predictions per condition, before (softmax) and after its
    folds' temperatures, and the reliability plot of its first (clean) condition as ``reliability_<label>.png``."""
    rows, plots = [], []
    for label, conditions in entries:
        scored = [c for c in conditions if c.confidence is not None]
        for condition in scored:
            rows.append((label, condition.name, f"{condition.confidence.ece_before:.1f}",
                         f"{condition.confidence.ece_after:.1f}"))
        if scored:
            first = scored[0]
            plot_reliability(first.confidence, out_dir / f"reliability_{label}.png", title=f"{label}, {first.name}")
            temperatures = ", ".join(f"{fold} {t:.2f}" for fold, t in first.confidence.temperatures.items())
            plots += [f"{label}: temperatures (fitted on each fold's validation utterances) {temperatures}.",
                      f"![reliability of {label}, {first.name}](reliability_{label}.png)"]
    if not rows:
        return "No calibration: no condition was scored."
    note = (f"Expected calibration error (%, {ECE_BINS} equal-width bins of the top-1 confidence; lower is better) of "
            "the plain softmax and of the calibrated probabilities that predict and export use. A temperature "
            "changes no label, only how sure the model says it is.")
    return "\n\n".join([note, _markdown_table(rows, ["model", "condition", "ECE softmax", "ECE calibrated"],
                                               numbers=False), *plots])


def ser_table(runs: Sequence[MeritResults], labels: Sequence[str]) -> str:
    names = [c.name for c in runs[0].conditions]
    rows = [[name] + [_ser_cell(r, name) for r in runs] for name in names]
    return _markdown_table(rows, ["condition", *labels])


def se_table(runs: Sequence[MeritResults], labels: Sequence[str]) -> str:
    rows = []
    for label, run in zip(labels, runs):
        for c in run.conditions:
            if c.enhancement:
                rows.append([label, c.name] + [_se_cell(c.enhancement, m) for m in SE_METRICS])
    if not rows:
        return "Not computed (the evaluation ran with enhancement scores off)."
    return _markdown_table(rows, ["model", "condition", "SSNR (dB)", "PESQ (wb)", "STOI"])


def usage_table(routed: Sequence[tuple[str, MeritResults]]) -> str:
    experts = max(len(share) for _, r in routed for share in r.expert_usage.values())
    rows = [[label, task] + [f"{100 * s:.1f} %" for s in share] for label, r in routed
            for task, share in r.expert_usage.items()]
    return _markdown_table(rows, ["model", "task", *[f"expert {e}" for e in range(experts)]])


def _ser_cell(run: MeritResults, name: str) -> str:
    try:
        c = run.condition(name)
    except KeyError:
        return "–"
    if c.scores is None:
        return "–"
    return f"{100 * c.scores.macro_f1:.1f} / {100 * c.scores.uar:.1f}"


def _se_cell(scores: dict, metric: str) -> str:
    enhanced, noisy = scores.get(metric), scores.get(f"{metric}_noisy")
    if enhanced is None or noisy is None:
        return "not installed"
    return f"{noisy:.2f} → {enhanced:.2f}"
