"""Decoding and checking the recognizer's inputs: files (any format soundfile reads, PyAV where it cannot:
``ser_fast.data.audio``), numpy arrays and torch tensors, to mono float32 at 16 kHz; and the windows a long input is
classified in. Every bad input is named, with what is wrong."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ser_fast.data.audio import AudioError, audio_info, read_audio
from ser_fast.frontend.constants import MIN_SAMPLES, SAMPLE_RATE
from ser_fast.frontend.module import resample
from ser_fast.inference.streaming import needs_streaming

MAX_SEGMENTED_SECONDS = 3 * 3600.0  # 690 MB of float32 samples at 16 kHz
SILENCE_DBFS = -90.0  # peak below this (about 1 LSB of 16-bit audio is -90.3 dBFS) counts as silence
MAX_CHANNELS = 8

AudioInput = str | os.PathLike | np.ndarray | torch.Tensor


class AudioInputError(AudioError):
    """An input that cannot be classified (missing, unreadable, empty, non-finite, too short, silent)."""


def decode_audio(source: str | os.PathLike) -> tuple[np.ndarray, float, str | None]:
    """A file as mono float32 at 16 kHz, its duration in seconds, and a warning when it decodes but is damaged
    (truncated), else None. Raises :class:`AudioInputError` naming the file when it is missing, unreadable, empty or
    non-finite. A function of the path only, so DataLoader workers can call it."""
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source must be a path (str or os.PathLike), got {type(source).__name__}")
    try:
        wave, warning = read_audio(source, SAMPLE_RATE)
    except AudioError as error:
        raise AudioInputError(str(error)) from None
    return wave, len(wave) / SAMPLE_RATE, warning


def check_waveform(wave: np.ndarray, source: str) -> str | None:
    """Why a decoded mono 16 kHz waveform cannot be classified, or None when it can: empty, non-finite samples, shorter
    than one 25 ms frame (400 samples), or silent (peak below ``SILENCE_DBFS`` = -90 dBFS; all zeros included)."""
    if wave.size and not np.isfinite(wave).all():
        return f"{source}: holds NaN or infinite samples"
    return check_length_and_level(wave.size, float(np.abs(wave).max()) if wave.size else 0.0, source)


def check_length_and_level(num_samples: int, peak: float, source: str) -> str | None:
    """:func:`check_waveform`'s rules for a streamed file, known by its length at 16 kHz and its peak."""
    if num_samples == 0:
        return f"{source}: empty (no samples)"
    if num_samples < MIN_SAMPLES:
        return (f"{source}: too short ({num_samples} samples = {1000 * num_samples / SAMPLE_RATE:.1f} ms at 16 kHz; "
                f"at least one 25 ms frame, {MIN_SAMPLES} samples, is needed)")
    if peak < 10 ** (SILENCE_DBFS / 20):
        level = "all samples are zero" if peak == 0 else f"peak {20 * math.log10(peak):.1f} dBFS"
        return f"{source}: silent ({level}; below {SILENCE_DBFS:g} dBFS)"
    return None


@dataclass
class DecodedInput:
    """An input on its way through predict: its waveform (None once it has an error)."""

    source: str
    wave: np.ndarray | None
    duration_s: float | None
    error: str | None = None
    windows: list[tuple[int, int]] = field(default_factory=list)
    warning: str | None = None
    streamed: bool = False  # a long file, classified window by window as it is read (see streaming.py)


def window_ranges(num_samples: int, window: int, hop: int) -> list[tuple[int, int]]:
    """``[start, end)`` sample ranges: the whole input if it fits one window, else windows every ``hop`` samples with
    the last one ending at the input's end."""
    if num_samples <= window:
        return [(0, num_samples)]
    starts = list(range(0, num_samples - window, hop)) + [num_samples - window]
    return [(start, start + window) for start in starts]


def as_input_list(inputs: object) -> tuple[list[AudioInput], list[str]]:
    """The inputs as a list and their source names; every array's dtype and layout checked (argument errors, raised
    before any work)."""
    if isinstance(inputs, (str, os.PathLike, np.ndarray, torch.Tensor)):
        items = [inputs]
    elif isinstance(inputs, Sequence) and not isinstance(inputs, (bytes, bytearray)):
        items = list(inputs)
    else:
        raise TypeError(f"inputs must be a path, a numpy array, a torch tensor or a list of them, got "
                        f"{type(inputs).__name__}")
    names, arrays = [], 0
    for i, item in enumerate(items):
        if isinstance(item, (str, os.PathLike)):
            names.append(os.fspath(item) if isinstance(item, os.PathLike) else item)
        elif isinstance(item, (np.ndarray, torch.Tensor)):
            check_array(item, f"inputs[{i}]")
            names.append(f"<array {arrays}>")
            arrays += 1
        else:
            raise TypeError(f"inputs[{i}] is a {type(item).__name__}; expected a path (str or os.PathLike), a numpy "
                            "array or a torch tensor")
    return items, names


def check_array(array: np.ndarray | torch.Tensor, where: str) -> None:
    if isinstance(array, torch.Tensor):
        real = not (array.is_complex() or array.dtype == torch.bool)
    else:
        real = array.dtype.kind in "fiu"
    if not real:
        raise TypeError(f"{where} has dtype {array.dtype}; expected float samples in [-1, 1] or integer PCM")
    if array.ndim not in (1, 2):
        raise ValueError(f"{where} has shape {tuple(array.shape)}; expected [samples], [channels, samples] or "
                         f"[samples, channels] (one recording; pass a list for several)")
    if array.ndim == 2 and min(array.shape) > MAX_CHANNELS:
        raise ValueError(f"{where} has shape {tuple(array.shape)}: neither dimension is a channel count (at most "
                         f"{MAX_CHANNELS}); pass one recording as [samples], [channels, samples] or "
                         "[samples, channels], and several as a list")


def decode_input(item: AudioInput, name: str, sample_rate: float | None, decode=decode_audio) -> DecodedInput:
    """``item`` decoded (a path with ``decode``), or marked to be streamed; an unreadable file is an error item."""
    if isinstance(item, (str, os.PathLike)):
        if needs_streaming(item):
            return DecodedInput(name, None, None, streamed=True)
        try:
            wave, duration, warning = decode(item)
        except AudioInputError as error:
            return DecodedInput(name, None, None, str(error))
        return DecodedInput(name, wave, duration, warning=warning)
    samples = to_mono_float(item)
    duration = samples.shape[0] / sample_rate
    if samples.size and np.isfinite(samples).all() and sample_rate != SAMPLE_RATE:
        samples = resample(torch.from_numpy(samples), sample_rate, SAMPLE_RATE).numpy()
    return DecodedInput(name, samples, duration)


def decode_whole(item: DecodedInput) -> DecodedInput:
    """A file marked to be streamed, decoded whole instead (segmentation needs all of it), up to
    ``MAX_SEGMENTED_SECONDS``; longer, or unreadable, it becomes an error item."""
    try:
        info = audio_info(item.source)
        if info.frames is not None and info.frames / info.samplerate > MAX_SEGMENTED_SECONDS:
            return DecodedInput(item.source, None, info.frames / info.samplerate,
                                f"{item.source}: {info.frames / info.samplerate / 3600:.1f} hours; segmentation "
                                f"decodes a file whole, up to {MAX_SEGMENTED_SECONDS / 3600:g} hours: split it first")
        wave, duration, warning = decode_audio(item.source)
    except AudioError as error:
        return DecodedInput(item.source, None, None, str(error))
    return DecodedInput(item.source, wave, duration, warning=warning)


def to_mono_float(array: np.ndarray | torch.Tensor) -> np.ndarray:
    """float32 mono ``[samples]``: integer PCM scaled to [-1, 1), channels averaged."""
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu()
        array = (array.float() if array.is_floating_point() else array).numpy()
    if array.dtype.kind in "iu":
        bits = 8 * array.dtype.itemsize
        offset = 2.0 ** (bits - 1) if array.dtype.kind == "u" else 0.0
        array = (array.astype(np.float64) - offset) / 2.0 ** (bits - 1)
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 2 and 0 in array.shape:
        return np.zeros(0, np.float32)
    if array.ndim == 2:
        channels_first = array.shape[0] <= MAX_CHANNELS < array.shape[1]
        array = array.mean(axis=0 if channels_first else 1, dtype=np.float32)
    return np.ascontiguousarray(array)
