"""Reading audio for ser_fast: any file soundfile reads, to mono float32 at the wanted rate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE = 16000


class AudioError(ValueError):
    """An audio file that cannot be used (missing, unreadable, corrupt or empty); names the file."""


def audio_info(path: str | Path) -> sf._SoundFileInfo:
    """The header of an audio file; an AudioError that names the file if it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such audio file")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as error:
        raise AudioError(f"{path}: not a readable audio file ({error})") from None
    if info.frames <= 0:
        raise AudioError(f"{path}: the file holds no audio samples")
    return info


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """``[num_samples]`` float32 in [-1, 1]: channels averaged, resampled with soxr (high quality)."""
    if not isinstance(sample_rate, int) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive int, got {sample_rate!r}")
    path = Path(path)
    audio_info(path)
    try:
        samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as error:
        raise AudioError(f"{path}: could not decode the audio ({error})") from None
    if samples.shape[0] == 0:
        raise AudioError(f"{path}: the file holds no audio samples")
    mono = samples.mean(axis=1, dtype=np.float32)
    if not np.isfinite(mono).all():
        raise AudioError(f"{path}: the audio holds NaN or infinite samples")
    if rate != sample_rate:
        mono = soxr.resample(mono, rate, sample_rate, quality="HQ").astype(np.float32, copy=False)
    return mono
