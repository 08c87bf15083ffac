"""The vocal tract: a cascade of second-order formant resonators (Klatt 1980) per vowel, a nasal
murmur, and band-limited noise for fricatives and stop bursts."""

from __future__ import annotations

import functools

import numpy as np
from scipy.signal import butter

# F1-F4 of American English vowels for the reference (adult male) tract: Peterson & Barney (1952)
# averages for F1-F3, typical values for F4.
VOWEL_FORMANTS_HZ = np.array([
    [730.0, 1090.0, 2440.0, 3400.0],  # /a/ father
    [270.0, 2290.0, 3010.0, 3700.0],  # /i/ beet
    [300.0, 870.0, 2240.0, 3300.0],  # /u/ boot
    [530.0, 1840.0, 2480.0, 3500.0],  # /E/ bet
    [570.0, 840.0, 2410.0, 3300.0],  # /O/ bought
    [660.0, 1720.0, 2410.0, 3400.0],  # /ae/ bat
    [500.0, 1500.0, 2500.0, 3500.0],  # schwa
])
FORMANT_BANDWIDTHS_HZ = np.array([80.0, 100.0, 150.0, 250.0])
# A nasal murmur: a low, broad first resonance and weak higher ones (the oral cavity is closed).
NASAL_FORMANTS_HZ = np.array([250.0, 1100.0, 2300.0, 3300.0])
NASAL_BANDWIDTHS_HZ = np.array([100.0, 250.0, 350.0, 450.0])
NASAL_LEVEL_DB = -10.0  # murmur level relative to the following vowel

# Noise bands of voiceless fricatives (/s/, /S/, /f/) and of stop release bursts.
FRICATIVE_BANDS_HZ = ((3800.0, 7400.0), (2000.0, 5500.0), (1000.0, 7000.0))
FRICATIVE_LEVELS_DB = np.array([-10.0, -8.0, -20.0])  # /f/ is weak, sibilants strong
BURST_BAND_HZ = (1500.0, 6500.0)
BURST_LEVEL_DB = -12.0
BURST_S = 0.015


def resonator_sos(formants_hz: np.ndarray, bandwidths_hz: np.ndarray, sample_rate: int) -> np.ndarray:
    """``[..., K, 6]`` second-order sections, one unity-DC-gain resonator per formant (Klatt's
    ``y[n] = A x[n] + B y[n-1] + C y[n-2]``); formants at or above Nyquist are left out (pass-through)."""
    formants_hz, bandwidths_hz = np.broadcast_arrays(np.asarray(formants_hz, float), np.asarray(bandwidths_hz, float))
    c = -np.exp(-2.0 * np.pi * bandwidths_hz / sample_rate)
    b = 2.0 * np.exp(-np.pi * bandwidths_hz / sample_rate) * np.cos(2.0 * np.pi * formants_hz / sample_rate)
    a = 1.0 - b - c
    zero = np.zeros_like(a)
    sos = np.stack([a, zero, zero, zero + 1.0, -b, -c], axis=-1)
    above_nyquist = formants_hz >= 0.45 * sample_rate
    sos[above_nyquist] = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    return sos


def vowel_sos(vowel: np.ndarray, formant_scale: float, sample_rate: int) -> np.ndarray:
    """``[len(vowel), 4, 6]`` formant filters of the given vowels for a tract scaled by ``formant_scale``."""
    return resonator_sos(VOWEL_FORMANTS_HZ[vowel] * formant_scale, FORMANT_BANDWIDTHS_HZ, sample_rate)


def nasal_sos(formant_scale: float, sample_rate: int) -> np.ndarray:
    return resonator_sos(NASAL_FORMANTS_HZ * formant_scale, NASAL_BANDWIDTHS_HZ, sample_rate)


@functools.lru_cache(maxsize=8)
def fricative_sos(sample_rate: int) -> tuple[np.ndarray, ...]:
    """Band-pass filters (4th-order Butterworth) of each fricative, upper edges kept below Nyquist."""
    return tuple(_band_pass(low, high, sample_rate) for low, high in FRICATIVE_BANDS_HZ)


@functools.lru_cache(maxsize=8)
def burst_sos(sample_rate: int) -> np.ndarray:
    return _band_pass(*BURST_BAND_HZ, sample_rate)


def _band_pass(low_hz: float, high_hz: float, sample_rate: int) -> np.ndarray:
    high_hz = min(high_hz, 0.45 * sample_rate)
    return butter(2, (low_hz, high_hz), btype="bandpass", fs=sample_rate, output="sos")
