"""``make reproduce`` (``python -m ser_fast.reproduce``): the three papers' grids on the built-in synthetic corpora, one
report.

The choices below were made once, for every system alike, before any system was compared, and are never changed to
move one system's number:

- Two corpora of 20 speakers × 12 utterances per class (960 each, 4 classes): ``studio`` (seed 0) trains and tests
  within; ``room`` (seed 101: other speakers) is the cross-corpus test. The ``room`` condition was calibrated with a
  reference that is none of the systems (``ser_fast.evaluation.reference_probe``; ``ser_fast.data.synthetic.channel``
  says how), and the report re-measures it.
- Protocol ``halves``: two speaker-disjoint halves, each the other's test set, so every one of the 960 utterances is
  tested once per seed by a model that never heard its speaker.
- 3 seeds; ``epochs`` epochs of ``max_frames``-frame crops (Sparse MERIT: crops of the same length in seconds), in
  float32 everywhere: bf16 is the default only where the CPU is fast at it, and the built-in numbers must not depend on
  the machine's ISA.
- Sparse MERIT's grid is not in the default run: it does not fit the 90 minutes. On the 2-core development machine,
  alone (2026-12-06), one MERIT cell of this corpus trains in 1.7-2.5 min (6 epochs; 43 % of it synthesizing the
  babble of its training mixtures) and tests its 480 utterances in the grid's 7 conditions, with SSNR, PESQ and STOI,
  in about 5.3 min; the first cell of a fold takes about 11.7 min in all, as it also scores the noisy inputs, which
  are the same for every cell of the fold and are scored once per process (``ser_fast.evaluation.enhancement``).
  Its cross-corpus test scores clean speech only (20 s). With 3 seeds that is 2 x 11.7 + 28 x 7.6 min, about 3.9
  hours. ``--experiments merit`` runs it; ``--seeds 1`` runs its first seed (about 85 min).
- The papers' full protocols are ``ser-fast reproduce`` with ``--protocol loso --epochs 100 --max-frames 600``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ser_fast.data import Corpus, load_corpus, synthesize_corpus
from ser_fast.evaluation.reference_probe import reference_probe
from ser_fast.reproduce.experiments import EXPERIMENTS
from ser_fast.reproduce.grid import GridSettings
from ser_fast.reproduce.runner import reproduce
from ser_fast.runs.atomic import atomic_write_text

log = logging.getLogger("ser_fast.reproduce")

REPORT_MD, CALIBRATION_JSON = "report.md", "calibration.json"


@dataclass(frozen=True)
class BuiltinSettings:
    speakers: int = 20
    per_class: int = 12
    conditions: tuple[str, str] = ("studio", "room")
    corpus_seeds: tuple[int, int] = (0, 101)
    seeds: int = 3
    epochs: int = 6
    max_frames: int = 100
    protocol: str = "halves"
    experiments: tuple[str, ...] = tuple(name for name, e in EXPERIMENTS.items() if e.in_builtin)

    def grid(self) -> GridSettings:
        return GridSettings(seeds=self.seeds, epochs=self.epochs, max_frames=self.max_frames, protocol=self.protocol,
                            precision="fp32")


def builtin_corpora(root: Path, settings: BuiltinSettings | None = None, *,
                    progress: bool = False) -> tuple[Corpus, Corpus]:
    """The training corpus and the cross-corpus one, synthesized into ``root/<condition>`` unless already there."""
    settings = settings or BuiltinSettings()
    corpora = []
    for condition, seed in zip(settings.conditions, settings.corpus_seeds):
        folder = Path(root) / condition
        if not (folder / "README.txt").is_file():
            synthesize_corpus(folder, speakers=settings.speakers, per_class=settings.per_class, condition=condition,
                              seed=seed, progress=progress)
        corpus = load_corpus("iemocap", folder)
        corpus.name = f"synth-{condition}"
        corpora.append(corpus)
    return corpora[0], corpora[1]


def run_builtin(out: Path, settings: BuiltinSettings | None = None, *, progress: bool = True) -> Path:
    """Synthesize the corpora (kept in ``out/corpora``), calibrate the pair, run each experiment into ``out/<name>``
    (sharing ``out/cells``), and write ``out/report.md``; a re-run resumes."""
    out, settings = Path(out), settings or BuiltinSettings()
    started = time.perf_counter()
    corpus, other = builtin_corpora(out / "corpora", settings, progress=progress)
    calibration = _calibration(out, corpus, other)
    sections, minutes = [], {}
    for name in settings.experiments:
        begun = time.perf_counter()
        done = reproduce(name, corpus, out / name, crosses=[other], settings=settings.grid(), cells_dir=out / "cells",
                         progress=progress)
        minutes[name] = (time.perf_counter() - begun) / 60
        for label, error in done.failed:
            log.error("%s: cell %s failed: %s", name, label, error)
        if done.results is None:  # the next experiment still runs; a re-run retries the failed cells
            failed = "\n".join(f"- {label}: {error}" for label, error in done.failed)
            sections.append(f"## {name}: not reported, {len(done.failed)} cell(s) failed\n\n{failed}")
            continue
        table = (out / name / "table.md").read_text().splitlines()
        sections.append("\n".join("#" + line if line.startswith("#") else line for line in table))
        log.info("%s done after %.1f min", name, minutes[name])
    total = (time.perf_counter() - started) / 60
    report = out / REPORT_MD
    atomic_write_text(report, "\n\n".join([
        "# ser_fast reproduction on the built-in synthetic corpora", _settings_text(settings, calibration, minutes,
                                                                                    total), *sections]))
    return report


def _calibration(out: Path, corpus, other) -> dict:
    path = out / CALIBRATION_JSON
    if path.is_file():
        return json.loads(path.read_text())
    probe = reference_probe(corpus, other)
    atomic_write_text(path, json.dumps(probe, indent=1))
    return probe


def _settings_text(settings: BuiltinSettings, probe: dict, minutes: dict[str, float], total: float) -> str:
    timing = ", ".join(f"{name} {m:.1f} min" for name, m in minutes.items())
    return (
        f"`make reproduce` in {total:.1f} min ({timing}) with {torch.get_num_threads()} threads. Settings: "
        f"`{asdict(settings)}`; float32 training.\n\n"
        f"Cross-corpus calibration (a reference that is none of the systems: a linear probe on utterance-mean and -std "
        f"log-Mel): {probe['within_uar']:.1f} % UAR within `{settings.conditions[0]}` (speaker-grouped CV), "
        f"{probe['cross_uar']:.1f} % on `{settings.conditions[1]}`, chance {probe['chance']:.0f} %.\n\n"
        "Our numbers come from synthetic speech; the papers' columns are theirs on real corpora (IEMOCAP, MSP-IMPROV), "
        "shown for context, never as targets.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("reproduce_out"))
    parser.add_argument("--experiments", nargs="+", choices=tuple(EXPERIMENTS),
                        default=list(BuiltinSettings.experiments))
    parser.add_argument("--seeds", type=int, default=BuiltinSettings.seeds,
                        help="training seeds 0..N-1 (the CIs cover test speakers; seeds show in the std, from 2 on)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1, got {args.seeds}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = BuiltinSettings(experiments=tuple(args.experiments), seeds=args.seeds)
    report = run_builtin(args.out, settings, progress=not args.quiet)
    print(f"report: {report}")
