"""The timing of one utterance: phrases separated by pauses, each a run of consonant-vowel syllables
whose durations follow the speaking rate, with accented and phrase-final syllables lengthened."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ser_fast.data.synthetic.prosody import UtteranceProsody

CONSONANTS = ("none", "stop", "fricative", "nasal")
# Stops and fricatives dominate syllable onsets in English; some syllables start on the vowel.
CONSONANT_PROBS = (0.15, 0.35, 0.3, 0.2)
# Share of the syllable the onset consonant takes (the rest is the vowel).
CONSONANT_SHARE = np.array([0.05, 0.3, 0.35, 0.3])
UTTERANCE_S = (1.7, 3.3)  # total length, silences included (inside the 1.5-3.5 s the corpus promises)
LEADING_SILENCE_S = (0.05, 0.15)
TRAILING_SILENCE_S = (0.1, 0.2)
SYLLABLE_JITTER = 0.25  # sd of log syllable duration around the rate's mean
ACCENT_LENGTHENING = 1.25
FINAL_LENGTHENING = 1.4


@dataclass(frozen=True)
class SyllablePlan:
    """Where everything happens, in seconds from the start of the utterance; one entry per syllable unless noted."""

    onset: np.ndarray  # start of the syllable (its consonant)
    vowel_start: np.ndarray
    vowel_end: np.ndarray
    consonant: np.ndarray  # index into CONSONANTS
    vowel: np.ndarray  # index into the vowel table
    accented: np.ndarray  # bool: carries a pitch accent
    phrase_start: np.ndarray  # one entry per phrase
    phrase_end: np.ndarray  # one entry per phrase
    duration_s: float

    @property
    def num_syllables(self) -> int:
        return int(self.onset.size)


def plan_syllables(prosody: UtteranceProsody, num_vowels: int, rng: np.random.Generator) -> SyllablePlan:
    """Phrases, pauses and syllables for an utterance spoken with ``prosody``."""
    total_s = rng.uniform(*UTTERANCE_S)
    leading_s = rng.uniform(*LEADING_SILENCE_S)
    trailing_s = rng.uniform(*TRAILING_SILENCE_S)
    num_phrases = 1 + int(total_s > 2.0 and rng.random() < 0.6) + int(total_s > 2.8 and rng.random() < 0.4)
    pauses_s = prosody.pause_s * np.clip(rng.lognormal(0.0, 0.2, num_phrases - 1), 0.7, 1.4)
    # Pauses never take more than a third of the utterance: it stays mostly speech.
    pauses_s *= min(1.0, total_s / 3.0 / max(pauses_s.sum(), 1e-9))
    speech_s = total_s - leading_s - trailing_s - pauses_s.sum()
    num_syllables = max(3, round(speech_s * prosody.rate_syl_s))

    phrase_of = np.sort(rng.integers(0, num_phrases, num_syllables))
    phrase_of = _every_phrase_used(phrase_of, num_phrases)
    accented = rng.random(num_syllables) < prosody.accent_prob
    weights = rng.lognormal(0.0, SYLLABLE_JITTER, num_syllables)
    weights *= np.where(accented, ACCENT_LENGTHENING, 1.0)
    phrase_final = np.append(phrase_of[1:] != phrase_of[:-1], True)
    weights *= np.where(phrase_final, FINAL_LENGTHENING, 1.0)
    # Rescaled so the speech fills exactly its share of the drawn length: the mean rate stays the
    # prosody's up to rounding the syllable count.
    durations = weights * (speech_s / weights.sum())

    gaps = np.zeros(num_syllables)
    gaps[1:][phrase_of[1:] != phrase_of[:-1]] = pauses_s
    onset = leading_s + np.cumsum(gaps) + np.concatenate(([0.0], np.cumsum(durations)[:-1]))
    offset = onset + durations
    consonant = rng.choice(len(CONSONANTS), size=num_syllables, p=CONSONANT_PROBS)
    vowel_start = onset + CONSONANT_SHARE[consonant] * durations
    phrase_start = np.array([onset[phrase_of == p].min() for p in range(num_phrases)])
    phrase_end = np.array([offset[phrase_of == p].max() for p in range(num_phrases)])
    return SyllablePlan(
        onset=onset, vowel_start=vowel_start, vowel_end=offset, consonant=consonant,
        vowel=rng.integers(0, num_vowels, num_syllables), accented=accented,
        phrase_start=phrase_start, phrase_end=phrase_end, duration_s=float(offset[-1] + trailing_s),
    )


def _every_phrase_used(phrase_of: np.ndarray, num_phrases: int) -> np.ndarray:
    """Sorted phrase ids, every phrase holding a syllable (an empty phrase would give two pauses in a row)."""
    if np.unique(phrase_of).size == num_phrases:
        return phrase_of
    return np.arange(phrase_of.size) * num_phrases // phrase_of.size
