"""The glottal source: Rosenberg flow pulses driven by a phase accumulator over an F0 contour, with jitter (period
perturbation), shimmer (amplitude perturbation) and aspiration noise. Voice quality sets the pulse shape: a pressed
voice closes the glottis quickly and stays closed longer (small open quotient, short closing phase: strong high
harmonics), a breathy voice opens longer and closes smoothly (steep spectral tilt) and leaks aspiration noise."""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

# Open quotient (share of the period the glottis is open) and closing quotient (share spent closing)
# for modal voice, and how far one unit of voice quality moves them.
MODAL_OPEN_QUOTIENT = 0.6
OPEN_QUOTIENT_PER_QUALITY = -0.15
OPEN_QUOTIENT_LIMITS = (0.35, 0.85)
MODAL_CLOSING_QUOTIENT = 0.16
CLOSING_QUOTIENT_PER_QUALITY = -0.06
CLOSING_QUOTIENT_LIMITS = (0.04, 0.3)
# Extra spectral tilt of lax phonation: a one-pole low-pass whose pole grows as the voice relaxes.
MODAL_TILT_POLE = 0.35
TILT_POLE_PER_QUALITY = -0.3
TILT_POLE_LIMITS = (0.0, 0.85)
# Aspiration is turbulence at the glottis: strongest while the glottis is open.
ASPIRATION_FLOOR = 0.4
MAX_PERTURBATION = 0.2  # jitter and shimmer draws are clipped to +-20 %


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2))) if x.size else 0.0


def rosenberg_flow(cycle_phase: np.ndarray, open_quotient: float, closing_quotient: float) -> np.ndarray:
    """Glottal flow at ``cycle_phase`` in [0, 1): a half-cosine opening, a quarter-cosine closing,
    then closed (Rosenberg 1971, pulse type C)."""
    opening = open_quotient - closing_quotient
    rising = 0.5 * (1.0 - np.cos(np.pi * cycle_phase / opening))
    falling = np.cos(0.5 * np.pi * (cycle_phase - opening) / closing_quotient)
    return np.where(cycle_phase < opening, rising, np.where(cycle_phase < open_quotient, falling, 0.0))


def glottal_source(f0_hz: np.ndarray, *, voice_quality: float, jitter: float, shimmer: float, breathiness: float,
                   sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """``[len(f0_hz)]`` glottal flow derivative (what excites the vocal tract once lip radiation is
    folded in) plus aspiration noise, at unit RMS for the voiced part."""
    open_quotient = float(np.clip(MODAL_OPEN_QUOTIENT + OPEN_QUOTIENT_PER_QUALITY * voice_quality,
                                  *OPEN_QUOTIENT_LIMITS))
    closing_quotient = float(np.clip(MODAL_CLOSING_QUOTIENT + CLOSING_QUOTIENT_PER_QUALITY * voice_quality,
                                     *CLOSING_QUOTIENT_LIMITS))

    # Jitter: each period runs at its own perturbed F0. Periods are counted on the unperturbed phase,
    # which is close enough for perturbations of a few percent.
    nominal_phase = np.cumsum(f0_hz) / sample_rate
    num_periods = int(nominal_phase[-1]) + 1
    period_scale = 1.0 + np.clip(jitter * rng.standard_normal(num_periods), -MAX_PERTURBATION, MAX_PERTURBATION)
    phase = np.cumsum(f0_hz * period_scale[nominal_phase.astype(np.int64)]) / sample_rate
    period = phase.astype(np.int64)
    amplitude = 1.0 + np.clip(shimmer * rng.standard_normal(int(period[-1]) + 1),
                              -MAX_PERTURBATION, MAX_PERTURBATION)

    flow = rosenberg_flow(phase - period, open_quotient, closing_quotient) * amplitude[period]
    excitation = np.diff(flow, prepend=0.0)
    tilt_pole = float(np.clip(MODAL_TILT_POLE + TILT_POLE_PER_QUALITY * voice_quality, *TILT_POLE_LIMITS))
    excitation = lfilter([1.0 - tilt_pole], [1.0, -tilt_pole], excitation)
    excitation /= max(rms(excitation), 1e-12)

    aspiration = rng.standard_normal(f0_hz.size) * (ASPIRATION_FLOOR + (1.0 - ASPIRATION_FLOOR) * flow)
    return excitation + breathiness * aspiration
