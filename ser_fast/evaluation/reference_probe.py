"""A reference for calibrating a cross-corpus pair, which is none of the systems compared.

A cross-corpus comparison shows something only when the second corpus is hard enough to matter but not so hard that
every system falls to chance: a Baseline CNN at 75 % UAR within the studio corpus and 30 % on the far-field one
(chance 25 %) leaves no room for any system's cross-corpus gain to show. :func:`reference_probe` calibrates the pair
once, before any system is compared: a linear probe (``StandardScaler`` + ``LogisticRegression``) on each utterance's
mean and standard deviation over time of its 80 log-Mel bins. It is scored within the training corpus (speaker-grouped
cross-validation) and on the other corpus (fitted on all of the training corpus). A pair is calibrated when the probe
sits clearly above chance on the other corpus and clearly below its own within-corpus score.

The log-Mel bins are the models' front-end (Kaldi fbank, 80 bins, 25 ms / 10 ms at 16 kHz) *without* the per-utterance
mean/variance normalisation of :func:`ser_fast.data.features.extract_features`: after that normalisation every bin has
mean 0 and standard deviation 1 over time, so those statistics would be constant. Nothing is normalised across a corpus
except by the scaler, which is fitted on training data only.

The logistic regression is strongly regularised (``C = 0.01``; scikit-learn's default is 1): with C = 1 the probe leans
on a few bins of small variance, such as the top Mel bin (7.6-8 kHz), which the far-field condition's 16 → 44.1 → 16 kHz
round trip attenuates, and a far-field corpus with reverberation, room boost and ambient noise all switched off scores
36 % instead of 50 %; within-corpus UAR is the same at both (52-54 % on the studio corpus of 20 speakers × 48)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ser_fast.data.corpus import Corpus, Utterance
from ser_fast.data.features import usable_wave
from ser_fast.frontend.constants import N_MELS
from ser_fast.frontend.module import LogMelFrontend
from ser_fast.frontend.recipe import model_features

MAX_FOLDS = 5
CHUNK = 32
REGULARISATION_C = 0.01  # strong L2: see the module docstring
MAX_ITER = 2000


def reference_probe(train_corpus: Corpus, other_corpus: Corpus, *, seed: int = 0, progress: bool = False) -> dict:
    """The calibration of the cross-corpus pair ``train_corpus`` → ``other_corpus`` (see the module docstring).

    Returns, with every score in percent:
        ``within_uar``: UAR (balanced accuracy) on ``train_corpus`` of speaker-grouped cross-validation (each speaker
        in exactly one test fold; ``min(5, speakers)`` folds, speakers assigned to folds in an order drawn from
        ``seed``), the predictions of all folds pooled before scoring;
        ``cross_uar``: UAR on ``other_corpus`` of the probe fitted on all of ``train_corpus``;
        ``chance``: 100 / number of classes;
        ``utterances`` and ``speakers``: ``{"train": n, "other": n}`` (utterances whose audio could not be read are
        left out, logged, and counted in ``failed``, ``{"train": n, "other": n}``);
        ``folds``: the number of cross-validation folds.
    Raises:
        TypeError when either corpus is not a :class:`~ser_fast.data.corpus.Corpus`; ValueError when their classes
        differ, when ``train_corpus`` has fewer than 2 speakers or lacks a class, or when either has no readable
        utterance.
    """
    _check_inputs(train_corpus, other_corpus, seed)
    classes = tuple(train_corpus.classes)
    x_train, y_train, speakers_train, failed_train = utterance_statistics(
        train_corpus.utterances, classes, progress=progress, desc=f"probe features ({train_corpus.name})")
    x_other, y_other, speakers_other, failed_other = utterance_statistics(
        other_corpus.utterances, classes, progress=progress, desc=f"probe features ({other_corpus.name})")
    for corpus, labels in ((train_corpus, y_train), (other_corpus, y_other)):
        if labels.size == 0:
            raise ValueError(f"corpus {corpus.name!r} has no readable utterance in classes {classes}")
    missing = [c for i, c in enumerate(classes) if not np.any(y_train == i)]
    if missing:
        raise ValueError(f"train_corpus {train_corpus.name!r} has no readable utterance of {missing}; the probe needs "
                         f"every class of {classes} to train on")
    names = np.unique(speakers_train)
    if len(names) < 2:
        raise ValueError(f"train_corpus {train_corpus.name!r} has {len(names)} speaker(s) with readable audio; "
                         "speaker-grouped cross-validation needs at least 2")

    num_folds = min(MAX_FOLDS, len(names))
    order = np.random.default_rng(seed).permutation(len(names))
    fold_of_speaker = dict(zip(names[order], np.arange(len(names)) % num_folds))
    fold = np.array([fold_of_speaker[s] for s in speakers_train])
    predicted = np.empty_like(y_train)
    for k in range(num_folds):
        test = fold == k
        # A training fold may lack a class (tiny corpora): the probe then never predicts it, which UAR penalises.
        predicted[test] = _probe(seed).fit(x_train[~test], y_train[~test]).predict(x_train[test])
    cross_predicted = _probe(seed).fit(x_train, y_train).predict(x_other)

    from sklearn.metrics import balanced_accuracy_score

    return {
        "within_uar": 100.0 * float(balanced_accuracy_score(y_train, predicted)),
        "cross_uar": 100.0 * float(balanced_accuracy_score(y_other, cross_predicted)),
        "chance": 100.0 / len(classes),
        "utterances": {"train": int(y_train.size), "other": int(y_other.size)},
        "speakers": {"train": len(names), "other": len(np.unique(speakers_other))},
        "failed": {"train": len(failed_train), "other": len(failed_other)},
        "folds": num_folds,
    }


def utterance_statistics(utterances: Sequence[Utterance], classes: Sequence[str], *, progress: bool = False,
                         desc: str = "probe features"
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """``(x [N, 2 * 80], labels [N], speakers [N], failed)``: per readable utterance with a label in ``classes``, the
    mean then the standard deviation over its frames of each un-normalised log-Mel bin; ``failed`` lists
    ``(path, reason)`` of the utterances left out."""
    classes = tuple(classes)
    frontend = LogMelFrontend(num_mel_bins=N_MELS, normalize=False)
    rows: list[np.ndarray] = []
    labels: list[int] = []
    speakers: list[str] = []
    failed: list[tuple[str, str]] = []
    with tqdm(total=len(utterances), desc=desc, disable=not progress, unit="utt", leave=False) as bar:
        for start in range(0, len(utterances), CHUNK):
            kept, waves = [], []
            for utterance in utterances[start:start + CHUNK]:
                wave = usable_wave(utterance, classes, failed, what="reference probe: skipping")
                if wave is None:
                    continue
                kept.append(utterance)
                waves.append(wave)
            if waves:
                with torch.no_grad():
                    stacked, num_frames = model_features(waves, frontend)
                for i, n in enumerate(num_frames.tolist()):
                    static = stacked[i, 0, :n].double()  # [T, 80]
                    rows.append(torch.cat([static.mean(0), static.std(0, unbiased=False)]).numpy())
                labels.extend(classes.index(u.label) for u in kept)
                speakers.extend(u.speaker for u in kept)
            bar.update(min(CHUNK, len(utterances) - start))
    x = np.stack(rows) if rows else np.zeros((0, 2 * N_MELS))
    return x, np.asarray(labels, dtype=np.int64), np.asarray(speakers, dtype=object), failed


def _probe(seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=REGULARISATION_C, max_iter=MAX_ITER,
                                                              random_state=seed))


def _check_inputs(train_corpus: Corpus, other_corpus: Corpus, seed: int) -> None:
    for name, corpus in (("train_corpus", train_corpus), ("other_corpus", other_corpus)):
        if not isinstance(corpus, Corpus):
            raise TypeError(f"{name} must be a ser_fast.data.Corpus (from load_corpus), got {type(corpus).__name__}")
    if tuple(train_corpus.classes) != tuple(other_corpus.classes):
        raise ValueError(f"the corpora have different classes: train_corpus {train_corpus.name!r} has "
                         f"{tuple(train_corpus.classes)}, other_corpus {other_corpus.name!r} has "
                         f"{tuple(other_corpus.classes)}; load both with the same class set")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed={seed!r}: expected a non-negative int")
