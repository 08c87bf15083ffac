"""Fold rules: no speaker in two of train/validation/test; IEMOCAP's 10 and MSP-IMPROV's 12 folds
with the session partner validating; session folds; the corpus' own split; neutral references."""

from __future__ import annotations

from pathlib import Path

import pytest

from ser_fast.data.corpus import CLASS_SETS, Corpus, Utterance
from ser_fast.data.protocols import (
    corpus_split,
    cross_corpus_pairs,
    halves_folds,
    loso_folds,
    neutral_references,
    session_folds,
)

CLASSES = CLASS_SETS["4class"]


def paired_corpus(name: str, sessions: int, per_speaker: int = 8, splits: bool = False) -> Corpus:
    utterances = []
    for s in range(1, sessions + 1):
        for gender in "FM":
            speaker = f"{name}-S{s:02d}{gender}"
            for i in range(per_speaker):
                split = "" if not splits else ("Train" if s <= sessions - 2 else "Development" if s == sessions - 1
                                               else "Test1")
                utterances.append(Utterance(Path(f"/{name}/{speaker}_{i:03d}.wav"), CLASSES[i % 4], speaker, name,
                                            session=f"S{s:02d}", gender=gender, split=split))
    return Corpus(name, Path(f"/{name}"), CLASSES, utterances)


def assert_speaker_disjoint(fold):
    parts = fold.speakers
    assert not set(parts["train"]) & set(parts["validation"])
    assert not set(parts["train"]) & set(parts["test"])
    assert not set(parts["validation"]) & set(parts["test"])


@pytest.mark.parametrize("sessions, folds", [pytest.param(5, 10, id="iemocap-10-folds"),
                                             pytest.param(6, 12, id="msp-improv-12-folds")])
def test_loso_session_partner_validates(sessions, folds):
    corpus = paired_corpus("c", sessions)
    result = loso_folds(corpus)
    assert len(result) == folds
    for fold in result:
        assert_speaker_disjoint(fold)
        (test_speaker,) = fold.speakers["test"]
        (validation_speaker,) = fold.speakers["validation"]
        assert test_speaker[:-1] == validation_speaker[:-1] and test_speaker != validation_speaker
        assert len({u.session for u in fold.train}) == sessions - 1
        assert len(fold.train) + len(fold.validation) + len(fold.test) == len(corpus)


def test_loso_without_sessions_validates_on_another_speaker():
    corpus = paired_corpus("c", 2)
    corpus = corpus.subset([Utterance(u.path, u.label, u.speaker, u.corpus) for u in corpus])
    folds = loso_folds(corpus)
    assert len(folds) == 4
    for fold in folds:
        assert_speaker_disjoint(fold)
        assert len(fold.speakers["validation"]) == 1 and len(fold.speakers["train"]) == 2


def test_session_folds_rotate_validation():
    folds = session_folds(paired_corpus("c", 5))
    assert [f.name for f in folds] == [f"test-S0{i}" for i in range(1, 6)]
    for fold in folds:
        assert_speaker_disjoint(fold)
        assert len({u.session for u in fold.validation}) == 1


def test_corpus_split_uses_the_corpus_splits():
    fold = corpus_split(paired_corpus("podcast", 5, splits=True))
    assert {u.split for u in fold.train} == {"Train"}
    assert {u.split for u in fold.validation} == {"Development"}
    assert {u.split for u in fold.test} == {"Test1"}
    with pytest.raises(ValueError, match="no test split 'Test2'"):
        corpus_split(paired_corpus("podcast", 5, splits=True), test="Test2")
    with pytest.raises(ValueError, match="defines no splits"):
        corpus_split(paired_corpus("c", 5))


def test_cross_corpus_pairs_are_every_ordered_pair():
    corpora = {"a": paired_corpus("a", 3), "b": paired_corpus("b", 3), "c": paired_corpus("c", 3)}
    names = [p.name for p in cross_corpus_pairs(corpora)]
    assert sorted(names) == sorted(["a->b", "a->c", "b->a", "b->c", "c->a", "c->b"])
    other = paired_corpus("d", 3)
    other.classes = ("neutral", "angry")
    with pytest.raises(ValueError, match="different class sets"):
        cross_corpus_pairs([corpora["a"], other])


def test_neutral_references_are_fixed_neutral_and_excluded():
    corpus = paired_corpus("c", 5)
    refs = neutral_references(corpus, seed=3)
    assert sorted(refs.by_speaker) == corpus.speakers and not refs.missing
    assert all(u.label == "neutral" and u.speaker == s for s, u in refs.by_speaker.items())
    assert refs.by_speaker == neutral_references(corpus, seed=3).by_speaker
    shuffled = corpus.subset(list(reversed(corpus.utterances)))
    assert refs.by_speaker == neutral_references(shuffled, seed=3).by_speaker
    assert any(refs.by_speaker[s] != u for s, u in neutral_references(corpus, seed=4).by_speaker.items())
    kept = refs.exclude(corpus.utterances)
    assert len(kept) == len(corpus) - 10 and not {u.path for u in kept} & {u.path for u in refs.by_speaker.values()}


def test_speakers_without_neutral_are_reported():
    corpus = paired_corpus("c", 3)
    corpus = corpus.subset([u for u in corpus if not (u.speaker.endswith("S01F") and u.label == "neutral")])
    refs = neutral_references(corpus)
    assert refs.missing == ["c-S01F"]


@pytest.mark.parametrize("sessions", [4, 5, 10], ids=lambda n: f"{n}-sessions")
def test_halves_test_every_utterance_once_and_hold_both_genders(sessions):
    corpus = paired_corpus("halves", sessions, per_speaker=3)
    folds = halves_folds(corpus)
    assert [f.name for f in folds] == ["half-1", "half-2"]
    tested = [u.path for f in folds for u in f.test]
    assert sorted(tested) == sorted(u.path for u in corpus)
    for fold in folds:
        assert_speaker_disjoint(fold)
        assert fold.train and fold.validation
        assert {u.gender for u in fold.test} == {"F", "M"}
        assert len({u.session for u in fold.validation}) == 1
    assert abs(len(folds[0].test) - len(folds[1].test)) <= 2 * 3


def test_halves_without_sessions_split_speakers_and_mix_genders():
    speakers = [(f"spk{i}", "FM"[i % 2]) for i in range(7)]
    corpus = Corpus("flat", Path("/flat"), CLASSES, [
        Utterance(Path(f"/flat/{s}_{k}.wav"), CLASSES[k % 4], s, "flat", gender=g) for s, g in speakers
        for k in range(2)])
    folds = halves_folds(corpus)
    for fold in folds:
        assert_speaker_disjoint(fold)
        assert len(fold.speakers["validation"]) == 1 and {u.gender for u in fold.test} == {"F", "M"}
    assert sorted(u.path for f in folds for u in f.test) == sorted(u.path for u in corpus)


def test_halves_need_four_speakers():
    corpus = Corpus("small", Path("/s"), CLASSES, [
        Utterance(Path(f"/s/{s}_{k}.wav"), CLASSES[k], s, "small") for s in ("a", "b", "c") for k in range(4)])
    with pytest.raises(ValueError, match="has 3 speakers; two halves that each train, validate and test need at least"):
        halves_folds(corpus)


@pytest.mark.parametrize("fn", [loso_folds, session_folds, halves_folds, neutral_references],
                         ids=lambda f: f.__name__)
def test_bad_corpora_are_explained(fn):
    with pytest.raises(TypeError, match="expected a ser_fast.data.Corpus"):
        fn([1, 2, 3])
    with pytest.raises(ValueError, match="has no utterances"):
        fn(Corpus("empty", Path("/x"), CLASSES, []))
