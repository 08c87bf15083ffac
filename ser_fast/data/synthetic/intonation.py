"""The melody and loudness of one utterance: an F0 contour built like a superposition model (phrase declination + a
rise-fall "hat" + Gaussian pitch accents + slow drift, in semitones) and one energy level per syllable."""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

from ser_fast.data.synthetic.prosody import UtteranceProsody
from ser_fast.data.synthetic.rhythm import SyllablePlan

# F0 moves slowly: computed every 5 ms, then interpolated to the sample rate.
CONTOUR_RATE_HZ = 200.0
F0_LIMITS_HZ = (55.0, 520.0)
DRIFT_SD_ST = 0.4  # slow wander of F0 that no prosodic rule explains
DRIFT_POLE = 0.96  # a 125 ms time constant at the contour rate
ACCENT_HEIGHT = (0.6, 1.0)  # accent heights as a share of the F0 range
ACCENT_PEAK_IN_VOWEL = 0.4  # accents peak a little before the middle of the vowel
PHRASE_ENERGY_FALL_DB = 3.0  # energy falls along a phrase, as subglottal pressure does


def f0_contour(plan: SyllablePlan, prosody: UtteranceProsody, num_samples: int, sample_rate: int,
               rng: np.random.Generator) -> np.ndarray:
    """``[num_samples]`` F0 in Hz (defined everywhere; the source is only voiced where the plan is)."""
    t = np.arange(int(np.ceil(plan.duration_s * CONTOUR_RATE_HZ)) + 1) / CONTOUR_RATE_HZ
    position = _phrase_position(plan, t)
    semitones = prosody.declination_st * (0.5 - position)
    # The hat is centred on zero over a phrase so that its weight moves the shape, not the level.
    semitones += prosody.hat_weight * prosody.f0_range_st * (np.sin(np.pi * position) - 2.0 / np.pi)

    accented = np.flatnonzero(plan.accented)
    centres = plan.vowel_start[accented] + ACCENT_PEAK_IN_VOWEL * (
        plan.vowel_end[accented] - plan.vowel_start[accented])
    heights = (1.0 - 0.5 * prosody.hat_weight) * prosody.f0_range_st * rng.uniform(*ACCENT_HEIGHT, accented.size)
    bumps = np.exp(-0.5 * ((t[None, :] - centres[:, None]) / prosody.accent_width_s) ** 2)
    semitones += heights @ bumps

    drift = lfilter([1.0 - DRIFT_POLE], [1.0, -DRIFT_POLE], rng.standard_normal(t.size))
    semitones += DRIFT_SD_ST * drift / max(float(drift.std()), 1e-9)

    f0 = np.clip(prosody.f0_hz * 2.0 ** (semitones / 12.0), *F0_LIMITS_HZ)
    return np.interp(np.arange(num_samples) / sample_rate, t, f0)


def syllable_levels_db(plan: SyllablePlan, prosody: UtteranceProsody, rng: np.random.Generator) -> np.ndarray:
    """``[num_syllables]`` level of each syllable in dB relative to the utterance's level: random
    variation of the emotion's size, accents louder, and a fall along each phrase."""
    spread = prosody.level_sd_db * rng.standard_normal(plan.num_syllables)
    accent_boost = np.where(plan.accented, 1.0 + 0.5 * prosody.level_sd_db, 0.0)
    fall = PHRASE_ENERGY_FALL_DB * _phrase_position(plan, plan.onset)
    return spread + accent_boost - fall


def _phrase_position(plan: SyllablePlan, t: np.ndarray) -> np.ndarray:
    """Where each time lies within its phrase, 0 at its start and 1 at its end (clamped in pauses)."""
    phrase = np.clip(np.searchsorted(plan.phrase_start, t, side="right") - 1, 0, plan.phrase_start.size - 1)
    span = np.maximum(plan.phrase_end[phrase] - plan.phrase_start[phrase], 1e-3)
    return np.clip((t - plan.phrase_start[phrase]) / span, 0.0, 1.0)
