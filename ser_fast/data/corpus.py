"""Corpora as ser_fast sees them: labelled utterances with their speaker and session, and a
summary of what was loaded and what was skipped (never silently lost)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from tabulate import tabulate

# "4class" is the field's usual set (IEMOCAP's, with excited merged into happy); the others are each corpus' own
# labels as published, in ser_fast's names (tests check each against its loader).
CLASS_SETS: dict[str, tuple[str, ...]] = {
    "4class": ("neutral", "happy", "sad", "angry"),
    "ravdess8": ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgusted", "surprised"),
    "crema-d6": ("neutral", "happy", "sad", "angry", "fearful", "disgusted"),
    "emodb7": ("neutral", "happy", "sad", "angry", "bored", "disgusted", "fearful"),
    "msp-podcast8": ("neutral", "happy", "sad", "angry", "surprised", "fearful", "disgusted", "contemptuous"),
    # The eight, plus "other" and "no-agreement" (X: the annotators agreed on no class), as the release lists them.
    "msp-podcast10": ("neutral", "happy", "sad", "angry", "surprised", "fearful", "disgusted", "contemptuous", "other",
                      "no-agreement"),
}


def class_names(classes: str | Sequence[str]) -> tuple[str, ...]:
    """The class set by name (a key of ``CLASS_SETS``: "4class", "ravdess8", "crema-d6", "emodb7", "msp-podcast8",
    "msp-podcast10") or given explicitly as a sequence of label names."""
    if isinstance(classes, str):
        if classes not in CLASS_SETS:
            raise ValueError(f"unknown class set {classes!r}; expected one of {sorted(CLASS_SETS)} or a list of labels")
        return CLASS_SETS[classes]
    names = tuple(classes)
    if not names or not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
        raise ValueError(f"classes must be distinct non-empty label names, got {classes!r}")
    return names


@dataclass(frozen=True)
class Utterance:
    """One labelled recording. ``speaker`` is unique across the corpus (e.g. "Ses01M");
    ``session`` groups speakers recorded together; ``split`` is the corpus' own split, if any."""

    path: Path
    label: str
    speaker: str
    corpus: str
    session: str = ""
    gender: str = ""
    split: str = ""
    extra: dict = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Skipped:
    """Something the loader did not keep: an annotation with a label outside the chosen classes, a
    missing or unreadable audio file, a line it could not parse."""

    item: str
    reason: str


@dataclass
class Corpus:
    """A loaded corpus: ``utterances`` (in a stable order) and ``skipped`` (with reasons)."""

    name: str
    root: Path
    classes: tuple[str, ...]
    utterances: list[Utterance]
    skipped: list[Skipped] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.utterances)

    def __iter__(self) -> Iterator[Utterance]:
        return iter(self.utterances)

    def __getitem__(self, index: int) -> Utterance:
        return self.utterances[index]

    @property
    def speakers(self) -> list[str]:
        return sorted({u.speaker for u in self.utterances})

    @property
    def sessions(self) -> list[str]:
        return sorted({u.session for u in self.utterances})

    def label_index(self, label: str) -> int:
        return self.classes.index(label)

    def subset(self, utterances: Sequence[Utterance], name: str | None = None) -> Corpus:
        return replace(self, name=name or self.name, utterances=list(utterances), skipped=[])

    def summary(self) -> CorpusSummary:
        return CorpusSummary(self.name, self.root, self.classes, per_class=Counter(u.label for u in self),
                             per_speaker=Counter(u.speaker for u in self), per_session=Counter(u.session for u in self),
                             per_split=Counter(u.split for u in self if u.split),
                             skipped=Counter(s.reason for s in self.skipped))


@dataclass(frozen=True)
class CorpusSummary:
    """Counts per class, speaker, session and split, and the skipped items counted by reason."""

    name: str
    root: Path
    classes: tuple[str, ...]
    per_class: Counter
    per_speaker: Counter
    per_session: Counter
    per_split: Counter
    skipped: Counter

    @property
    def total(self) -> int:
        return sum(self.per_class.values())

    def to_table(self) -> str:
        """The summary as plain-text tables (what ``ser-fast corpus-info`` prints)."""
        parts = [f"{self.name} at {self.root}: {self.total} utterances, {len(self.per_speaker)} speakers, "
                 f"{len([s for s in self.per_session if s])} sessions"]
        parts.append(tabulate([(c, self.per_class.get(c, 0)) for c in self.classes], headers=["class", "utterances"]))
        parts.append(tabulate(sorted(self.per_speaker.items()), headers=["speaker", "utterances"]))
        if any(self.per_session):
            parts.append(tabulate(sorted(self.per_session.items()), headers=["session", "utterances"]))
        if self.per_split:
            parts.append(tabulate(sorted(self.per_split.items()), headers=["split", "utterances"]))
        skipped = sorted(self.skipped.items(), key=lambda kv: -kv[1])
        parts.append(tabulate(skipped, headers=["skipped because", "items"]) if skipped else "skipped: nothing")
        return "\n\n".join(parts)
