"""Dimensional emotion: arousal, valence and dominance ratings, on the scale each corpus rates them.

IEMOCAP and MSP-IMPROV rate on 1-5 (IEMOCAP's values are means of its annotators' integer ratings), MSP-Podcast on
1-7. The loaders keep the ratings in ``Utterance.extra`` under these names. A regression target is normalised to
[0, 1] by its corpus' scale, so one head fits every corpus, and ``DimensionScale.restore`` brings predictions back
to the corpus' own scale. A manifest has no known scale: its user gives one."""

from __future__ import annotations

import math
import numbers
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ser_fast.data.corpus import Corpus, Skipped, Utterance

DIMENSIONS = ("arousal", "valence", "dominance")


@dataclass(frozen=True)
class DimensionScale:
    """The range ``low..high`` a corpus rates every dimension on."""

    low: float
    high: float

    def __post_init__(self) -> None:
        for name in ("low", "high"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ValueError(f"a dimension scale's {name} must be a finite number, got {value!r}")
        if not self.low < self.high:
            raise ValueError(f"a dimension scale needs low < high, got {self.low:g}..{self.high:g}")

    @classmethod
    def parse(cls, text: str) -> DimensionScale:
        """``"LOW,HIGH"``, e.g. ``"1,7"``."""
        parts = str(text).split(",")
        try:
            low, high = (float(p) for p in parts)
        except ValueError:
            raise ValueError(f"a dimension scale is LOW,HIGH (e.g. 1,5), got {text!r}") from None
        return cls(low, high)

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def normalise(self, values) -> np.ndarray:
        """Ratings on this scale to [0, 1]."""
        return (np.asarray(values, dtype=np.float64) - self.low) / (self.high - self.low)

    def restore(self, values) -> np.ndarray:
        """Values on [0, 1] back to this scale."""
        return self.low + np.asarray(values, dtype=np.float64) * (self.high - self.low)

    def as_dict(self) -> dict:
        return {"low": self.low, "high": self.high}

    def __str__(self) -> str:
        return f"{self.low:g}-{self.high:g}"


CORPUS_SCALES: dict[str, DimensionScale] = {
    "iemocap": DimensionScale(1.0, 5.0),
    "msp-improv": DimensionScale(1.0, 5.0),
    "msp-podcast": DimensionScale(1.0, 7.0),
}


def corpus_scale(corpus: str, given: DimensionScale | None = None) -> DimensionScale:
    """The scale ``corpus`` (a loader name) rates on, or ``given``, which overrides it; a ValueError naming the
    corpora with a known scale where neither is there."""
    if given is not None:
        return given
    if corpus not in CORPUS_SCALES:
        known = ", ".join(f"{name} {scale}" for name, scale in CORPUS_SCALES.items())
        raise ValueError(f"the {corpus!r} corpus has no known arousal/valence/dominance scale (known: {known}); "
                         "give it, e.g. DimensionScale(1, 5)")
    return CORPUS_SCALES[corpus]


def rating(utterance: Utterance, dimension: str) -> float | None:
    """The utterance's rating of ``dimension`` as a float, None where it has none or it is not a number (a manifest
    column holds text)."""
    value = utterance.extra.get(dimension)
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        return None
    return float(value)


def with_dimensions(corpus: Corpus, scale: DimensionScale, dimensions: Sequence[str] = DIMENSIONS) -> Corpus:
    """The corpus' utterances rated on every dimension within ``scale``; each other one is added to ``skipped``,
    its item naming the value and its reason the dimension ("no arousal rating", "arousal outside 1-5")."""
    kept, skipped = [], list(corpus.skipped)
    for utterance in corpus:
        problem = None
        for dimension in dimensions:
            value = rating(utterance, dimension)
            if value is None:
                raw = utterance.extra.get(dimension)
                problem = (f"{utterance.path}" if raw is None else f"{utterance.path} ({dimension} {raw!r})",
                           f"no {dimension} rating")
            elif not scale.contains(value):
                problem = f"{utterance.path} ({dimension} {value:g})", f"{dimension} outside {scale}"
            if problem is not None:
                break
        if problem is None:
            kept.append(utterance)
        else:
            skipped.append(Skipped(*problem))
    subset = corpus.subset(kept)
    subset.skipped = skipped
    return subset


def ratings_summary(corpus: Corpus, scale: DimensionScale | None) -> str:
    """One paragraph on ``corpus``' arousal/valence/dominance ratings: how many utterances a dimensional target
    would train on (rated on every dimension within ``scale``) and why the others would be left out; or that none is
    rated, or that a scale is needed."""
    if not any(rating(u, name) is not None for u in corpus for name in DIMENSIONS):
        return "arousal/valence/dominance: no utterance is rated (--target dimensional and both need ratings)"
    if scale is None:
        return ("arousal/valence/dominance: rated, on a scale this corpus does not name; give it with "
                "--dimension-scale LOW,HIGH")
    rated = with_dimensions(corpus, scale)
    reasons = Counter(s.reason for s in rated.skipped[len(corpus.skipped):])
    left = "; ".join(f"{count} {reason}" for reason, count in reasons.most_common())
    return (f"arousal/valence/dominance: {len(rated)} of {len(corpus)} utterances rated within {scale}"
            + (f" (left out: {left})" if left else ""))


def ratings_within(utterances: Sequence[Utterance], scale: DimensionScale,
                   dimensions: Sequence[str] = DIMENSIONS) -> tuple[list[int], np.ndarray]:
    """The indices of the utterances rated on every dimension within ``scale``, and their ratings ``[N, D]`` on it
    (float64): what an evaluation scores, where :func:`with_dimensions` says why each other one is left out."""
    kept, values = [], []
    for index, utterance in enumerate(utterances):
        ratings = [rating(utterance, name) for name in dimensions]
        if all(value is not None and scale.contains(value) for value in ratings):
            kept.append(index)
            values.append(ratings)
    return kept, np.asarray(values, np.float64).reshape(-1, len(dimensions))


def dimension_targets(utterances: Sequence[Utterance], scale: DimensionScale,
                      dimensions: Sequence[str] = DIMENSIONS) -> np.ndarray:
    """``[utterances, dimensions]`` float32 ratings normalised to [0, 1]; a ValueError naming the first utterance
    without a rating within the scale (:func:`with_dimensions` keeps only those)."""
    values = np.empty((len(utterances), len(dimensions)), dtype=np.float64)
    for i, utterance in enumerate(utterances):
        for j, dimension in enumerate(dimensions):
            value = rating(utterance, dimension)
            if value is None or not scale.contains(value):
                raise ValueError(f"{utterance.path}: {dimension} {utterance.extra.get(dimension)!r} is not a rating "
                                 f"within {scale}")
            values[i, j] = value
    return scale.normalise(values).astype(np.float32)
