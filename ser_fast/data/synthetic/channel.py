"""Recording conditions: what happens between the speaker's mouth and the wav file. Each starts with a random
recording gain, so absolute level alone does not give the label.

- ``studio``: close microphone, a faint self-noise floor, 16 kHz (like IEMOCAP).
- ``telephone``: 300-3400 Hz band limit, a mild compressor, G.711 mu-law 8-bit coding, line noise, 8 kHz in the file.
- ``far-field``: a distant microphone in a room: synthetic impulse response (direct path, early reflections,
  exponentially decaying diffuse tail, RT60 0.25-0.6 s), a low-frequency boost from room modes, ambient noise at
  15-25 dB SNR, 44.1 kHz in the file (like MSP-IMPROV) but little above 8 kHz (the speech is synthesised at 16 kHz).
- ``room``: the same room recorded closer and quieter (direct-to-reverberant ratio 20-30 dB instead of 0-8, ambient
  noise at 45-55 dB SNR instead of 15-25) over the studio's self-noise floor. It is the second corpus of the built-in
  reproduction (``ser_fast.reproduce.builtin``), calibrated once before any system was compared: a linear probe on
  utterance-mean and -std log-Mel (``ser_fast.evaluation.reference_probe``) trained on 20 studio speakers scores
  52.5 % UAR within that corpus, 39-40 % on ``room`` speech of 20 other speakers and 25 % (chance) on ``far-field``
  speech, whose pauses are near digital silence."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import soxr
from scipy.signal import butter, fftconvolve, lfilter, sosfilt

from ser_fast.data.synthetic.source import rms

CONDITION_RATES = {"studio": 16000, "telephone": 8000, "far-field": 44100, "room": 44100}
CONDITIONS = tuple(CONDITION_RATES)
RECORDING_GAIN_DB = 6.0  # uniform in +-6 dB per utterance
PEAK_LIMIT = 0.98  # a recordist would turn the gain down rather than clip

STUDIO_NOISE_DBFS = -75.0

TELEPHONE_BAND_HZ = (300.0, 3400.0)
COMPRESSOR_THRESHOLD_DBFS = -32.0
COMPRESSOR_RATIO = 3.0
COMPRESSOR_SMOOTHING_S = 0.01
MU_LAW = 255.0
LINE_NOISE_DBFS = -60.0

RT60_S = (0.25, 0.6)
NUM_EARLY_REFLECTIONS = 5
EARLY_REFLECTION_S = (0.003, 0.03)
ROOM_MODE_CUTOFF_HZ = 200.0
ROOM_MODE_BOOST = 1.0  # amplitude added below the cutoff: about +6 dB
AMBIENT_NOISE_POLE = 0.97  # strongly low-pass ambient noise: ventilation rumble and traffic


@dataclass(frozen=True)
class Room:
    """A distant microphone: the uniform ranges of the direct-to-reverberant ratio and of the ambient noise's SNR
    (dB), and the self-noise floor under it all (dBFS; None: none)."""

    direct_to_reverberant_db: tuple[float, float]
    ambient_snr_db: tuple[float, float]
    noise_floor_dbfs: float | None


ROOMS = {"far-field": Room((0.0, 8.0), (15.0, 25.0), None), "room": Room((20.0, 30.0), (45.0, 55.0), STUDIO_NOISE_DBFS)}


def record(speech: np.ndarray, sample_rate: int, condition: str, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """``speech`` (float, at ``sample_rate``) through ``condition``: the samples to write, in
    [-PEAK_LIMIT, PEAK_LIMIT], and their sample rate."""
    if condition not in CONDITION_RATES:
        raise ValueError(f"condition={condition!r}: expected one of {CONDITIONS}")
    gained = speech * 10.0 ** (rng.uniform(-RECORDING_GAIN_DB, RECORDING_GAIN_DB) / 20.0)
    if condition == "studio":
        recorded = gained + 10.0 ** (STUDIO_NOISE_DBFS / 20.0) * rng.standard_normal(gained.size)
    elif condition == "telephone":
        recorded = telephone_line(gained, sample_rate, rng)
    else:
        recorded = _distant(gained, sample_rate, ROOMS[condition], rng)
    rate = CONDITION_RATES[condition]
    if rate != sample_rate and condition != "telephone":
        recorded = soxr.resample(recorded, sample_rate, rate, quality="HQ")
    peak = float(np.max(np.abs(recorded)))
    if peak > PEAK_LIMIT:
        recorded = recorded * (PEAK_LIMIT / peak)
    return recorded, rate


def telephone_line(x: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """``x`` through a G.711 telephone line: 300-3400 Hz band, a mild compressor, 8 kHz (the rate returned), 8-bit
    mu-law, line noise at ``LINE_NOISE_DBFS``. Training's ``band`` augmentation uses it too."""
    band = sosfilt(_butter_sos(4, TELEPHONE_BAND_HZ, "bandpass", sample_rate), x)
    narrow = soxr.resample(_compress(band, sample_rate), sample_rate, CONDITION_RATES["telephone"], quality="HQ")
    coded = _mu_law_round_trip(narrow)
    return coded + 10.0 ** (LINE_NOISE_DBFS / 20.0) * rng.standard_normal(coded.size)


def _compress(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """Feed-forward compressor: gain from a smoothed magnitude envelope, ratio above the threshold."""
    pole = np.exp(-1.0 / (COMPRESSOR_SMOOTHING_S * sample_rate))
    envelope = lfilter([1.0 - pole], [1.0, -pole], np.abs(x))
    threshold = 10.0 ** (COMPRESSOR_THRESHOLD_DBFS / 20.0)
    over = np.maximum(envelope / threshold, 1.0)
    return x * over ** (1.0 / COMPRESSOR_RATIO - 1.0)


def _mu_law_round_trip(x: np.ndarray) -> np.ndarray:
    """Encode to 8-bit mu-law and decode back, the quantisation a G.711 telephone line adds."""
    clipped = np.clip(x, -1.0, 1.0)
    encoded = np.sign(clipped) * np.log1p(MU_LAW * np.abs(clipped)) / np.log1p(MU_LAW)
    quantised = np.round(encoded * 127.0) / 127.0
    return np.sign(quantised) * np.expm1(np.abs(quantised) * np.log1p(MU_LAW)) / MU_LAW


def _distant(x: np.ndarray, sample_rate: int, room: Room, rng: np.random.Generator) -> np.ndarray:
    reverberant = fftconvolve(x, room_impulse_response(sample_rate, rng, room.direct_to_reverberant_db))[:x.size]
    lows = sosfilt(_butter_sos(2, ROOM_MODE_CUTOFF_HZ, "lowpass", sample_rate), reverberant)
    boosted = reverberant + ROOM_MODE_BOOST * lows
    ambient = lfilter([1.0], [1.0, -AMBIENT_NOISE_POLE], rng.standard_normal(x.size))
    snr_db = rng.uniform(*room.ambient_snr_db)
    ambient *= rms(boosted) / max(rms(ambient), 1e-12) * 10.0 ** (-snr_db / 20.0)
    recorded = boosted + ambient
    if room.noise_floor_dbfs is not None:  # drawn last: a room without a floor draws what it always drew
        recorded = recorded + 10.0 ** (room.noise_floor_dbfs / 20.0) * rng.standard_normal(x.size)
    return recorded


def room_impulse_response(sample_rate: int, rng: np.random.Generator,
                          direct_to_reverberant_db: tuple[float, float] = ROOMS["far-field"].direct_to_reverberant_db
                          ) -> np.ndarray:
    """A synthetic room: unit direct path, a few early reflections, then Gaussian noise decaying by
    60 dB over the RT60, scaled to the drawn direct-to-reverberant ratio."""
    rt60 = rng.uniform(*RT60_S)
    t = np.arange(int(rt60 * sample_rate)) / sample_rate
    diffuse = rng.standard_normal(t.size) * np.exp(-np.log(1000.0) * t / rt60)
    diffuse[: int(EARLY_REFLECTION_S[1] * sample_rate)] = 0.0
    reflections = np.zeros(t.size)
    delays = (rng.uniform(*EARLY_REFLECTION_S, NUM_EARLY_REFLECTIONS) * sample_rate).astype(np.int64)
    reflections[delays] = rng.uniform(0.2, 0.6, NUM_EARLY_REFLECTIONS) * rng.choice([-1.0, 1.0], NUM_EARLY_REFLECTIONS)
    reverberant = diffuse + reflections
    drr_db = rng.uniform(*direct_to_reverberant_db)
    reverberant *= 10.0 ** (-drr_db / 20.0) / max(float(np.sqrt(np.sum(reverberant**2))), 1e-12)
    reverberant[0] = 1.0
    return reverberant


@functools.lru_cache(maxsize=8)
def _butter_sos(order: int, cutoff_hz: float | tuple[float, float], kind: str, sample_rate: int) -> np.ndarray:
    return butter(order, cutoff_hz, btype=kind, fs=sample_rate, output="sos")
