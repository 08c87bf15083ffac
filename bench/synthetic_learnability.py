"""How learnable is the synthetic corpus? A linear classifier on utterance-level log-Mel statistics.

The corpus should be learnable but not trivial: a logistic regression on the utterance-mean 80-bin
log-Mel (the whole spectrum averaged over time) should land clearly above chance (25 % UAR) but well
below what a model of the time-frequency picture can reach. The second feature set adds the time
variation (per-bin std and mean |delta| over frames), a crude look at the temporal cues (F0 contours,
rate, energy dynamics) that the mean spectrum averages away; its gain over the mean is the
information that only the dynamics carry.

Protocol: leave one speaker out (or one session out), StandardScaler + LogisticRegression fitted on
the training speakers; UAR (balanced accuracy) per fold and over the predictions of all folds
concatenated.

Usage: python bench/synthetic_learnability.py [--root CORPUS] [--condition studio] [--seed 0]
                                              [--speakers 10] [--per-class 24] [--folds speaker|session]
Without --root the corpus is synthesised into a temporary folder first (about 10 s for the default).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import ser_fast
from ser_fast.data import load_audio, load_corpus
from ser_fast.data.synthetic import CONDITIONS, synthesize_corpus

BATCH = 64
INT16_SCALE = 32768.0  # Kaldi's features are computed on int16-range samples


def utterance_features(waveforms: list[np.ndarray]) -> dict[str, np.ndarray]:
    """``{"mean": [N, 80], "mean+dynamics": [N, 240]}``: mean log-Mel, and with it the per-bin std
    and mean |frame-to-frame difference|."""
    means, dynamics = [], []
    for start in range(0, len(waveforms), BATCH):
        batch = [w * INT16_SCALE for w in waveforms[start:start + BATCH]]
        feats, num_frames = ser_fast.fbank(batch)
        for item, frames in zip(feats, num_frames.tolist()):
            x = item[:frames].double()
            means.append(x.mean(0))
            dynamics.append(torch.cat([x.std(0), (x[1:] - x[:-1]).abs().mean(0)]))
    mean = torch.stack(means).numpy()
    return {"mean": mean, "mean+dynamics": np.hstack([mean, torch.stack(dynamics).numpy()])}


def cross_validate(features: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> tuple[dict[str, float], float]:
    """UAR per held-out group, and over all folds' predictions concatenated."""
    predictions = np.empty_like(labels)
    per_fold = {}
    for group in np.unique(groups):
        test = groups == group
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=1.0))
        model.fit(features[~test], labels[~test])
        predictions[test] = model.predict(features[test])
        per_fold[str(group)] = balanced_accuracy_score(labels[test], predictions[test])
    return per_fold, balanced_accuracy_score(labels, predictions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, help="an existing synthetic corpus (IEMOCAP layout)")
    parser.add_argument("--condition", default="studio", choices=CONDITIONS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--speakers", type=int, default=10)
    parser.add_argument("--per-class", type=int, default=24)
    parser.add_argument("--folds", default="speaker", choices=("speaker", "session"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        root = args.root
        if root is None:
            start = time.perf_counter()
            root = synthesize_corpus(Path(scratch) / "corpus", speakers=args.speakers, per_class=args.per_class,
                                     condition=args.condition, seed=args.seed)
            print(f"synthesised {args.speakers} speakers x 4 classes x {args.per_class} ({args.condition}, "
                  f"seed {args.seed}) in {time.perf_counter() - start:.1f} s")
        corpus = load_corpus("iemocap", root)
        waveforms = [load_audio(u.path) for u in corpus]
    labels = np.array([u.label for u in corpus])
    groups = np.array([u.speaker if args.folds == "speaker" else u.session for u in corpus])
    print(f"{len(corpus)} utterances, {len(set(groups))} folds (leave one {args.folds} out); chance UAR 25.0 %")

    for name, features in utterance_features(waveforms).items():
        per_fold, overall = cross_validate(features, labels, groups)
        folds = "  ".join(f"{group} {100 * uar:.1f}" for group, uar in per_fold.items())
        print(f"\nlog-Mel {name} ({features.shape[1]} dims), logistic regression, UAR % per fold:\n  {folds}")
        print(f"  overall {100 * overall:.1f} %  (mean of folds {100 * np.mean(list(per_fold.values())):.1f} %)")


if __name__ == "__main__":
    main()
