"""Reading audio for ser_fast: any file soundfile reads (and, where libsndfile recognises no format, any container
ffmpeg decodes: ``ser_fast.data.containers``), to mono float32 at the wanted rate. The header's sample rate
must be from ``MIN_SAMPLE_RATE`` (4 kHz) to ``MAX_SAMPLE_RATE`` (768 kHz), checked before any sample is decoded:
resampling a lower rate to 16 kHz multiplies the samples (a 40 KB file declaring 1 Hz would decode to 1.7 GB); 4 kHz
bounds that growth at 4x while admitting every telephone and speech corpus rate (8 kHz and up)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from ser_fast.data.containers import ContainerError, container_blocks, container_info
from ser_fast.frontend.constants import SAMPLE_RATE

MIN_SAMPLE_RATE = 4000
MAX_SAMPLE_RATE = 768000
_SHORT_CHUNK = re.compile(r"^\s*(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


class AudioError(ValueError):
    """An audio file that cannot be used (missing, unreadable, corrupt or empty); names the file."""


@dataclass(frozen=True)
class AudioInfo:
    """An audio file's header: ``samplerate`` in Hz, ``frames`` per channel (None where the container declares no
    length, e.g. a raw AAC stream), ``channels``, libsndfile's ``extra_info`` (its chunk log), and ``decoder``:
    ``"soundfile"``, or ``"ffmpeg"`` for a container libsndfile does not read."""

    samplerate: int
    frames: int | None
    channels: int
    extra_info: str = ""
    decoder: str = "soundfile"


def audio_info(path: str | Path) -> AudioInfo:
    """The header of an audio file; an AudioError naming the file if missing, not a regular file, or unreadable by
    both libsndfile and ffmpeg."""
    path = Path(path)
    problem = _not_a_regular_file(path)
    if problem:
        raise AudioError(f"{path}: {problem}")
    try:
        header = sf.info(native_name(path))
        info = AudioInfo(header.samplerate, header.frames, header.channels, header.extra_info or "")
    except (sf.LibsndfileError, RuntimeError, OSError) as error:
        try:
            found = container_info(path)
        except ContainerError as container_error:
            raise AudioError(f"{path}: not a readable audio file (libsndfile: {_reason(error)}; "
                             f"{container_error})") from None
        info = AudioInfo(found.samplerate, found.frames, found.channels, decoder="ffmpeg")
    if info.frames is not None and info.frames <= 0:
        raise AudioError(f"{path}: the file holds no audio samples")
    if not MIN_SAMPLE_RATE <= info.samplerate <= MAX_SAMPLE_RATE:
        raise AudioError(f"{path}: the header declares a sample rate of {info.samplerate} Hz; expected "
                         f"{MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz (a corrupt or mislabelled header?)")
    return info


def truncation_warning(path: str | Path, info: AudioInfo) -> str | None:
    """What to say about a file whose audio stops before its header says (a copy cut short), or None. libsndfile reads
    what is there and logs the shortfall as ``data : 32000 (should be 15978)``: the declared size, then what is held."""
    match = _SHORT_CHUNK.search(info.extra_info or "")
    if match is None or int(match[2]) >= int(match[1]):
        return None
    return (f"{Path(path)}: truncated: the header declares {int(match[1])} bytes of audio, the file holds "
            f"{int(match[2])}; labelled from the {100 * int(match[2]) / int(match[1]):.0f} % that is there")


def read_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, str | None]:
    """:func:`load_audio`, and a warning for a file that decodes but is damaged (truncated), else None."""
    if not isinstance(sample_rate, int) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive int, got {sample_rate!r}")
    path = Path(path)
    info = audio_info(path)
    rate = info.samplerate
    if info.decoder == "ffmpeg":
        mono = np.concatenate([np.zeros(0, np.float32), *audio_blocks(path, 1 << 20, info)])
    else:
        try:
            samples, rate = sf.read(native_name(path), dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, OSError) as error:
            raise AudioError(f"{path}: could not decode the audio ({_reason(error)})") from None
        mono = _mono(samples, path)
    if mono.size == 0:
        raise AudioError(f"{path}: the file holds no audio samples")
    if rate != sample_rate:
        mono = soxr.resample(mono, rate, sample_rate, quality="HQ").astype(np.float32, copy=False)
    return mono, truncation_warning(path, info)


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """``[num_samples]`` float32 in [-1, 1]: channels averaged, resampled with soxr (high quality)."""
    return read_audio(path, sample_rate)[0]


def audio_blocks(path: str | Path, block_frames: int, info: AudioInfo | None = None) -> Iterator[np.ndarray]:
    """The file as mono float32 blocks of ``block_frames`` frames at its own rate (about that many through ffmpeg),
    read one at a time (for files too long to decode whole); the same checks and errors as :func:`read_audio`.
    ``info``: the file's :func:`audio_info`, when the caller has it already."""
    path = Path(path)
    info = info or audio_info(path)
    if info.decoder == "ffmpeg":
        try:
            for samples in container_blocks(path, block_frames):
                yield _mono(samples, path)
        except ContainerError as error:
            raise AudioError(f"{path}: {error}") from None
        return
    try:
        for samples in sf.blocks(native_name(path), blocksize=block_frames, dtype="float32", always_2d=True):
            yield _mono(samples, path)
    except (sf.LibsndfileError, RuntimeError, OSError) as error:
        raise AudioError(f"{path}: could not decode the audio ({_reason(error)})") from None


def _mono(samples: np.ndarray, path: Path) -> np.ndarray:
    mono = samples.mean(axis=1, dtype=np.float32)
    if not np.isfinite(mono).all():
        raise AudioError(f"{path}: the audio holds NaN or infinite samples")
    return mono


def _not_a_regular_file(path: Path) -> str | None:
    if not os.path.lexists(path):
        return "no such audio file"
    if not os.path.exists(path):
        return "a symbolic link that leads nowhere (its target is missing, or the links form a loop)"
    if os.path.isdir(path):
        return "a folder, not an audio file"
    if not os.path.isfile(path):
        return "not a regular file (a pipe, a device or a socket); audio is read from regular files"
    return None


def _reason(error: Exception) -> str:
    """What went wrong, without soundfile's own copy of the file name (the message names it already).
    libsndfile answers "File does not exist or is not a regular file" for bytes in no format it knows;
    the file has been checked to be a regular file by then, so that is what it means."""
    text = getattr(error, "error_string", None) or str(error)
    if text.startswith("File does not exist or is not a regular file"):
        return "libsndfile recognises no audio format in it: random bytes, or a format it does not decode"
    return text


def native_name(path: Path) -> str | bytes:
    """The path as soundfile must get it: bytes on POSIX, where a file name need not be valid UTF-8
    (soundfile encodes a str strictly, and a name that reached Python as lone surrogates would fail)."""
    return str(path) if os.name == "nt" else os.fsencode(path)
