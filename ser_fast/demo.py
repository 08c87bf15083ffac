"""``python -m ser_fast.demo`` (``make demo``): the main job on the built-in synthetic corpus.

Synthesizes two corpora that differ in recording condition (a studio one and a far-field one, with
other speakers), trains Baseline, DSNet and EDRL-MEA on the first with leave-one-speaker-out folds and a short
schedule, evaluates them within the corpus (clean and on a noise grid) and across corpora, and
writes ``demo_out/report.md`` with the tables and plots. Then Sparse MERIT (built-in small SSL
backbone) is trained on one fold of the first corpus with noisy pairs made on the fly, and its
emotion recognition, enhancement and expert usage in seen and unseen noise join the report.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ser_fast.data import NoiseBank, load_corpus, synthesize_corpus
from ser_fast.evaluation import score_run, write_report
from ser_fast.evaluation.report import merit_sections, uncertainty_section, unique_labels
from ser_fast.models.merit import MeritConfig
from ser_fast.runs.config import MeritTrainConfig, TrainConfig
from ser_fast.runs.registry import FEATURES, kind_names, model_kind
from ser_fast.training import extract_features, train_run

log = logging.getLogger("ser_fast.demo")

# The models on log-Mel features share one schedule; Sparse MERIT has its own (below).
MODELS = tuple(name for name in kind_names() if model_kind(name).input == FEATURES)


@dataclass(frozen=True)
class DemoSettings:
    """A short schedule: 16 to 26 minutes on a 2-core CPU for the three CNN models and Sparse MERIT (measured
    2026-11-22 and 2026-12-05; README); the paper's recipe is 100 epochs of 600 frames per fold (``ser-fast train``)."""

    speakers: int = 10
    per_class: int = 12
    folds: tuple[int, ...] = (0, 3, 6)
    epochs: int = 10
    max_frames: int = 150
    noise_kinds: tuple[str, ...] = ("white", "babble", "engine")
    snrs_db: tuple[float, ...] = (-5.0, 0.0, 5.0, 10.0, 20.0)
    seed: int = 0
    conditions: tuple[str, str] = field(default=("studio", "far-field"))
    edrl_components: int = 16
    merit_folds: tuple[int, ...] = (0,)
    merit_epochs: int = 6
    merit_seconds: float = 1.5


def run_demo(out_dir: Path, settings: DemoSettings = DemoSettings(), *, progress: bool = True) -> Path:
    out_dir = Path(out_dir)
    started = time.perf_counter()
    corpora = []
    for index, condition in enumerate(settings.conditions):
        root = out_dir / "corpora" / condition
        if not (root / "README.txt").is_file():
            synthesize_corpus(root, speakers=settings.speakers, per_class=settings.per_class, condition=condition,
                              seed=settings.seed + 101 * index, progress=progress)
        corpora.append(load_corpus("iemocap", root))
    train_corpus, other_corpus = corpora
    train_corpus.name, other_corpus.name = f"synth-{settings.conditions[0]}", f"synth-{settings.conditions[1]}"
    log.info("corpora ready after %.0f s", time.perf_counter() - started)
    table = extract_features(train_corpus.utterances, train_corpus.classes, progress=progress,
                             desc="features")
    results = []
    bank, feature_cache = NoiseBank(), {}  # the models share their test folds: their features are computed once
    for model in MODELS:
        # n_components is EDRL-MEA's MB-PLS size; the other models ignore it.
        config = TrainConfig(model=model, epochs=settings.epochs, max_frames=settings.max_frames, seed=settings.seed,
                             n_components=settings.edrl_components)
        run_dir = out_dir / "runs" / model
        train_run(train_corpus, run_dir, config, folds=list(settings.folds), table=table, resume=True,
                  progress=progress)
        results.append(score_run(run_dir, train_corpus, noise=list(settings.noise_kinds), snrs_db=settings.snrs_db,
                                noise_bank=bank, seed=settings.seed, progress=progress, feature_cache=feature_cache))
        results.append(score_run(run_dir, other_corpus, seed=settings.seed, progress=progress,
                                feature_cache=feature_cache))
        log.info("%s trained and evaluated after %.0f s", model, time.perf_counter() - started)
    report = write_report(results, out_dir, title="ser_fast demo: Baseline, DSNet and EDRL-MEA on synthetic speech")
    # The CIs, and which differences the demo can and cannot see, on the console too.
    log.info("How sure:\n%s", uncertainty_section(unique_labels(results), results))
    merit_markdown = _merit_section(train_corpus, out_dir, settings, progress)
    log.info("Sparse MERIT trained and evaluated after %.0f s", time.perf_counter() - started)
    minutes = (time.perf_counter() - started) / 60
    with open(report, "a") as f:
        f.write(f"\n## How this report was made\n\n`make demo` (`python -m ser_fast.demo`) in {minutes:.1f} min "
                f"with {torch.get_num_threads()} threads. Settings: `{asdict(settings)}`. Training: "
                f"{settings.epochs} epochs, {settings.max_frames} frames per utterance, leave-one-speaker-out folds "
                f"{list(settings.folds)} of {settings.speakers}; the paper's recipe is 100 epochs of 600 frames on "
                "every fold.\n")
        f.write(merit_markdown)
    return report


def _merit_section(corpus, out_dir: Path, settings: DemoSettings, progress: bool) -> str:
    """Sparse MERIT on the training corpus: trained on noisy pairs, scored clean and in noise."""
    network = MeritConfig(design="sparse", dropout=0.1)
    config = MeritTrainConfig(network=network, epochs=settings.merit_epochs, batch_size=8, accumulate=1,
                              max_seconds=settings.merit_seconds, seed=settings.seed)
    run_dir = out_dir / "runs" / "merit"
    train_run(corpus, run_dir, config, folds=list(settings.merit_folds), resume=True, progress=progress)
    results = score_run(run_dir, corpus, seed=settings.seed, progress=progress)
    results.write_json(out_dir / "merit_results.json")
    body = merit_sections([results], ["Sparse MERIT"], out_dir)
    return ("\n## Sparse MERIT: joint enhancement and emotion recognition\n\n"
            f"Built-in small WavLM transformer on log-Mel, trained from scratch with the task, "
            f"{settings.merit_epochs} epochs of {settings.merit_seconds:g} s crops mixed with seen noise at 5 dB, "
            f"leave-one-speaker-out folds {list(settings.merit_folds)}; 3 experts, top-1, a router per task. "
            "Pretrained SSL weights are what real use needs (README).\n\n" + body + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("demo_out"))
    parser.add_argument("--epochs", type=int, default=DemoSettings.epochs)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    report = run_demo(args.out, DemoSettings(epochs=args.epochs), progress=not args.quiet)
    print(f"report: {report}")


if __name__ == "__main__":
    main()
