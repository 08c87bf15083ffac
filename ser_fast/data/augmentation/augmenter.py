"""Augmenting a training waveform: the augmentations an ``AugmentConfig`` names, each applied with its probability,
in the order a recording chain has them (the talker's speed, the room, the noise in it, the line or codec, the
recording level).

Every draw comes from a Generator seeded by (run seed, epoch, utterance, augmentation), so an epoch's augmented audio
is the same however the run was interrupted and resumed, and turning one augmentation on or off changes no other's
draws. The signal processing is one call each into scipy, soxr, pyroomacoustics (through ``RoomPool``) and ser_fast's
own ``NoiseBank`` and telephone line (the synthetic corpus' recording chain). audiomentations does these too, but it
draws from Python's process-wide ``random`` module (so a per-utterance seed would mean reseeding global state) and
pins soxr below 1.0, a core dependency here; torch-audiomentations brings librosa and numba."""

from __future__ import annotations

import functools

import numpy as np
import soxr
from scipy.signal import butter, fftconvolve, sosfilt

from ser_fast.data.augmentation.config import AugmentConfig
from ser_fast.data.augmentation.rooms import PYROOMACOUSTICS_HINT, RoomPool, rooms_simulable
from ser_fast.data.noise import NoiseBank, mix_at_snr
from ser_fast.data.synthetic.channel import telephone_line
from ser_fast.frontend.constants import SAMPLE_RATE

AUGMENT_STREAM = 0xA06  # keeps augmentation draws apart from every other use of the run seed
ORDER = ("speed", "reverb", "noise", "band", "gain")
TELEPHONE_RATE = 8000


class Augmenter:
    """``augmenter(wave, epoch, item)``: the augmented copy of a mono 16 kHz float waveform (float32; as long as the
    input except under ``speed``), and ``augmenter.applied(epoch, item)`` names what it applied."""

    def __init__(self, config: AugmentConfig, *, seed: int, noise: NoiseBank | None = None,
                 rooms: RoomPool | None = None) -> None:
        if not isinstance(config, AugmentConfig):
            raise TypeError(f"config must be an AugmentConfig, got {type(config).__name__}")
        self.config, self.seed = config, int(seed)
        self.noise = noise if noise is not None else NoiseBank()
        self._rooms = rooms

    @classmethod
    def from_config(cls, config: AugmentConfig, seed: int) -> Augmenter:
        """With the config's noise and room folders, where it names them (the built-in noises and simulated rooms
        where not)."""
        noise = NoiseBank.from_dir(config.noise_dir) if config.noise_dir and "noise" in config.kinds else None
        rooms = RoomPool.from_dir(config.rir_dir) if config.rir_dir and "reverb" in config.kinds else None
        if "reverb" in config.kinds and rooms is None and not rooms_simulable():
            raise ImportError(f"the reverb augmentation simulates rooms with pyroomacoustics; {PYROOMACOUSTICS_HINT}, "
                              "or give recorded impulse responses (rir_dir)")
        return cls(config, seed=seed, noise=noise, rooms=rooms)

    @property
    def rooms(self) -> RoomPool:
        """The impulse responses: given, or simulated on first use (a seeded pool)."""
        if self._rooms is None:
            self._rooms = RoomPool.simulated(self.config.rt60_s, self.seed)
        return self._rooms

    def applied(self, epoch: int, item: int) -> tuple[str, ...]:
        return tuple(kind for kind in ORDER if kind in self.config.kinds and self._draws(kind, epoch, item)[0])

    def __call__(self, wave: np.ndarray, epoch: int, item: int) -> np.ndarray:
        wave = np.asarray(wave, dtype=np.float64)
        if wave.ndim != 1 or wave.size == 0:
            raise ValueError(f"wave must be a non-empty mono waveform [samples], got shape {wave.shape}")
        for kind in ORDER:
            if kind not in self.config.kinds:
                continue
            applies, rng = self._draws(kind, epoch, item)
            if applies:
                wave = getattr(self, f"_{kind}")(wave, rng)
        return wave.astype(np.float32)

    def _draws(self, kind: str, epoch: int, item: int) -> tuple[bool, np.random.Generator]:
        rng = np.random.default_rng([self.seed, AUGMENT_STREAM, epoch, item, ORDER.index(kind)])
        return bool(rng.random() < getattr(self.config, f"{kind}_p")), rng

    def _speed(self, wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        factor = rng.uniform(*self.config.speed)
        # Played `factor` times faster: the samples of a 16 kHz signal read as if recorded at 16 kHz / factor.
        return soxr.resample(wave, SAMPLE_RATE, SAMPLE_RATE / factor, quality="HQ")

    def _reverb(self, wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return fftconvolve(wave, self.rooms.draw(rng))[:wave.size]

    def _noise(self, wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if not np.any(wave):
            return wave  # digital silence has no SNR
        kind = self.noise.types[int(rng.integers(len(self.noise.types)))]
        noise = self.noise.sample(kind, wave.size, rng)
        return mix_at_snr(wave, noise, rng.uniform(*self.config.snr_db), rng)

    def _band(self, wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        band = self.config.bands[int(rng.integers(len(self.config.bands)))]
        if band == "telephone":
            line = soxr.resample(telephone_line(wave, SAMPLE_RATE, rng), TELEPHONE_RATE, SAMPLE_RATE, quality="HQ")
            return np.pad(line[:wave.size], (0, max(0, wave.size - line.size)))
        return sosfilt(_low_pass(round(rng.uniform(*self.config.codec_cutoff_hz))), wave)

    def _gain(self, wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return wave * 10.0 ** (rng.uniform(*self.config.gain_db) / 20.0)


@functools.lru_cache(maxsize=64)
def _low_pass(cutoff_hz: int) -> np.ndarray:
    return butter(8, cutoff_hz, btype="lowpass", fs=SAMPLE_RATE, output="sos")
