"""Noise for robustness experiments: mixing at an exact SNR, five built-in reproducible noise types, folders of real
noise recordings (MUSAN, DEMAND, DNS, ...) with a seen/unseen split, and the evaluation grid of noise type × SNR."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import signal

from ser_fast.data.audio import SAMPLE_RATE, AudioError, audio_info, load_audio

logger = logging.getLogger(__name__)

BUILTIN_TYPES = ("white", "pink", "brown", "babble", "engine")
DEFAULT_SNRS_DB = (-5.0, 0.0, 5.0, 10.0, 20.0)
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".aiff", ".aif", ".au", ".mp3")


def _as_rng(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be a numpy Generator or an int seed, got {type(rng).__name__}")


def _as_signal(x, name: str) -> np.ndarray:
    array = np.asarray(x)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of samples, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"{name} must hold floating-point samples, got {array.dtype}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} holds NaN or infinite samples")
    return array


def mix_at_snr(speech, noise, snr_db: float, rng, *, protect_clipping: bool = False) -> np.ndarray:
    """``speech + g · noise`` (``[num_samples]``, in the speech's dtype) with ``g`` set so that
    ``10 log10(P(speech) / P(mixture − speech)) == snr_db``. The noise is circularly shifted by a random offset and
    tiled to the speech's length; the mixture is not rescaled, unless ``protect_clipping`` is set: then a mixture whose
    peak passes 1.0 is scaled down as a whole (speech and noise alike, so the SNR is unchanged).

    Args:
        speech: ``[num_samples]`` float samples, not silent.
        noise: ``[any length]`` float samples, not silent.
        snr_db: the target SNR in dB (finite).
        rng: a numpy Generator (or an int seed) for the shift.
    """
    speech = _as_signal(speech, "speech")
    noise = _as_signal(noise, "noise")
    if isinstance(snr_db, bool) or not isinstance(snr_db, (int, float, np.floating, np.integer)) or not np.isfinite(snr_db):
        raise ValueError(f"snr_db must be a finite number of dB, got {snr_db!r}")
    rng = _as_rng(rng)
    speech64 = speech.astype(np.float64)
    speech_power = np.mean(speech64**2)
    if speech_power == 0.0:
        raise ValueError("speech is silent (zero power): an SNR is undefined")
    offset = int(rng.integers(len(noise)))
    segment = noise.astype(np.float64)[(offset + np.arange(len(speech))) % len(noise)]
    noise_power = np.mean(segment**2)
    if noise_power == 0.0:
        raise ValueError("the noise is silent over the speech's length (zero power): an SNR is undefined")
    gain = np.sqrt(speech_power / (noise_power * 10.0 ** (float(snr_db) / 10.0)))
    mixture = speech64 + gain * segment
    if protect_clipping:
        peak = np.max(np.abs(mixture))
        if peak > 1.0:
            mixture /= peak / 0.999
    return mixture.astype(speech.dtype if speech.dtype != np.float16 else np.float32)


def measured_snr_db(speech, mixture) -> float:
    """``10 log10(P(speech) / P(mixture − speech))``, as the SNR of a mixture is checked."""
    speech = np.asarray(speech, dtype=np.float64)
    residual = np.asarray(mixture, dtype=np.float64) - speech
    return float(10.0 * np.log10(np.mean(speech**2) / np.mean(residual**2)))


@dataclass(frozen=True)
class NoiseCondition:
    """One cell of the evaluation grid: a noise type at an SNR, or clean speech (``kind`` None)."""

    kind: str | None
    snr_db: float | None

    @property
    def name(self) -> str:
        return "clean" if self.kind is None else f"{self.kind}@{self.snr_db:g}dB"


def noise_grid(kinds: Sequence[str], snrs_db: Sequence[float] = DEFAULT_SNRS_DB, *,
               include_clean: bool = True) -> Iterator[NoiseCondition]:
    """Clean first (if asked), then every noise type × SNR, in that order."""
    if isinstance(kinds, str) or not kinds:
        raise ValueError(f"kinds must be a non-empty sequence of noise types, got {kinds!r}")
    if not snrs_db or not all(np.isfinite(s) for s in snrs_db):
        raise ValueError(f"snrs_db must be a non-empty sequence of finite dB values, got {snrs_db!r}")
    if include_clean:
        yield NoiseCondition(None, None)
    for kind in kinds:
        for snr in snrs_db:
            yield NoiseCondition(kind, float(snr))


class NoiseBank:
    """Noise signals by type. ``NoiseBank()`` has the five built-in types (white, pink, brown, babble, engine), drawn
    from the caller's Generator (a seed reproduces them); ``NoiseBank.from_dir`` serves recordings by folder."""

    def __init__(self, files: dict[str, list[Path]] | None = None, sample_rate: int = SAMPLE_RATE):
        self._files = {kind: sorted(paths) for kind, paths in (files or {}).items() if paths}
        self.sample_rate = sample_rate

    @property
    def types(self) -> list[str]:
        return sorted(self._files) if self._files else list(BUILTIN_TYPES)

    @property
    def files(self) -> dict[str, list[Path]]:
        return {kind: list(paths) for kind, paths in self._files.items()}

    @classmethod
    def from_dir(cls, root: str | Path, sample_rate: int = SAMPLE_RATE) -> NoiseBank:
        """Every readable audio file below ``root``; its type is its first-level subfolder's name
        (files directly in ``root`` are type "noise"). Unreadable files are logged and skipped."""
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"noise folder {root} does not exist")
        files: dict[str, list[Path]] = {}
        for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES):
            try:
                audio_info(path)
            except AudioError as error:
                logger.warning("noise bank: skipping %s", error)
                continue
            relative = path.relative_to(root)
            kind = relative.parts[0] if len(relative.parts) > 1 else "noise"
            files.setdefault(kind, []).append(path)
        if not files:
            raise FileNotFoundError(f"no readable audio files ({', '.join(AUDIO_SUFFIXES)}) below {root}")
        return cls(files, sample_rate)

    def split(self, unseen_fraction: float = 0.3, seed: int = 0) -> tuple[NoiseBank, NoiseBank]:
        """Seen and unseen banks with disjoint files: of each type's files, a seeded random
        ``unseen_fraction`` (at least one when the type has two or more files) is held out."""
        if not self._files:
            raise ValueError("the built-in bank generates its noise; a seen/unseen split needs recordings (from_dir)")
        if not 0.0 < unseen_fraction < 1.0:
            raise ValueError(f"unseen_fraction must be in (0, 1), got {unseen_fraction!r}")
        rng = np.random.default_rng(seed)
        seen: dict[str, list[Path]] = {}
        unseen: dict[str, list[Path]] = {}
        for kind, paths in self._files.items():
            order = rng.permutation(len(paths))
            held = max(1, round(unseen_fraction * len(paths))) if len(paths) > 1 else 0
            unseen[kind] = [paths[i] for i in order[:held]]
            seen[kind] = [paths[i] for i in order[held:]]
        return NoiseBank(seen, self.sample_rate), NoiseBank(unseen, self.sample_rate)

    def sample(self, kind: str, num_samples: int, rng) -> np.ndarray:
        """``[num_samples]`` float32 noise (built-in types at RMS 0.1; recordings as recorded, cut at random, tiled)."""
        if kind not in self.types:
            raise ValueError(f"unknown noise type {kind!r}; this bank has {self.types}")
        if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples <= 0:
            raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
        rng = _as_rng(rng)
        if not self._files:
            return _BUILTIN[kind](int(num_samples), rng, self.sample_rate)
        paths = self._files[kind]
        audio = _cached_audio(paths[int(rng.integers(len(paths)))], self.sample_rate)
        start = int(rng.integers(len(audio)))
        return audio[(start + np.arange(num_samples)) % len(audio)]


@lru_cache(maxsize=64)
def _cached_audio(path: Path, sample_rate: int) -> np.ndarray:
    return load_audio(path, sample_rate)


def _unit_rms(x: np.ndarray, rms: float = 0.1) -> np.ndarray:
    return (x * (rms / max(np.sqrt(np.mean(x**2)), 1e-12))).astype(np.float32)


def _coloured(n: int, rng: np.random.Generator, exponent: float) -> np.ndarray:
    """Noise with power ∝ 1/f^exponent, shaped in the frequency domain (no DC)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.arange(len(spectrum), dtype=np.float64)
    freqs[0] = np.inf
    return _unit_rms(np.fft.irfft(spectrum / freqs ** (exponent / 2.0), n))


def _engine(n: int, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """A running engine with mains hum: harmonics of a slowly wandering firing rate, amplitude
    modulation, a low-passed rumble, and 50/60 Hz hum harmonics."""
    t = np.arange(n) / sample_rate
    base = rng.uniform(25.0, 90.0)
    wander = 1.0 + 0.03 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t + rng.uniform(0, 2 * np.pi))
    phase = 2 * np.pi * np.cumsum(base * wander) / sample_rate
    harmonics = sum(np.sin(h * phase + rng.uniform(0, 2 * np.pi)) / h**0.7 for h in range(1, 16)
                    if h * base * 1.03 < sample_rate / 2)
    modulation = 1.0 + 0.2 * np.sin(2 * np.pi * base / 2 * t)
    sos = signal.butter(4, 300.0, "lowpass", fs=sample_rate, output="sos")
    rumble = signal.sosfilt(sos, rng.standard_normal(n))
    mains = rng.choice([50.0, 60.0])
    hum = sum(np.sin(2 * np.pi * mains * h * t) / h for h in (1, 2, 3, 5))
    mix = harmonics * modulation / np.std(harmonics) + 0.5 * rumble / np.std(rumble) + 0.3 * hum / np.std(hum)
    return _unit_rms(mix)


def _babble(n: int, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """Several talkers at once: a sum of synthetic utterances of random speakers and emotions."""
    from ser_fast.data.synthetic import babble_talkers

    return _unit_rms(babble_talkers(n, rng, sample_rate=sample_rate))


# Each built-in type: (num_samples, rng, sample_rate) -> float32 noise at RMS 0.1.
_BUILTIN = {"white": lambda n, rng, sample_rate: _unit_rms(rng.standard_normal(n)),
            "pink": lambda n, rng, sample_rate: _coloured(n, rng, 1.0),
            "brown": lambda n, rng, sample_rate: _coloured(n, rng, 2.0), "babble": _babble, "engine": _engine}
