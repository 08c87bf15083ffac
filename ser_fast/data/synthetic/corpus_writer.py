"""``synthesize_corpus``: speakers, utterances and recording channel put together into a corpus on disk
that ``ser_fast.data.loaders.load_corpus(layout, root)`` reads."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
from tabulate import tabulate
from tqdm import tqdm

from ser_fast.data.audio import SAMPLE_RATE
from ser_fast.data.synthetic.channel import CONDITION_RATES, CONDITIONS, record
from ser_fast.data.synthetic.layouts import LAYOUTS, Turn, wav_path, write_annotations
from ser_fast.data.synthetic.prosody import EMOTION_STYLES, EMOTIONS, GENDERS, Speaker, draw_speaker
from ser_fast.data.synthetic.ratings import rate_dimensions
from ser_fast.data.synthetic.utterance import synthesize_utterance

logger = logging.getLogger(__name__)

# Seed-sequence tags: each kind of draw has its own stream, so adding draws to one never moves another.
SPEAKER_STREAM, ORDER_STREAM, UTTERANCE_STREAM, ANNOTATION_STREAM = range(4)
IEMOCAP_SESSIONS = 5


def synthesize_corpus(out_dir: str | os.PathLike, *, speakers: int = 10, per_class: int = 24, condition: str = "studio",
                      seed: int = 0, layout: str = "iemocap", progress: bool = False) -> Path:
    """Write a synthetic 4-class emotional speech corpus (neutral, happy, sad, angry); returns its root (``out_dir``),
    which also holds a README.txt with the generator's parameters.

    Args:
        out_dir: a new or empty folder (created if missing).
        speakers: number of speakers; they alternate F, M and pair up into sessions (speakers 2k-1 and 2k form
            Session k), so the "iemocap" layout needs an even number. More than 10 give sessions past IEMOCAP's five,
            which ser_fast's loader reads (a warning is logged).
        per_class: utterances per speaker and class.
        condition: the recording channel, one of ``CONDITIONS`` (see ``ser_fast.data.synthetic.channel``): "studio"
            (16 kHz), "telephone" (8 kHz, band-limited, mu-law) or "far-field" (reverberant room, 44.1 kHz). The same
            seed gives the same speakers and utterances in every condition; corpora with different conditions and
            seeds form a cross-corpus pair.
        seed: non-negative int; every file is a pure function of (seed, speaker, class, index, condition), so two
            calls with the same arguments write byte-identical files.
        layout: "iemocap" (the IEMOCAP release layout, ``load_corpus("iemocap", root)``) or "manifest"
            (``manifest.csv`` with path, label, speaker, session, gender; ``load_corpus("manifest", root)``).
        progress: show a tqdm progress bar.
    Raises:
        TypeError / ValueError naming the argument of the wrong type or out of range, and ValueError when ``out_dir``
        is a file or a non-empty folder. Nothing is written then.
    """
    _check_arguments(speakers, per_class, condition, seed, layout, progress)
    root = _checked_out_dir(out_dir)
    if layout == "iemocap" and speakers > 2 * IEMOCAP_SESSIONS:
        logger.warning("%d speakers make %d sessions; IEMOCAP has %d, and readers of its layout that look for "
                       "Session1..Session%d only will not see the rest", speakers, speakers // 2,
                       IEMOCAP_SESSIONS, IEMOCAP_SESSIONS)
    voices = [draw_speaker(i, GENDERS[i % 2], np.random.default_rng([seed, SPEAKER_STREAM, i]))
              for i in range(speakers)]
    turns = []
    with tqdm(total=speakers * len(EMOTIONS) * per_class, desc="synthesizing", unit="utt",
              disable=not progress) as bar:
        for voice in voices:
            turns += _speak(root, voice, per_class, condition, seed, layout, bar)
    write_annotations(root, layout, turns, np.random.default_rng([seed, ANNOTATION_STREAM]))
    _write_readme(root, voices, turns, per_class, condition, seed, layout)
    logger.info("wrote %d synthetic utterances (%s, %s layout) to %s", len(turns), condition, layout, root)
    return root


def _speak(root: Path, voice: Speaker, per_class: int, condition: str, seed: int, layout: str, bar: tqdm) -> list[Turn]:
    """All of one speaker's utterances, in an order shuffled so that turn numbers say nothing of the label."""
    emotions = np.repeat(np.arange(len(EMOTIONS)), per_class)
    np.random.default_rng([seed, ORDER_STREAM, voice.index]).shuffle(emotions)
    made_so_far = np.zeros(len(EMOTIONS), dtype=np.int64)
    turns = []
    for turn_index, emotion_index in enumerate(emotions):
        rng = np.random.default_rng([seed, UTTERANCE_STREAM, voice.index, emotion_index, made_so_far[emotion_index]])
        made_so_far[emotion_index] += 1
        emotion = EMOTIONS[emotion_index]
        spoken = synthesize_utterance(voice, emotion, rng, SAMPLE_RATE)
        samples, rate = record(spoken.waveform, SAMPLE_RATE, condition, rng)
        turn = Turn(session=voice.index // 2 + 1, gender=voice.gender, index=turn_index, emotion=emotion,
                    vad=rate_dimensions(voice, emotion, spoken.prosody, rng), duration_s=samples.size / rate)
        path = root / wav_path(layout, turn)
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), samples, rate, subtype="PCM_16", format="WAV")
        turns.append(turn)
        bar.update()
    return turns


def _checked_out_dir(out_dir: str | os.PathLike) -> Path:
    if not isinstance(out_dir, (str, os.PathLike)):
        raise TypeError(f"out_dir must be a str or a path, got {type(out_dir).__name__}")
    root = Path(out_dir)
    if root.exists() and not root.is_dir():
        raise ValueError(f"out_dir={str(root)!r} is a file; expected a folder (created if missing)")
    if root.is_dir() and any(root.iterdir()):
        raise ValueError(f"out_dir={str(root)!r} is not empty; expected a new or empty folder "
                         "(a corpus written over another would mix their files)")
    root.mkdir(parents=True, exist_ok=True)
    return root


def _check_arguments(speakers: int, per_class: int, condition: str, seed: int, layout: str, progress: bool) -> None:
    for name, value in (("speakers", speakers), ("per_class", per_class), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r}: expected one of {LAYOUTS}")
    if speakers < 2:
        raise ValueError(f"speakers={speakers}: expected at least 2 (one F, one M)")
    if layout == "iemocap" and speakers % 2:
        raise ValueError(f"speakers={speakers}: the iemocap layout needs an even number (one F and one M per session)")
    if per_class < 1:
        raise ValueError(f"per_class={per_class}: expected at least 1 utterance per speaker and class")
    if condition not in CONDITIONS:
        raise ValueError(f"condition={condition!r}: expected one of {CONDITIONS}")
    if seed < 0:
        raise ValueError(f"seed={seed}: expected a non-negative int")
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be a bool, got {type(progress).__name__}")


def _write_readme(root: Path, voices: Sequence[Speaker], turns: Sequence[Turn], per_class: int, condition: str,
                  seed: int, layout: str) -> None:
    speaker_rows = [(f"Ses{v.index // 2 + 1:02d}{v.gender}", v.gender, f"{v.f0_hz:.0f}", f"{v.vtl_scale:.3f}",
                     f"{v.rate_syl_s:.2f}", f"{v.level_db:+.1f}", f"{v.voice_quality:+.2f}") for v in voices]
    style_rows = [(name, f"{s.f0_shift_st.mean:+.1f}", f"{s.f0_range_st.mean:.1f}", f"{s.rate_factor.mean:.2f}",
                   f"{s.level_db.mean:+.1f}", f"{s.level_sd_db.mean:.1f}", f"{s.voice_quality.mean:+.2f}")
                  for name, s in EMOTION_STYLES.items()]
    text = "\n\n".join([
        "Synthetic emotional speech corpus written by ser_fast.data.synthetic.synthesize_corpus\n"
        "(a source-filter synthesizer: Rosenberg glottal pulses with jitter, shimmer and aspiration, "
        "cascade formant filters, prosody per emotion and per speaker). No recorded speech is involved.",
        f"seed={seed} speakers={len(voices)} per_class={per_class} condition={condition} layout={layout}\n"
        f"utterances={len(turns)} sample_rate={CONDITION_RATES[condition]} Hz, 16-bit PCM wav\n"
        f"classes: {', '.join(EMOTIONS)}",
        "Speakers:\n" + tabulate(speaker_rows, headers=["speaker", "gender", "F0 Hz", "formant scale", "syl/s",
                                                        "level dB", "voice quality"]),
        "Emotion styles (means; each is drawn per utterance with overlapping spreads):\n"
        + tabulate(style_rows, headers=["emotion", "F0 shift st", "F0 range st", "rate x", "level dB",
                                        "level sd dB", "voice quality"]),
    ])
    (root / "README.txt").write_text(text + "\n", encoding="utf-8")
