"""Classifying an input segment by segment: each speech segment (found by the VAD or given) is cut into the recognizer's
windows, classified, and aggregated into its own prediction; the input's label is the duration-weighted mean over its
segments, and each label's share of the speech time is kept beside it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ser_fast.frontend.constants import MIN_SAMPLES, SAMPLE_RATE
from ser_fast.inference.decision import Decision
from ser_fast.inference.decoding import DecodedInput, window_ranges
from ser_fast.inference.predictions import Prediction, SegmentPrediction, WindowPrediction, as_dict, weighted_mean
from ser_fast.inference.segments import VAD_MISSING, Segment, segment_problems, speech_segments, vad_available

VAD = "vad"


@dataclass
class SegmentPlan:
    """A segment of an input, why it cannot be classified (or None), and its windows (sample ranges of the input)."""

    index: int
    segment: Segment
    error: str | None
    windows: list[tuple[int, int]] = field(default_factory=list)


def plan_segments(wave: np.ndarray, segments: Sequence[Segment] | str, window: int, hop: int) -> list[SegmentPlan]:
    """``segments`` of a 16 kHz ``wave`` (or ``"vad"``: found by silero-vad), checked, each cut into windows of
    ``window`` samples every ``hop`` as a whole input would be."""
    found = speech_segments(wave) if segments == VAD else list(segments)
    problems = segment_problems(found, len(wave) / SAMPLE_RATE, MIN_SAMPLES / SAMPLE_RATE)
    plans = []
    for index, (segment, problem) in enumerate(zip(found, problems)):
        plan = SegmentPlan(index, segment, problem)
        if problem is None:
            start = round(segment.start_s * SAMPLE_RATE)
            end = min(round(segment.end_s * SAMPLE_RATE), len(wave))
            plan.windows = [(start + a, start + b) for a, b in window_ranges(end - start, window, hop)]
        plans.append(plan)
    return plans


def segmented_prediction(item: DecodedInput, plans: list[SegmentPlan], probabilities: np.ndarray,
                         embeddings: list[np.ndarray] | None, decision: Decision, vad: bool) -> Prediction:
    """The input's prediction from its windows' model outputs ``[windows, C (+ D)]`` (in ``plans``' order)."""
    segments, means, durations, k = [], [], [], 0
    for plan in plans:
        segment = plan.segment
        if plan.error is not None:
            segments.append(SegmentPrediction(plan.index, segment.start_s, segment.end_s, segment.speaker, None, {},
                                              error=plan.error))
            continue
        count = len(plan.windows)
        windows = decision.probabilities(probabilities[k:k + count])
        k += count
        mean = weighted_mean(windows, [end - start for start, end in plan.windows])
        timeline = () if count == 1 else tuple(
            WindowPrediction(start / SAMPLE_RATE, end / SAMPLE_RATE, decision.label(p), as_dict(decision.classes, p),
                             decision.dimension_values(p))
            for (start, end), p in zip(plan.windows, windows))
        segments.append(SegmentPrediction(plan.index, segment.start_s, segment.end_s, segment.speaker,
                                          decision.label(mean), as_dict(decision.classes, mean), timeline,
                                          dimensions=decision.dimension_values(mean)))
        means.append(mean)
        durations.append(segment.duration_s)
    if not means:
        if not plans:
            error = f"{item.source}: the VAD found no speech" if vad else f"{item.source}: no segments were given"
        else:
            error = f"{item.source}: none of its {len(plans)} segments can be classified: {plans[0].error}"
        return Prediction(item.source, None, {}, item.duration_s, error=error, warning=item.warning,
                          segments=tuple(segments))
    mean = weighted_mean(np.stack(means), durations)
    total = float(sum(durations))
    shares: dict[str, float] = {}
    for prediction in segments:
        if prediction.label is not None:
            shares[prediction.label] = shares.get(prediction.label, 0.0) + (prediction.end_s - prediction.start_s)
    embedding = None if embeddings is None else np.mean(np.stack(embeddings), axis=0).astype(np.float32)
    return Prediction(item.source, decision.label(mean), as_dict(decision.classes, mean), item.duration_s,
                      embedding=embedding, warning=item.warning, segments=tuple(segments),
                      speech_shares={label: float(share / total) for label, share in shares.items()},
                      dimensions=decision.dimension_values(mean))


def segment_specs(segments: object, count: int) -> list[Sequence[Segment] | str | None]:
    """``segments`` as one entry per input: None (no segmentation), ``"vad"``, or each input's own: a sequence of
    :class:`Segment` (or None for an input not to segment). TypeError / ValueError saying what is wrong; ImportError
    for ``"vad"`` without silero-vad."""
    if segments is None:
        return [None] * count
    if segments == VAD:
        if not vad_available():
            raise ImportError(VAD_MISSING)
        return [VAD] * count
    if isinstance(segments, str) or not isinstance(segments, Sequence) or len(segments) != count:
        raise ValueError(f"segments must be None, 'vad' or one entry per input ({count}: a list of Segment, or None), "
                         f"got {segments!r:.80}")
    for i, entry in enumerate(segments):
        if entry is not None and (isinstance(entry, str) or not isinstance(entry, Sequence)
                                  or not all(isinstance(s, Segment) for s in entry)):
            raise TypeError(f"segments[{i}] must be a list of ser_fast.inference.segments.Segment or None, got "
                            f"{entry!r:.80}")
    return list(segments)
