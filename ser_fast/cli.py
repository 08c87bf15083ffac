"""The ``ser-fast`` command line: ``ser-fast synth OUT`` writes the synthetic corpus;
``ser-fast corpus-info NAME ROOT`` loads a corpus and prints its summary as tables."""

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
