"""What :meth:`~ser_fast.inference.recognizer.EmotionRecognizer.predict` gives: one :class:`Prediction` per input, with
its timeline of windows (a long input) or its speech segments (``segments="vad"`` or given), and the duration-weighted
aggregation every level shares."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class WindowPrediction:
    """One window of a long input: where it lies (seconds from the start), what it was classified as and, for a model
    with a dimensional head, its arousal, valence and dominance."""

    start_s: float
    end_s: float
    label: str | None
    probabilities: dict[str, float]
    dimensions: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        shown = {"start_s": float(self.start_s), "end_s": float(self.end_s), "label": self.label,
                 "probabilities": {name: float(p) for name, p in self.probabilities.items()}}
        return {**shown, **({"dimensions": dict(self.dimensions)} if self.dimensions else {})}


@dataclass(frozen=True)
class SegmentPrediction:
    """One speech segment of an input (``index``: its place in start order): where it lies in seconds, the speaker a
    diarizer gave it, its label and probabilities (its windows' duration-weighted mean), its windows when several;
    with an ``error`` (a segment past the audio's end, negative, overlapping) no label."""

    index: int
    start_s: float
    end_s: float
    speaker: str | None
    label: str | None
    probabilities: dict[str, float]
    timeline: tuple[WindowPrediction, ...] = ()
    error: str | None = None
    dimensions: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Prediction:
    """What :meth:`EmotionRecognizer.predict` gives per input. ``source``: the path as given, or ``"<array k>"`` for the
    k-th array or tensor (0-based). ``label`` and ``probabilities`` (class → probability) aggregate the windows (or the
    segments, weighted by duration); None / {} with an ``error`` (why there is no label). ``duration_s``: None when the
    input could not be read. ``embedding``: with ``return_embedding=True``, the utterance vector (mean over windows).
    ``timeline``: the windows, when there are several (no segments). ``warning``: labelled, but damaged (a truncated
    file, labelled from what it holds). ``segments``: with segmentation, each segment's prediction, and
    ``speech_shares``: each label's share of the classified speech time. ``dimensions``: for a model with a
    dimensional head, ``{"arousal", "valence", "dominance"}`` on its training corpus' scale (the duration-weighted
    mean of the windows', as the probabilities); a dimensional model has no label and no probabilities."""

    source: str
    label: str | None
    probabilities: dict[str, float]
    duration_s: float | None
    embedding: np.ndarray | None = field(default=None, compare=False)  # arrays have no single truth value
    timeline: tuple[WindowPrediction, ...] = ()
    error: str | None = None
    warning: str | None = None
    segments: tuple[SegmentPrediction, ...] = ()
    speech_shares: dict[str, float] = field(default_factory=dict)
    dimensions: dict[str, float] = field(default_factory=dict)

    def as_row(self) -> dict[str, Any]:
        """A JSON-able dict: source, label, error, warning, duration_s, ``prob_<class>`` per class, each dimension's
        value, windows (how many), timeline (list of dicts), with segmentation segments and speech_shares, and, when
        computed, embedding."""
        row: dict[str, Any] = {"source": self.source, "label": self.label, "error": self.error,
                               "warning": self.warning, "duration_s": self.duration_s}
        row.update({f"prob_{name}": p for name, p in self.probabilities.items()})
        row.update(self.dimensions)
        row["windows"] = len(self.timeline)
        row["timeline"] = [w.as_dict() for w in self.timeline]
        if self.segments:
            row["segments"] = [{"segment": s.index, "start_s": s.start_s, "end_s": s.end_s, "speaker": s.speaker,
                                "label": s.label, "probabilities": s.probabilities, "error": s.error,
                                **({"dimensions": s.dimensions} if s.dimensions else {})}
                               for s in self.segments]
            row["speech_shares"] = dict(self.speech_shares)
        if self.embedding is not None:
            row["embedding"] = [float(v) for v in self.embedding]
        return row


def weighted_mean(probabilities: np.ndarray, durations: Sequence[float]) -> np.ndarray:
    """The duration-weighted mean (float64) of ``probabilities [N, C]``."""
    weights = np.asarray(durations, np.float64)
    return (probabilities.astype(np.float64) * weights[:, None]).sum(0) / weights.sum()


def as_dict(classes: Sequence[str], probabilities: np.ndarray) -> dict[str, float]:
    return {name: float(p) for name, p in zip(classes, probabilities)}
