"""Kaldi's analysis windows and triangular Mel filters, for the torch path (the C++ core builds its own), built in the
arithmetic Kaldi uses (windows in float64, Mel weights in float32) so that both paths agree to rounding."""

from __future__ import annotations

import functools

import numpy as np

from ser_fast.frontend.options import FbankOptions


def mel_scale(hz: np.ndarray | float) -> np.ndarray:
    """Kaldi's Mel scale, 1127 ln(1 + f / 700), in float32."""
    hz = np.asarray(hz, dtype=np.float32)
    return np.float32(1127.0) * np.log(np.float32(1.0) + hz / np.float32(700.0))


@functools.lru_cache(maxsize=32)
def window(opts: FbankOptions) -> np.ndarray:
    """The analysis window, ``[window_size]`` float32."""
    n = opts.window_size
    x = 2.0 * np.pi / (n - 1) * np.arange(n, dtype=np.float64)
    kind = opts.window_type
    if kind == "hanning":
        w = 0.5 - 0.5 * np.cos(x)
    elif kind == "sine":
        w = np.sin(0.5 * x)
    elif kind == "hamming":
        w = 0.54 - 0.46 * np.cos(x)
    elif kind == "povey":
        w = (0.5 - 0.5 * np.cos(x)) ** 0.85
    elif kind == "rectangular":
        w = np.ones(n)
    else:
        b = opts.blackman_coeff
        w = b - 0.5 * np.cos(x) + (0.5 - b) * np.cos(2.0 * x)
    return w.astype(np.float32)


@functools.lru_cache(maxsize=32)
def mel_banks(opts: FbankOptions) -> np.ndarray:
    """Dense Mel weights ``[padded_window_size // 2, num_mel_bins]`` float32 (Kaldi skips Nyquist). Raises ValueError
    when a filter covers no FFT bin (too many bins for the FFT size)."""
    padded = opts.padded_window_size
    num_fft_bins = padded // 2
    bin_width = np.float32(opts.sample_rate) / np.float32(padded)
    mel_low = mel_scale(opts.low_freq)
    mel_high = mel_scale(opts.effective_high_freq)
    delta = (mel_high - mel_low) / np.float32(opts.num_mel_bins + 1)
    mel = mel_scale(bin_width * np.arange(num_fft_bins, dtype=np.float32))
    weights = np.zeros((num_fft_bins, opts.num_mel_bins), dtype=np.float32)
    for b in range(opts.num_mel_bins):
        left = mel_low + np.float32(b) * delta
        center = mel_low + np.float32(b + 1) * delta
        right = mel_low + np.float32(b + 2) * delta
        inside = (mel > left) & (mel < right)
        if not inside.any():
            raise ValueError(f"num_mel_bins={opts.num_mel_bins} is too large for a {padded}-point FFT: Mel filter "
                             f"{b} covers no FFT bin (use fewer bins, a longer frame or a wider frequency range)")
        rising = (mel - left) / (center - left)
        falling = (right - mel) / (right - center)
        weights[:, b] = np.where(inside, np.where(mel <= center, rising, falling), np.float32(0.0))
    return weights
