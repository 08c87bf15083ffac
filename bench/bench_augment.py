"""The cost of augmented training: one DSNet epoch on a synthetic corpus with clean precomputed features (what
training without ``--augment`` does) against the same epoch with features computed per batch from augmented audio:
noise + reverb (the setting of the augmented-vs-clean comparison) and the four the CNN models take, in one run, each the
median of ``--rounds`` epochs taken in turns. The simulated rooms' one-time cost is stated apart.

Usage: python bench/bench_augment.py [--rounds 3] [--markdown BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from _report import machine, replace_section

from ser_fast.data import load_corpus, synthesize_corpus
from ser_fast.data.augmentation import AugmentConfig, RoomPool
from ser_fast.data.augmentation.rooms import POOL_SIZE
from ser_fast.data.protocols import loso_folds, neutral_references
from ser_fast.training import TrainConfig, extract_features
from ser_fast.training.cnn_task import FoldData, train_fold

SETTINGS = {"clean (precomputed features)": (), "noise + reverb, per batch": ("noise", "reverb"),
            "noise + reverb + band + speed, per batch": ("noise", "reverb", "band", "speed")}


def epoch_seconds(data: FoldData, classes, kinds: tuple[str, ...], out: Path, frames: int) -> float:
    """One epoch (seed 0: every run draws from the one simulated pool, as a run's folds do)."""
    config = TrainConfig(model="dsnet", epochs=1, max_frames=frames, seed=0,
                         augment=AugmentConfig(kinds=kinds, noise_p=1.0, reverb_p=1.0))
    started = time.perf_counter()
    train_fold(data, config, out, classes=classes)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--speakers", type=int, default=8)
    parser.add_argument("--per-class", type=int, default=12)
    parser.add_argument("--max-frames", type=int, default=300)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        corpus = load_corpus("iemocap", synthesize_corpus(work / "corpus", speakers=args.speakers,
                                                          per_class=args.per_class, seed=0))
        table = extract_features(corpus.utterances, corpus.classes)
        fold = loso_folds(corpus)[0]
        data = FoldData.build(table, fold.train, fold.validation, neutral_references(corpus, seed=0))
        started = time.perf_counter()
        RoomPool.simulated(AugmentConfig().rt60_s, seed=0)
        rooms_s = time.perf_counter() - started
        times = {name: [] for name in SETTINGS}
        for r in range(args.rounds):  # in turns, so a drift of the machine hits every setting alike
            for name, kinds in SETTINGS.items():
                times[name].append(epoch_seconds(data, corpus.classes, kinds, work / f"{r}-{len(kinds)}",
                                                 args.max_frames))
    clean = sorted(times["clean (precomputed features)"])[args.rounds // 2]
    lines = ["| training | s / epoch | × clean |", "|---|---:|---:|"]
    for name, values in times.items():
        median = sorted(values)[args.rounds // 2]
        lines.append(f"| {name} | {median:.1f} | {median / clean:.2f}× |")
    body = ("## Augmented training: the cost per epoch (bench/bench_augment.py)\n\n"
            f"Machine: {machine()}. Command: `python bench/bench_augment.py`, {time.strftime('%Y-%m-%d')}. DSNet, "
            f"one LOSO fold of a synthetic corpus ({args.speakers} speakers × {args.per_class} per class, "
            f"{len(data.train)} training utterances), {args.max_frames} frames, batch 32, torch "
            f"{torch.get_num_threads()} threads, precision auto; an epoch includes validation on clean features. "
            f"Median of {args.rounds} epochs per setting, taken in turns. Noise (0-20 dB) and reverb (rooms of RT60 "
            f"0.2-0.8 s) applied with probability 1, band and speed at their default probability 0.3 (gain, which "
            f"per-utterance normalisation cancels, is Sparse MERIT's only). Simulating the pool of "
            f"{POOL_SIZE} rooms, once per run: {rooms_s:.1f} s.\n\n"
            + "\n".join(lines) + "\n")
    print(body)
    print(json.dumps(times))
    if args.markdown:
        replace_section(args.markdown, "augment", body)


if __name__ == "__main__":
    main()
