"""Reading audio for ser_fast: any file soundfile reads, to mono float32 at the wanted rate.

Limits, checked on the header before any sample is decoded: a sample rate from ``MIN_SAMPLE_RATE``
(4 kHz) to ``MAX_SAMPLE_RATE`` (768 kHz). Resampling a lower rate to 16 kHz multiplies the samples, and
a 40 KB file declaring 1 Hz would decode to 1.7 GB; 4 kHz bounds that growth at 4x while admitting
every telephone and speech corpus rate (8 kHz and up).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE = 16000
MIN_SAMPLE_RATE = 4000
MAX_SAMPLE_RATE = 768000


class AudioError(ValueError):
    """An audio file that cannot be used (missing, unreadable, corrupt or empty); names the file."""


def audio_info(path: str | Path) -> sf._SoundFileInfo:
    """The header of an audio file; an AudioError that names the file if it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such audio file")
    try:
        info = sf.info(_native_name(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as error:
        raise AudioError(f"{path}: not a readable audio file ({_reason(error)})") from None
    if info.frames <= 0:
        raise AudioError(f"{path}: the file holds no audio samples")
    if not MIN_SAMPLE_RATE <= info.samplerate <= MAX_SAMPLE_RATE:
        raise AudioError(f"{path}: the header declares a sample rate of {info.samplerate} Hz; expected "
                         f"{MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz (a corrupt or mislabelled header?)")
    return info


def _reason(error: Exception) -> str:
    """What went wrong, without soundfile's own copy of the file name (the message names it already)."""
    return getattr(error, "error_string", None) or str(error)


def _native_name(path: Path) -> str | bytes:
    """The path as soundfile must get it: bytes on POSIX, where a file name need not be valid UTF-8
    (soundfile encodes a str strictly, and a name that reached Python as lone surrogates would fail)."""
    return str(path) if os.name == "nt" else os.fsencode(path)


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """``[num_samples]`` float32 in [-1, 1]: channels averaged, resampled with soxr (high quality)."""
    if not isinstance(sample_rate, int) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive int, got {sample_rate!r}")
    path = Path(path)
    audio_info(path)
    try:
        samples, rate = sf.read(_native_name(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as error:
        raise AudioError(f"{path}: could not decode the audio ({_reason(error)})") from None
    if samples.shape[0] == 0:
        raise AudioError(f"{path}: the file holds no audio samples")
    mono = samples.mean(axis=1, dtype=np.float32)
    if not np.isfinite(mono).all():
        raise AudioError(f"{path}: the audio holds NaN or infinite samples")
    if rate != sample_rate:
        mono = soxr.resample(mono, rate, sample_rate, quality="HQ").astype(np.float32, copy=False)
    return mono
