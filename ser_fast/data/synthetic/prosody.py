"""Who speaks and how: per-speaker voice parameters, per-emotion speaking styles, and the values one utterance draws
from them. Every emotion moves the same handful of parameters (F0 level, range and contour shape, speaking rate, energy
and its variability, voice quality, jitter and shimmer) and each is drawn per utterance from a normal distribution whose
spread overlaps the neighbouring classes: the classes differ on average, never with certainty. Speakers differ on the
same axes by amounts of the same size, so a classifier has to learn what is relative to the speaker. The directions
follow the acoustic-correlates literature (Scherer 2003; Banse & Scherer 1996): anger and joy raise F0 and energy and
speed up, sadness lowers F0, narrows its range and slows down; anger presses the voice, sadness relaxes it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EMOTIONS = ("neutral", "happy", "sad", "angry")
GENDERS = ("F", "M")


@dataclass(frozen=True)
class Spread:
    """A normal distribution, clipped to [low, high] so that no draw is physically absurd."""

    mean: float
    sd: float
    low: float = -np.inf
    high: float = np.inf

    def draw(self, rng: np.random.Generator) -> float:
        return float(np.clip(rng.normal(self.mean, self.sd), self.low, self.high))


@dataclass(frozen=True)
class EmotionStyle:
    """How one emotion shapes speech, as distributions over utterances (units in the field names)."""

    f0_shift_st: Spread  # mean F0 relative to the speaker's habitual F0
    f0_range_st: Spread  # height of pitch accents and of the rise-fall "hat" over a phrase
    declination_st: Spread  # how far F0 falls from the start to the end of a phrase
    hat_weight: Spread  # 0 = accents only, 1 = one wide rise-fall over the phrase
    accent_width_s: Spread  # sd of an accent's Gaussian bump: small = sharp, emphatic accents
    accent_prob: Spread  # share of syllables that carry a pitch accent
    rate_factor: Spread  # speaking rate relative to the speaker's habitual rate
    level_db: Spread  # vocal effort relative to the speaker's habitual level
    level_sd_db: Spread  # syllable-to-syllable energy variation
    voice_quality: Spread  # -1 breathy/lax .. 0 modal .. +1 pressed/tense
    jitter: Spread  # relative sd of the glottal period
    shimmer: Spread  # relative sd of the glottal pulse amplitude
    formant_shift: Spread  # formant scaling (smiling shortens the tract and raises formants)
    pause_s: Spread  # pause between phrases
    attack_s: Spread  # rise time of a syllable's energy: short = abrupt onsets


EMOTION_STYLES: dict[str, EmotionStyle] = {
    "neutral": EmotionStyle(
        f0_shift_st=Spread(0.0, 2.0), f0_range_st=Spread(2.5, 0.9, 0.5), declination_st=Spread(3.0, 1.0, 0.0),
        hat_weight=Spread(0.15, 0.1, 0.0, 1.0), accent_width_s=Spread(0.09, 0.02, 0.03),
        accent_prob=Spread(0.3, 0.1, 0.05, 0.9), rate_factor=Spread(1.0, 0.08, 0.7), level_db=Spread(0.0, 2.0),
        level_sd_db=Spread(1.5, 0.5, 0.3), voice_quality=Spread(0.0, 0.35), jitter=Spread(0.008, 0.002, 0.002),
        shimmer=Spread(0.04, 0.01, 0.01), formant_shift=Spread(1.0, 0.015), pause_s=Spread(0.25, 0.06, 0.1, 0.6),
        attack_s=Spread(0.03, 0.006, 0.008),
    ),
    "happy": EmotionStyle(
        f0_shift_st=Spread(2.0, 2.0), f0_range_st=Spread(6.0, 1.5, 0.5), declination_st=Spread(1.5, 1.0, 0.0),
        hat_weight=Spread(0.7, 0.15, 0.0, 1.0), accent_width_s=Spread(0.12, 0.025, 0.03),
        accent_prob=Spread(0.45, 0.1, 0.05, 0.9), rate_factor=Spread(1.07, 0.08, 0.7), level_db=Spread(1.5, 2.0),
        level_sd_db=Spread(3.0, 0.8, 0.3), voice_quality=Spread(0.1, 0.35), jitter=Spread(0.008, 0.002, 0.002),
        shimmer=Spread(0.04, 0.01, 0.01), formant_shift=Spread(1.02, 0.015), pause_s=Spread(0.2, 0.05, 0.1, 0.6),
        attack_s=Spread(0.022, 0.005, 0.008),
    ),
    "sad": EmotionStyle(
        f0_shift_st=Spread(-1.5, 2.0), f0_range_st=Spread(1.3, 0.5, 0.3), declination_st=Spread(2.5, 1.0, 0.0),
        hat_weight=Spread(0.1, 0.08, 0.0, 1.0), accent_width_s=Spread(0.13, 0.03, 0.03),
        accent_prob=Spread(0.2, 0.08, 0.05, 0.9), rate_factor=Spread(0.8, 0.07, 0.55), level_db=Spread(-2.5, 2.0),
        level_sd_db=Spread(1.2, 0.4, 0.3), voice_quality=Spread(-0.35, 0.35), jitter=Spread(0.013, 0.003, 0.002),
        shimmer=Spread(0.06, 0.015, 0.01), formant_shift=Spread(0.985, 0.015), pause_s=Spread(0.4, 0.1, 0.1, 0.7),
        attack_s=Spread(0.045, 0.008, 0.008),
    ),
    "angry": EmotionStyle(
        f0_shift_st=Spread(2.5, 2.0), f0_range_st=Spread(5.0, 1.5, 0.5), declination_st=Spread(2.0, 1.5, 0.0),
        hat_weight=Spread(0.15, 0.1, 0.0, 1.0), accent_width_s=Spread(0.045, 0.012, 0.02),
        accent_prob=Spread(0.55, 0.1, 0.05, 0.9), rate_factor=Spread(1.12, 0.08, 0.7), level_db=Spread(3.5, 2.0),
        level_sd_db=Spread(4.0, 1.0, 0.3), voice_quality=Spread(0.45, 0.35), jitter=Spread(0.012, 0.003, 0.002),
        shimmer=Spread(0.07, 0.015, 0.01), formant_shift=Spread(1.01, 0.015), pause_s=Spread(0.15, 0.05, 0.1, 0.6),
        attack_s=Spread(0.012, 0.004, 0.006),
    ),
}

# Habitual F0 by gender (Hz) and the spread between speakers of one gender (semitones).
HABITUAL_F0_HZ = {"F": 205.0, "M": 115.0}
SPEAKER_F0_SD_ST = 2.0
# Formant scaling: a shorter vocal tract raises every formant by the same factor (F/M about 1.16).
VOCAL_TRACT_SCALE = {"F": 1.16, "M": 1.0}
SPEAKER_VTL_SD = 0.04
HABITUAL_RATE_SYL_S = Spread(4.6, 0.45, 3.4, 6.0)
SPEAKER_LEVEL_DB = Spread(0.0, 2.0)
SPEAKER_VOICE_QUALITY = Spread(0.0, 0.3)
SPEAKER_BREATHINESS = Spread(0.06, 0.03, 0.01, 0.2)  # aspiration noise relative to the voiced source
SPEAKER_JITTER_FACTOR = Spread(1.0, 0.2, 0.5)


@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker: the habitual voice that every emotion then modifies."""

    index: int  # 0-based position in the corpus
    gender: str  # "F" or "M"
    f0_hz: float  # habitual F0
    vtl_scale: float  # formant scaling, 1.0 = the reference (adult male) tract
    rate_syl_s: float  # habitual speaking rate, syllables per second
    level_db: float  # habitual vocal effort
    voice_quality: float  # habitual breathy (-) / pressed (+) setting
    breathiness: float  # aspiration noise level
    jitter_factor: float  # scales the emotion's jitter and shimmer


def draw_speaker(index: int, gender: str, rng: np.random.Generator) -> Speaker:
    """A speaker of the given gender with voice parameters drawn around that gender's norms."""
    if gender not in GENDERS:
        raise ValueError(f"gender={gender!r}: expected one of {GENDERS}")
    return Speaker(index=index, gender=gender,
                   f0_hz=HABITUAL_F0_HZ[gender] * 2.0 ** (rng.normal(0.0, SPEAKER_F0_SD_ST) / 12.0),
                   vtl_scale=VOCAL_TRACT_SCALE[gender] * float(np.clip(rng.normal(1.0, SPEAKER_VTL_SD), 0.9, 1.1)),
                   rate_syl_s=HABITUAL_RATE_SYL_S.draw(rng), level_db=SPEAKER_LEVEL_DB.draw(rng),
                   voice_quality=SPEAKER_VOICE_QUALITY.draw(rng), breathiness=SPEAKER_BREATHINESS.draw(rng),
                   jitter_factor=SPEAKER_JITTER_FACTOR.draw(rng))


@dataclass(frozen=True)
class UtteranceProsody:
    """The values one utterance uses: the speaker's habits moved by one draw of the emotion's style."""

    f0_hz: float  # mean F0 of the utterance (before accents and declination)
    f0_range_st: float
    declination_st: float
    hat_weight: float
    accent_width_s: float
    accent_prob: float
    rate_syl_s: float
    level_db: float
    level_sd_db: float
    voice_quality: float
    breathiness: float
    jitter: float
    shimmer: float
    formant_scale: float
    pause_s: float
    attack_s: float


def draw_prosody(speaker: Speaker, emotion: str, rng: np.random.Generator) -> UtteranceProsody:
    """One utterance's prosody: the emotion's distributions, centred on the speaker's habits."""
    if emotion not in EMOTION_STYLES:
        raise ValueError(f"emotion={emotion!r}: expected one of {EMOTIONS}")
    style = EMOTION_STYLES[emotion]
    voice_quality = speaker.voice_quality + style.voice_quality.draw(rng)
    # breathiness: a lax (breathy) setting leaks more air through the glottis, so more aspiration noise.
    return UtteranceProsody(
        f0_hz=speaker.f0_hz * 2.0 ** (style.f0_shift_st.draw(rng) / 12.0), f0_range_st=style.f0_range_st.draw(rng),
        declination_st=style.declination_st.draw(rng), hat_weight=style.hat_weight.draw(rng),
        accent_width_s=style.accent_width_s.draw(rng), accent_prob=style.accent_prob.draw(rng),
        rate_syl_s=speaker.rate_syl_s * style.rate_factor.draw(rng),
        level_db=speaker.level_db + style.level_db.draw(rng), level_sd_db=style.level_sd_db.draw(rng),
        voice_quality=voice_quality, breathiness=speaker.breathiness * float(np.exp(-0.8 * voice_quality)),
        jitter=speaker.jitter_factor * style.jitter.draw(rng), shimmer=speaker.jitter_factor * style.shimmer.draw(rng),
        formant_scale=speaker.vtl_scale * style.formant_shift.draw(rng), pause_s=style.pause_s.draw(rng),
        attack_s=style.attack_s.draw(rng))
