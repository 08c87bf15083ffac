"""Babble noise: several synthetic talkers at once, for ``NoiseBank``'s built-in "babble" type."""

from __future__ import annotations

import numpy as np

from ser_fast.data.synthetic.prosody import EMOTIONS, GENDERS, draw_speaker
from ser_fast.data.synthetic.source import rms
from ser_fast.data.synthetic.utterance import synthesize_utterance

SYNTHESIS_RATE = 16000


def babble_talkers(num_samples: int, rng: np.random.Generator, *, talkers: int = 6,
                   sample_rate: int = SYNTHESIS_RATE) -> np.ndarray:
    """``[num_samples]`` float64: ``talkers`` random speakers in random emotions, each talking
    continuously (utterances back to back from a random start) at a level within ±3 dB."""
    if sample_rate != SYNTHESIS_RATE:
        raise ValueError(f"babble is synthesised at {SYNTHESIS_RATE} Hz, got sample_rate={sample_rate}")
    mix = np.zeros(num_samples)
    for talker in range(talkers):
        speaker = draw_speaker(talker, GENDERS[int(rng.integers(len(GENDERS)))], rng)
        stream: list[np.ndarray] = []
        filled = 0
        while filled < num_samples + sample_rate:
            wave = synthesize_utterance(speaker, EMOTIONS[int(rng.integers(len(EMOTIONS)))], rng, sample_rate).waveform
            stream.append(wave)
            filled += len(wave)
        voice = np.concatenate(stream)
        start = int(rng.integers(sample_rate))
        segment = voice[start:start + num_samples]
        mix += segment * (10.0 ** (rng.uniform(-3.0, 3.0) / 20.0) / max(rms(segment), 1e-12))
    return mix
