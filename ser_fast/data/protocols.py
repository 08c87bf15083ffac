"""Evaluation protocols: which utterances train, validate and test each model."""

from __future__ import annotations

import hashlib
import itertools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from tabulate import tabulate

from ser_fast.data.corpus import Corpus, Utterance

logger = logging.getLogger(__name__)

VALIDATION_SPLITS = ("development", "dev", "validation", "val", "valid")


@dataclass(frozen=True)
class Fold:
    """One model's data. No speaker is in two of train, validation and test (for speaker folds)."""

    name: str
    train: list[Utterance]
    validation: list[Utterance]
    test: list[Utterance]

    @property
    def speakers(self) -> dict[str, list[str]]:
        return {part: sorted({u.speaker for u in getattr(self, part)}) for part in ("train", "validation", "test")}


def _check_corpus(corpus: Corpus, what: str) -> None:
    if not isinstance(corpus, Corpus):
        raise TypeError(f"{what}: expected a ser_fast.data.Corpus, got {type(corpus).__name__}")
    if len(corpus) == 0:
        raise ValueError(f"{what}: the corpus {corpus.name!r} has no utterances")


def loso_folds(corpus: Corpus) -> list[Fold]:
    """Leave one speaker out, one fold per speaker: that speaker tests, the other speaker(s) of the same session
    validate, every other session trains (DSNet's protocol: 10 folds on IEMOCAP, 12 on MSP-IMPROV). A corpus without
    sessions (or with one speaker per session) validates on the next speaker in sorted order instead."""
    _check_corpus(corpus, "loso_folds")
    speakers = corpus.speakers
    if len(speakers) < 3:
        raise ValueError(f"loso_folds: {corpus.name!r} has {len(speakers)} speakers; train, validation and test "
                         "need at least 3")
    session_of = {u.speaker: u.session for u in corpus}
    by_session: dict[str, set[str]] = {}
    for speaker, session in session_of.items():
        by_session.setdefault(session, set()).add(speaker)
    paired = all(session for session in by_session) and all(len(s) >= 2 for s in by_session.values()) \
        and len(by_session) >= 2
    folds = []
    for i, test_speaker in enumerate(speakers):
        if paired:
            validation = by_session[session_of[test_speaker]] - {test_speaker}
        else:
            validation = {speakers[(i + 1) % len(speakers)]}
        folds.append(_fold(f"test-{test_speaker}", corpus, "speaker", validation, test_speaker))
    return folds


def session_folds(corpus: Corpus) -> list[Fold]:
    """One fold per session: it is the test set, the next session (cyclically) validates, the rest train."""
    _check_corpus(corpus, "session_folds")
    sessions = corpus.sessions
    if "" in sessions or len(sessions) < 3:
        raise ValueError(f"session_folds: {corpus.name!r} needs at least 3 named sessions, has {sessions}")
    return [_fold(f"test-{test}", corpus, "session", {sessions[(i + 1) % len(sessions)]}, test)
            for i, test in enumerate(sessions)]


def halves_folds(corpus: Corpus) -> list[Fold]:
    """Two speaker-disjoint halves, each the other's test set: every utterance is tested once by a model that trained
    on half the speakers, so a short grid still pools a whole corpus of test utterances (the reproduction harness's
    protocol for the built-in experiment). The halves take sessions in the order A B B A A B ... (speakers, for a corpus
    without named sessions or with fewer than 4), so that both hold both genders of a corpus that lists its speakers
    F, M, F, M; the training half's last session (speaker) validates."""
    _check_corpus(corpus, "halves_folds")
    sessions = corpus.sessions
    key, units = ("session", sessions) if "" not in sessions and len(sessions) >= 4 else ("speaker", corpus.speakers)
    if len(units) < 4:
        raise ValueError(f"halves_folds: {corpus.name!r} has {len(units)} {key}s; two halves that each train, "
                         "validate and test need at least 4")
    side = [(i + i // 2) % 2 for i in range(len(units))]
    halves = tuple([unit for unit, s in zip(units, side) if s == half] for half in (0, 1))
    return [_fold(f"half-{index + 1}", corpus, key, {other[-1]}, set(test))
            for index, (test, other) in enumerate((halves, halves[::-1]))]


def _fold(name: str, corpus: Corpus, key: str, validation: set[str], test: str | set[str]) -> Fold:
    """Test: the utterances whose ``key`` (speaker or session) is ``test`` (or in it); validation: those whose
    ``key`` is in ``validation``; training: all the others."""
    tested = test if isinstance(test, set) else {test}
    parts: dict[str, list[Utterance]] = {"train": [], "validation": [], "test": []}
    for u in corpus:
        value = getattr(u, key)
        parts["test" if value in tested else "validation" if value in validation else "train"].append(u)
    return Fold(name, **parts)


def corpus_split(corpus: Corpus, *, test: str = "Test1") -> Fold:
    """The corpus' own split (MSP-Podcast's): "Train" trains, "Development" validates, ``test`` (e.g.
    "Test1" or "Test2") tests. Split names are matched without regard to case."""
    _check_corpus(corpus, "corpus_split")
    splits = {u.split for u in corpus}
    if splits == {""}:
        raise ValueError(f"corpus_split: {corpus.name!r} defines no splits; use loso_folds or session_folds")
    lowered = {s.lower(): s for s in splits if s}
    if test.lower() not in lowered:
        raise ValueError(f"corpus_split: no test split {test!r} in {corpus.name!r}; it has {sorted(lowered.values())}")
    validation = next((lowered[name] for name in VALIDATION_SPLITS if name in lowered), None)
    if "train" not in lowered or validation is None:
        raise ValueError(f"corpus_split: {corpus.name!r} needs a train and a development split, has "
                         f"{sorted(lowered.values())}")
    pick = lambda name: [u for u in corpus if u.split == name]  # noqa: E731
    return Fold(f"{corpus.name}-{lowered[test.lower()]}", pick(lowered["train"]), pick(validation),
                pick(lowered[test.lower()]))


def emobox_folds(corpus: Corpus) -> list[Fold]:
    """EmoBox's folds of a corpus loaded with ``load_corpus("emobox", ...)``: fold K trains on the utterances its
    train file lists and tests on those of its test file. Where the dataset gives a validation file (MELD,
    MSP-Podcast), it validates; otherwise every ``VALIDATION_EVERY``-th training utterance of each class, in the order
    of a hash of its EmoBox key (the same utterances in every run, whatever the corpus order), validates and does not
    train: EmoBox defines no validation set, and best-epoch selection and calibration need one."""
    _check_corpus(corpus, "emobox_folds")
    memberships = [u.extra.get("emobox_folds") for u in corpus]
    if not all(isinstance(m, Mapping) for m in memberships):
        raise ValueError(f"emobox_folds: {corpus.name!r} was not loaded from EmoBox fold files; load it with "
                         "load_corpus('emobox', DATASET_DIR, audio_root=DIR)")
    folds = []
    for fold in sorted({int(k) for m in memberships for k in m}):
        parts: dict[str, list[Utterance]] = {"train": [], "validation": [], "test": []}
        for u, membership in zip(corpus, memberships):
            part = membership.get(fold, membership.get(str(fold)))
            if part is not None:
                parts[part].append(u)
        if not parts["test"] or not parts["train"]:
            raise ValueError(f"emobox_folds: fold {fold} of {corpus.name!r} has {len(parts['train'])} training and "
                             f"{len(parts['test'])} test utterances; both are needed")
        if not parts["validation"]:
            parts["train"], parts["validation"] = _hold_out(parts["train"])
        folds.append(Fold(f"fold-{fold}", **parts))
    return folds


VALIDATION_EVERY = 10


def _hold_out(train: list[Utterance]) -> tuple[list[Utterance], list[Utterance]]:
    """``(train, validation)``: every ``VALIDATION_EVERY``-th utterance per class, by the hash of its EmoBox key."""
    def digest(u: Utterance) -> str:
        return hashlib.sha1(str(u.extra.get("emobox_key", u.path)).encode()).hexdigest()

    held = set()
    for label in sorted({u.label for u in train}):
        ranked = sorted((u for u in train if u.label == label), key=digest)
        chosen = ranked[VALIDATION_EVERY - 1::VALIDATION_EVERY]
        if not chosen and len(ranked) > 1:  # a class with one training utterance keeps it for training
            chosen = ranked[:1]
        held.update(id(u) for u in chosen)
    return [u for u in train if id(u) not in held], [u for u in train if id(u) in held]


def folds_table(folds: Sequence[Fold]) -> str:
    """The folds' sizes as a table: utterances per part and the test speakers."""
    rows = [(f.name, len(f.train), len(f.validation), len(f.test), ", ".join(f.speakers["test"])) for f in folds]
    return tabulate(rows, headers=["fold", "train", "validation", "test", "test speakers"], tablefmt="github")


@dataclass(frozen=True)
class CrossCorpusPair:
    """Train (all folds) on ``source``, evaluate on the whole of ``target``."""

    source: Corpus
    target: Corpus

    @property
    def name(self) -> str:
        return f"{self.source.name}->{self.target.name}"


def cross_corpus_pairs(corpora: Mapping[str, Corpus] | Sequence[Corpus]) -> list[CrossCorpusPair]:
    """Every ordered pair of distinct corpora, which must share their class set."""
    items = list(corpora.values()) if isinstance(corpora, Mapping) else list(corpora)
    if len(items) < 2:
        raise ValueError(f"cross_corpus_pairs needs at least two corpora, got {len(items)}")
    for corpus in items:
        _check_corpus(corpus, "cross_corpus_pairs")
    if len({c.classes for c in items}) != 1:
        raise ValueError("cross_corpus_pairs: the corpora have different class sets: "
                         + ", ".join(f"{c.name}={c.classes}" for c in items))
    return [CrossCorpusPair(s, t) for s, t in itertools.permutations(items, 2)]


@dataclass(frozen=True)
class NeutralReferences:
    """One neutral utterance per speaker (DSNet's h_n), chosen once and never a training sample."""

    by_speaker: dict[str, Utterance]
    missing: list[str] = field(default_factory=list)

    def exclude(self, utterances: Sequence[Utterance]) -> list[Utterance]:
        """``utterances`` without the references."""
        chosen = {u.path for u in self.by_speaker.values()}
        return [u for u in utterances if u.path not in chosen]


def neutral_references(corpus: Corpus, seed: int = 0, *, neutral: str = "neutral") -> NeutralReferences:
    """Pick, per speaker, one neutral utterance at random (seeded, independent of corpus order).
    Speakers with no neutral utterance are listed in ``missing`` and logged."""
    _check_corpus(corpus, "neutral_references")
    if neutral not in corpus.classes:
        raise ValueError(f"neutral_references: {neutral!r} is not a class of {corpus.name!r} ({corpus.classes})")
    by_speaker: dict[str, Utterance] = {}
    missing = []
    for index, speaker in enumerate(corpus.speakers):
        candidates = sorted((u for u in corpus if u.speaker == speaker and u.label == neutral), key=lambda u: str(u.path))
        if not candidates:
            missing.append(speaker)
            continue
        rng = np.random.default_rng([seed, index])
        by_speaker[speaker] = candidates[int(rng.integers(len(candidates)))]
    if missing:
        logger.warning("neutral_references: no %s utterance for speakers %s", neutral, missing)
    return NeutralReferences(by_speaker, missing)
