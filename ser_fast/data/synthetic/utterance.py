"""One utterance, source through filter: the glottal source over the F0 contour, shaped syllable by
syllable by the vowel's formants, with nasal murmurs, fricative noise and stop bursts between vowels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import sosfilt

from ser_fast.data.synthetic import vocal_tract
from ser_fast.data.synthetic.intonation import f0_contour, syllable_levels_db
from ser_fast.data.synthetic.prosody import Speaker, UtteranceProsody, draw_prosody
from ser_fast.data.synthetic.rhythm import CONSONANTS, SyllablePlan, plan_syllables
from ser_fast.data.synthetic.source import glottal_source, rms

REFERENCE_DBFS = -30.0  # speech RMS of a speaker at habitual effort, before the recording gain
RING_S = 0.03  # resonators ring on after a vowel ends; their tails are kept
RELEASE_PER_ATTACK = 1.5  # vowels die away a little more slowly than they start
CONSONANT_EDGE_S = 0.012  # fade in and out of noise segments
STOP, FRICATIVE, NASAL = (CONSONANTS.index(name) for name in ("stop", "fricative", "nasal"))


@dataclass(frozen=True)
class SpokenUtterance:
    """The dry (unrecorded) waveform at ``sample_rate`` and what it was made from."""

    waveform: np.ndarray
    sample_rate: int
    prosody: UtteranceProsody
    plan: SyllablePlan


def synthesize_utterance(speaker: Speaker, emotion: str, rng: np.random.Generator, sample_rate: int) -> SpokenUtterance:
    """``speaker`` saying a random string of syllables in ``emotion``; speech RMS at the speaker's
    and the emotion's vocal effort relative to ``REFERENCE_DBFS``."""
    prosody = draw_prosody(speaker, emotion, rng)
    plan = plan_syllables(prosody, len(vocal_tract.VOWEL_FORMANTS_HZ), rng)
    num_samples = int(round(plan.duration_s * sample_rate))
    f0 = f0_contour(plan, prosody, num_samples, sample_rate, rng)
    source = glottal_source(f0, voice_quality=prosody.voice_quality, jitter=prosody.jitter, shimmer=prosody.shimmer,
                            breathiness=prosody.breathiness, sample_rate=sample_rate, rng=rng)
    gains = 10.0 ** (syllable_levels_db(plan, prosody, rng) / 20.0)
    onset, vowel_start, vowel_end = (np.round(x * sample_rate).astype(np.int64)
                                     for x in (plan.onset, plan.vowel_start, plan.vowel_end))
    voiced = _voiced_speech(source, plan, prosody, gains, onset, vowel_start, vowel_end, sample_rate)
    # Consonant noise is set relative to the vowels' level, as a speaker's articulation would.
    vowel_rms = rms(voiced[_spans_mask(vowel_start, vowel_end, voiced.size)])
    consonants = _consonant_noise(plan, gains * vowel_rms, onset, vowel_start, voiced.size, sample_rate, rng)

    speech = (voiced + consonants)[:num_samples]
    active = _spans_mask(onset, vowel_end, num_samples)
    target_rms = 10.0 ** ((REFERENCE_DBFS + prosody.level_db) / 20.0)
    speech *= target_rms / max(rms(speech[active]), 1e-12)
    return SpokenUtterance(waveform=speech, sample_rate=sample_rate, prosody=prosody, plan=plan)


def _voiced_speech(source: np.ndarray, plan: SyllablePlan, prosody: UtteranceProsody, gains: np.ndarray,
                   onset: np.ndarray, vowel_start: np.ndarray, vowel_end: np.ndarray, sample_rate: int) -> np.ndarray:
    """Vowels (and nasal murmurs) cut from the source with their energy envelopes, each through its
    own formant filter; ``RING_S`` longer than the source, for the last resonances to die away."""
    ring = int(RING_S * sample_rate)
    attack = max(1, int(prosody.attack_s * sample_rate))
    release = int(RELEASE_PER_ATTACK * attack)
    voiced = np.zeros(source.size + ring)
    vowel_filters = vocal_tract.vowel_sos(plan.vowel, prosody.formant_scale, sample_rate)
    nasal_filter = vocal_tract.nasal_sos(prosody.formant_scale, sample_rate)
    nasal_gain = 10.0 ** (vocal_tract.NASAL_LEVEL_DB / 20.0)
    for s in range(plan.num_syllables):
        _add_filtered(voiced, vowel_start[s], source[vowel_start[s]:vowel_end[s]], gains[s],
                      _envelope(vowel_end[s] - vowel_start[s], attack, release), vowel_filters[s], ring)
        if plan.consonant[s] == NASAL:
            # The murmur fades out while the vowel fades in (the same raised cosine, mirrored), so voicing
            # runs on through the nasal release as it does in speech.
            murmur_end = min(vowel_start[s] + attack, vowel_end[s])
            _add_filtered(voiced, onset[s], source[onset[s]:murmur_end], gains[s] * nasal_gain,
                          _envelope(murmur_end - onset[s], attack, murmur_end - vowel_start[s]), nasal_filter, ring)
    return voiced


def _consonant_noise(plan: SyllablePlan, levels: np.ndarray, onset: np.ndarray, vowel_start: np.ndarray, size: int,
                     sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Fricative noise over each fricative onset and a release burst at the end of each stop closure
    (the closure itself stays silent); ``levels`` is each syllable's vowel RMS."""
    fricative_kind = rng.integers(0, len(vocal_tract.FRICATIVE_BANDS_HZ), plan.num_syllables)
    noise = rng.standard_normal(size)
    consonants = np.zeros(size)
    edge = int(CONSONANT_EDGE_S * sample_rate)
    fricative_filters = vocal_tract.fricative_sos(sample_rate)
    for s in np.flatnonzero(plan.consonant == FRICATIVE):
        kind = fricative_kind[s]
        _add_noise(consonants, onset[s], noise[onset[s]:vowel_start[s]],
                   levels[s] * 10.0 ** (vocal_tract.FRICATIVE_LEVELS_DB[kind] / 20.0),
                   _envelope(vowel_start[s] - onset[s], edge, edge), fricative_filters[kind])
    burst = int(vocal_tract.BURST_S * sample_rate)
    burst_decay = np.exp(-np.arange(burst) / (0.3 * burst))
    for s in np.flatnonzero(plan.consonant == STOP):
        start = max(vowel_start[s] - burst, onset[s])
        _add_noise(consonants, start, noise[start:vowel_start[s]],
                   levels[s] * 10.0 ** (vocal_tract.BURST_LEVEL_DB / 20.0),
                   burst_decay[:vowel_start[s] - start], vocal_tract.burst_sos(sample_rate))
    return consonants


def _envelope(length: int, attack: int, release: int) -> np.ndarray:
    """A raised-cosine rise over ``attack`` and fall over ``release`` samples (both shortened for a short segment)."""
    t = np.arange(length)
    rise = np.clip(t / max(attack, 1), 0.0, 1.0)
    fall = np.clip((length - 1 - t) / max(release, 1), 0.0, 1.0)
    return np.sin(0.5 * np.pi * np.minimum(rise, fall)) ** 2


def _add_filtered(out: np.ndarray, start: int, excitation: np.ndarray, gain: float, envelope: np.ndarray,
                  sos: np.ndarray, ring: int) -> None:
    if excitation.size == 0:
        return
    padded = np.concatenate((excitation * envelope * gain, np.zeros(ring)))
    end = min(start + padded.size, out.size)
    out[start:end] += sosfilt(sos, padded)[:end - start]


def _add_noise(out: np.ndarray, start: int, noise: np.ndarray, level: float, envelope: np.ndarray,
               sos: np.ndarray) -> None:
    if noise.size == 0:
        return
    shaped = sosfilt(sos, noise) * envelope
    out[start:start + shaped.size] += shaped * (level / max(rms(shaped), 1e-12))


def _spans_mask(starts: np.ndarray, ends: np.ndarray, size: int) -> np.ndarray:
    """Boolean mask, True inside every [start, end)."""
    change = np.zeros(size + 1, dtype=np.int64)
    np.add.at(change, np.clip(starts, 0, size), 1)
    np.add.at(change, np.clip(ends, 0, size), -1)
    return np.cumsum(change[:-1]) > 0
