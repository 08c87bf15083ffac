"""Filterbank options: Kaldi's names and meanings, validated once at the boundary."""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from typing import Any

import numpy as np
import torch

WINDOW_TYPES = ("povey", "hamming", "hanning", "rectangular", "blackman", "sine")
MAX_WINDOW = 1 << 16
# The FFT handles every prime factor of a size with a direct DFT of that size: fine for the sizes real
# frame lengths give (400 = 2^4 5^2, 551 = 19 * 29), quadratic for a large prime.
MAX_PRIME_FACTOR = 1021
# Dither is Gaussian noise of this standard deviation, on the samples' own scale (Kaldi's default is 1
# on int16-range samples). Far larger values overflow the float32 frame power and gave all-NaN features.
MAX_DITHER = 1e6
_FLOAT_FIELDS = ("sample_rate", "frame_length_ms", "frame_shift_ms", "dither", "preemph_coeff", "blackman_coeff",
                 "low_freq", "high_freq", "energy_floor")


def _kaldi_samples(sample_rate: float, ms: float) -> float:
    """sample_rate * 0.001 * ms in float32, as Kaldi computes frame sizes (inf when it overflows)."""
    with np.errstate(over="ignore"):
        return float(np.float32(sample_rate) * np.float32(0.001) * np.float32(ms))


def largest_prime_factor(n: int) -> int:
    largest, p = 1, 2
    while p * p <= n:
        while n % p == 0:
            largest, n = p, n // p
        p += 1
    return max(largest, n)


@dataclasses.dataclass(frozen=True)
class FbankOptions:
    """Options of :func:`ser_fast.fbank`, as in Kaldi's ``compute-fbank-feats``. Unlike Kaldi's defaults: ``dither`` is
    0 (deterministic features) and ``num_mel_bins`` is 80 (DSNet's input). ``htk_compat`` and VTLN are unsupported."""

    sample_rate: float = 16000.0
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    dither: float = 0.0
    preemph_coeff: float = 0.97
    remove_dc_offset: bool = True
    window_type: str = "povey"
    blackman_coeff: float = 0.42
    round_to_power_of_two: bool = True
    snip_edges: bool = True
    num_mel_bins: int = 80
    low_freq: float = 20.0
    high_freq: float = 0.0
    use_energy: bool = False
    energy_floor: float = 0.0
    raw_energy: bool = True
    use_log_fbank: bool = True
    use_power: bool = True

    def __post_init__(self) -> None:
        # numpy scalars (np.float32(16000), np.int64(80)) are numbers too; store them as Python's.
        for name in _FLOAT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
                object.__setattr__(self, name, float(value))
        if isinstance(self.num_mel_bins, numbers.Integral) and not isinstance(self.num_mel_bins, (bool, np.bool_)):
            object.__setattr__(self, "num_mel_bins", int(self.num_mel_bins))
        self.validate()

    # Kaldi computes these sizes in float32; so do we, so that 22.05 kHz gives Kaldi's 551 samples.
    @functools.cached_property
    def window_size(self) -> int:
        return int(_kaldi_samples(self.sample_rate, self.frame_length_ms))

    @functools.cached_property
    def window_shift(self) -> int:
        return int(_kaldi_samples(self.sample_rate, self.frame_shift_ms))

    @property
    def padded_window_size(self) -> int:
        n = self.window_size
        return 1 << (n - 1).bit_length() if self.round_to_power_of_two else n

    @property
    def feature_dim(self) -> int:
        return self.num_mel_bins + int(self.use_energy)

    @property
    def nyquist(self) -> float:
        return 0.5 * self.sample_rate

    @property
    def effective_high_freq(self) -> float:
        return self.high_freq if self.high_freq > 0 else self.nyquist + self.high_freq

    def num_frames(self, num_samples: int) -> int:
        """Frames Kaldi extracts from ``num_samples`` samples (0 when a snipped signal is too short)."""
        return int(self.num_frames_of(torch.tensor(num_samples, dtype=torch.int64)))

    def num_frames_of(self, lengths: torch.Tensor) -> torch.Tensor:
        """:meth:`num_frames` of every length in an int64 tensor, at once."""
        shift, length = self.window_shift, self.window_size
        if self.snip_edges:
            return ((lengths - length).clamp(min=-1) // shift + 1).clamp(min=0)
        return (lengths + shift // 2) // shift

    def first_sample(self, frame: int | torch.Tensor) -> int | torch.Tensor:
        """The first sample of frame ``frame`` (negative before the signal starts, without snip_edges)."""
        shift = self.window_shift
        if self.snip_edges:
            return frame * shift
        return frame * shift + shift // 2 - self.window_size // 2

    def frame_indices(self, num_frames: int, lengths: torch.Tensor) -> torch.Tensor:
        """``[B, num_frames, window_size]``: the sample index of every (item, frame, sample), reflected into each item
        as Kaldi does where a frame reaches past its ends (the signal is extended symmetrically with period 2n: -1 -> 0,
        n -> n - 1). ``lengths [B]`` int64 samples; frames past an item's own count index somewhere inside it."""
        if isinstance(num_frames, bool) or not isinstance(num_frames, (int, torch.SymInt)) or num_frames < 0:
            raise ValueError(f"frame_indices: num_frames must be an int >= 0, got {num_frames!r}")
        if not isinstance(lengths, torch.Tensor) or lengths.dim() != 1 or lengths.dtype != torch.int64:
            raise ValueError("frame_indices: lengths must be a 1-D int64 tensor of sample counts")
        device = lengths.device
        starts = self.first_sample(torch.arange(num_frames, device=device))
        idx = starts[:, None] + torch.arange(self.window_size, device=device)[None, :]  # [T, L]
        n = lengths.clamp(min=1)[:, None, None]  # [B, 1, 1]
        idx = torch.remainder(idx[None], 2 * n)
        return torch.where(idx >= n, 2 * n - 1 - idx, idx)

    def validate(self) -> None:
        def require(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(message)

        for name in _FLOAT_FIELDS:
            value = getattr(self, name)
            require(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
                    f"{name}={value!r}: expected a finite number")
        require(0 < self.sample_rate <= 1e7, f"sample_rate={self.sample_rate!r}: expected a positive number of Hz (<= 1e7)")
        shift = _kaldi_samples(self.sample_rate, self.frame_shift_ms)
        require(self.frame_shift_ms > 0 and 1 <= shift <= 2**31 - 1,
                f"frame_shift_ms={self.frame_shift_ms!r}: expected a shift of at least one sample (and below 2^31)")
        size = _kaldi_samples(self.sample_rate, self.frame_length_ms)
        require(self.frame_length_ms > 0 and 2 <= size <= MAX_WINDOW,
                f"frame_length_ms={self.frame_length_ms!r} gives {size:g} samples at {self.sample_rate:g} Hz; "
                f"expected 2 to {MAX_WINDOW}")
        prime = largest_prime_factor(self.padded_window_size)
        require(prime <= MAX_PRIME_FACTOR,
                f"an FFT of {self.padded_window_size} points has the prime factor {prime} (> {MAX_PRIME_FACTOR}), "
                "which the FFT would do in quadratic time; use round_to_power_of_two=True or a frame length "
                "whose sample count has smaller prime factors")
        require(0.0 <= self.preemph_coeff <= 1.0, f"preemph_coeff={self.preemph_coeff!r}: expected a value in [0, 1]")
        require(0 <= self.dither <= MAX_DITHER,
                f"dither={self.dither!r}: expected 0 to {MAX_DITHER:g} (the noise's standard deviation on the samples' "
                "scale; Kaldi's default is 1 for int16-range samples)")
        require(self.energy_floor >= 0, f"energy_floor={self.energy_floor!r}: expected >= 0")
        require(self.window_type in WINDOW_TYPES,
                f"window_type={self.window_type!r}: expected one of {', '.join(WINDOW_TYPES)}")
        fft_bins = self.padded_window_size // 2
        require(isinstance(self.num_mel_bins, int) and not isinstance(self.num_mel_bins, bool)
                and 3 <= self.num_mel_bins <= fft_bins,
                f"num_mel_bins={self.num_mel_bins!r}: expected an integer from 3 to {fft_bins} (the FFT's "
                f"{self.padded_window_size} points give {fft_bins} frequency bins; a Mel bin needs at least one)")
        high = self.effective_high_freq
        require(0 <= self.low_freq < self.nyquist and 0 < high <= self.nyquist and high > self.low_freq,
                f"low_freq={self.low_freq!r} and high_freq={self.high_freq!r} (effective {high}): expected "
                f"0 <= low_freq < high_freq <= Nyquist ({self.nyquist} Hz); a negative high_freq is an "
                "offset from Nyquist")
        for name in ("remove_dc_offset", "round_to_power_of_two", "snip_edges", "use_energy", "raw_energy",
                     "use_log_fbank", "use_power"):
            require(isinstance(getattr(self, name), bool), f"{name}={getattr(self, name)!r}: expected a bool")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FbankOptions:
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown filterbank options {sorted(unknown)}")
        return cls(**values)

    def to_cpp(self) -> Any:
        from ser_fast._extension import extension

        cpp = extension().FbankOptions()
        for name, value in self.to_dict().items():
            setattr(cpp, name, value)
        return cpp
