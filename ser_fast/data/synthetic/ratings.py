"""How annotators would rate a synthetic utterance on valence, arousal and dominance (IEMOCAP's 1-5 scales).

Each emotion sits around the class means IEMOCAP's annotators gave, and the rating moves with the utterance's own
prosody, as listeners' ratings do (Scherer 2003; Banse & Scherer 1996): arousal with F0 level, vocal effort, speaking
rate and pitch range; valence with the smile (raised formants) and the phrase's rise-fall; dominance with effort and a
pressed voice. So a regression model can learn the ratings from the audio within a class too, not only the class
means. Each rating then gets annotator noise and IEMOCAP's half-point steps (means of two integer ratings)."""

from __future__ import annotations

import math

import numpy as np

from ser_fast.data.synthetic.prosody import EMOTION_STYLES, Speaker, Spread, UtteranceProsody

SCALE = (1.0, 5.0)
CLASS_MEANS = {"neutral": (3.0, 2.6, 2.9), "happy": (4.0, 3.3, 3.1), "sad": (2.0, 2.2, 2.3), "angry": (1.8, 3.9, 3.9)}
PROSODY_SD = 0.4  # how far one standard deviation of the utterance's cues moves a rating
ANNOTATOR_SD = 0.25
STEP = 0.5


def rate_dimensions(speaker: Speaker, emotion: str, prosody: UtteranceProsody,
                    rng: np.random.Generator) -> tuple[float, float, float]:
    """(valence, arousal, dominance) on 1-5 for an utterance of ``speaker`` in ``emotion`` spoken with ``prosody``:
    the class means moved by the utterance's cues, each a z-score of what the emotion's style drew (relative to the
    speaker's habits), plus annotator noise, clipped and rounded to half points."""
    style = EMOTION_STYLES[emotion]
    f0 = _z(12 * math.log2(prosody.f0_hz / speaker.f0_hz), style.f0_shift_st)
    effort = _z(prosody.level_db - speaker.level_db, style.level_db)
    rate = _z(prosody.rate_syl_s / speaker.rate_syl_s, style.rate_factor)
    pitch_range = _z(prosody.f0_range_st, style.f0_range_st)
    smile = _z(prosody.formant_scale / speaker.vtl_scale, style.formant_shift)
    rise_fall = _z(prosody.hat_weight, style.hat_weight)
    pressed = _z(prosody.voice_quality - speaker.voice_quality, style.voice_quality)
    # Each cue sum over n independent unit z-scores is divided by sqrt(n): one standard deviation moves PROSODY_SD.
    cues = np.array([(smile + rise_fall) / math.sqrt(2), (f0 + effort + rate + pitch_range) / 2,
                     (effort + pressed) / math.sqrt(2)])
    values = np.asarray(CLASS_MEANS[emotion]) + PROSODY_SD * cues + rng.normal(0.0, ANNOTATOR_SD, 3)
    valence, arousal, dominance = (float(x) for x in np.round(np.clip(values, *SCALE) / STEP) * STEP)
    return valence, arousal, dominance


def _z(value: float, spread: Spread) -> float:
    return (value - spread.mean) / spread.sd
