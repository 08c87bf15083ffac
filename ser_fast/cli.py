"""The ``ser-fast`` command line: ``synth`` writes the synthetic corpus, ``corpus-info`` prints a
corpus' summary, ``train`` trains Baseline or DSNet per fold, ``evaluate`` scores a run and writes
its report."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path


def _synth(args: argparse.Namespace) -> int:
    from ser_fast.data import synthesize_corpus

    root = synthesize_corpus(args.out, speakers=args.speakers, per_class=args.per_class, condition=args.condition,
                             seed=args.seed, layout=args.layout, progress=not args.quiet)
    print(f"wrote a synthetic corpus ({args.layout} layout, condition {args.condition}) to {root}")
    print(f"load it with: ser_fast.data.load_corpus({args.layout!r}, {str(root)!r})")
    return 0


def _corpus_info(args: argparse.Namespace) -> int:
    from ser_fast.data import load_corpus

    classes = tuple(args.classes.split(",")) if "," in args.classes else args.classes
    corpus = load_corpus(args.name, args.root, classes=classes, check_audio=not args.no_audio_check)
    print(corpus.summary().to_table())
    return 0


def _train(args: argparse.Namespace) -> int:
    from ser_fast.data import load_corpus
    from ser_fast.training import TrainConfig, train_run

    config = TrainConfig(model=args.model, epochs=args.epochs, batch_size=args.batch_size,
                         learning_rate=args.learning_rate, max_frames=args.max_frames, seed=args.seed,
                         precision=args.precision, channels_last=not args.no_channels_last)
    corpus = load_corpus(args.corpus, args.root)
    folds = "all" if args.fold == "all" else [int(k) for k in args.fold.split(",")]
    results = train_run(corpus, args.out, config, protocol=args.protocol, folds=folds, resume=args.resume,
                        progress=not args.quiet)
    for fold, state in results.items():
        print(f"{fold}: best validation UAR {100 * state['best_uar']:.2f} % at epoch {state['best_epoch']}")
    print(f"run written to {args.out}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from ser_fast.data import NoiseBank, load_corpus
    from ser_fast.evaluation import evaluate_run
    from ser_fast.evaluation.report import write_report

    corpus = load_corpus(args.corpus, args.root)
    bank = NoiseBank.from_dir(args.noise_dir) if args.noise_dir else NoiseBank()
    kinds = None
    if args.noise:
        kinds = "all" if args.noise == ["all"] else [k for item in args.noise for k in item.split(",") if k]
    results = evaluate_run(args.run_dir, corpus, noise_kinds=kinds, snrs_db=tuple(args.snr), noise_bank=bank,
                           seed=args.seed, progress=not args.quiet)
    out = args.out or args.run_dir / f"eval-{corpus.name}"
    report = write_report(results, out, title=f"{results.model} trained on {results.train_corpus}, "
                                              f"evaluated on {results.eval_corpus}")
    clean = results.clean
    print(f"{results.model} on {results.eval_corpus}: UAR {100 * clean.uar:.2f} %, WA {100 * clean.wa:.2f} %, "
          f"macro-F1 {100 * clean.macro_f1:.2f} % (clean)")
    print(f"report: {report}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ser-fast", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    commands = parser.add_subparsers(dest="command", required=True)

    synth = commands.add_parser("synth", help="write the synthetic emotional-speech corpus")
    synth.add_argument("out", type=Path, help="output folder (created)")
    synth.add_argument("--speakers", type=int, default=10)
    synth.add_argument("--per-class", type=int, default=24, help="utterances per speaker and class")
    synth.add_argument("--condition", default="studio", help="recording channel: studio, telephone, far-field")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--layout", default="iemocap", choices=("iemocap", "manifest"))
    synth.add_argument("--quiet", action="store_true", help="no progress bar")
    synth.set_defaults(run=_synth)

    info = commands.add_parser("corpus-info", help="load a corpus and print its summary")
    info.add_argument("name", help="iemocap, msp-improv, msp-podcast, ravdess, crema-d, emodb or manifest")
    info.add_argument("root", type=Path, help="the corpus folder (for manifest: the CSV/JSONL file)")
    info.add_argument("--classes", default="4class", help='"4class" or a comma-separated list of labels')
    info.add_argument("--no-audio-check", action="store_true", help="do not open every audio file's header")
    info.set_defaults(run=_corpus_info)

    train = commands.add_parser("train", help="train Baseline or DSNet on a corpus, one model per fold")
    train.add_argument("--model", choices=("baseline", "dsnet"), default="dsnet")
    train.add_argument("--corpus", required=True, help="a load_corpus name (iemocap, ..., manifest)")
    train.add_argument("--root", type=Path, required=True)
    train.add_argument("--protocol", choices=("loso", "session", "split"), default="loso")
    train.add_argument("--fold", default="all", help='"all" or 0-based fold indices, e.g. "0" or "0,3"')
    train.add_argument("--epochs", type=int, default=100)
    train.add_argument("--batch-size", type=int, default=32)
    train.add_argument("--learning-rate", type=float, default=1e-3)
    train.add_argument("--max-frames", type=int, default=600, help="frames per utterance (cut or repeated)")
    train.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                       help="auto: bf16 autocast where the CPU has AMX or AVX512-BF16")
    train.add_argument("--no-channels-last", action="store_true")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", type=Path, required=True, help="the run folder")
    train.add_argument("--resume", action="store_true", help="continue a killed run from its last checkpoint")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.set_defaults(run=_train)

    evaluate = commands.add_parser("evaluate", help="score a run within its corpus, on another, and in noise")
    evaluate.add_argument("run_dir", type=Path, help="a folder written by ser-fast train")
    evaluate.add_argument("--corpus", required=True, help="the corpus to score on (the run's own, or another)")
    evaluate.add_argument("--root", type=Path, required=True)
    evaluate.add_argument("--noise", nargs="*", help='noise types (e.g. white babble engine), or "all"')
    evaluate.add_argument("--snr", type=float, nargs="+", default=[-5.0, 0.0, 5.0, 10.0, 20.0], help="dB")
    evaluate.add_argument("--noise-dir", type=Path, help="a folder of noise recordings (one type per subfolder)")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--out", type=Path, help="report folder (default RUN_DIR/eval-<corpus>)")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bars")
    evaluate.set_defaults(run=_evaluate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return args.run(args)
    except (ValueError, TypeError, FileNotFoundError) as error:
        print(f"ser-fast {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
