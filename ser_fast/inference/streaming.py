"""Long recordings, window by window: a file longer than ``MAX_DECODE_SECONDS`` is never decoded whole.
:class:`WindowStream` reads it in blocks, mixed to mono and resampled to 16 kHz by a streaming soxr resampler, and hands
out the same windows as the in-memory path, holding one block and one window."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soxr

from ser_fast.data.audio import AudioError, audio_blocks, audio_info, truncation_warning

# Whole-file decoding costs 4 bytes a sample at 16 kHz after mixing (230 MB an hour) plus the file's own
# channels and rate before it; past 10 minutes a file is streamed instead, whatever its length.
MAX_DECODE_SECONDS = 600.0
BLOCK_SECONDS = 30.0


def needs_streaming(source: str | os.PathLike) -> bool:
    """Whether a file's header declares more than ``MAX_DECODE_SECONDS`` of audio, or no length at all. A file whose
    header cannot be read is not streamed: decoding it whole reports what is wrong with it."""
    try:
        info = audio_info(source)
    except AudioError:
        return False
    # A container that declares no length (a raw AAC stream) is streamed: its size is not known before decoding.
    return info.frames is None or info.frames / info.samplerate > MAX_DECODE_SECONDS


class WindowStream:
    """Iterate to get ``(start, samples)`` for each window of a file at ``sample_rate`` (start in samples at that rate).
    Once iterated, ``num_samples`` is the resampled length, ``peak`` the largest absolute sample, and ``warning`` says
    whether the file is truncated. Raises :class:`AudioError` naming the file if it is unreadable or non-finite."""

    def __init__(self, path: str | os.PathLike, window: int, hop: int, sample_rate: int) -> None:
        if not (0 < hop <= window):
            raise ValueError(f"expected 0 < hop <= window, got hop={hop}, window={window}")
        self.path = Path(path)
        self.window, self.hop, self.sample_rate = window, hop, sample_rate
        self.info = audio_info(self.path)
        self.warning = truncation_warning(self.path, self.info)
        self.num_samples = 0
        self.peak = 0.0

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        window, hop = self.window, self.hop
        buffer, buffer_start, next_start, last_start = np.zeros(0, np.float32), 0, 0, None
        for chunk in self._resampled():
            buffer = np.concatenate([buffer, chunk])
            total = buffer_start + len(buffer)
            while next_start + window <= total:
                offset = next_start - buffer_start
                yield next_start, buffer[offset:offset + window].copy()
                last_start, next_start = next_start, next_start + hop
            # Keep what the next grid window needs, and the last `window` samples for the final window.
            keep_from = max(buffer_start, min(next_start, total - window))
            buffer, buffer_start = buffer[keep_from - buffer_start:], keep_from
        self.num_samples = total = buffer_start + len(buffer)
        if total <= window:
            if last_start is None:  # a file of exactly one window was yielded by the grid already
                yield 0, buffer.copy()
        elif last_start != total - window:
            yield total - window, buffer[total - window - buffer_start:].copy()

    def _resampled(self) -> Iterator[np.ndarray]:
        """The file at ``sample_rate``, block by block; the peak is taken after resampling, as for a whole file."""
        rate = self.info.samplerate
        resampler = None if rate == self.sample_rate else soxr.ResampleStream(
            rate, self.sample_rate, 1, dtype="float32", quality="HQ")
        blocks = audio_blocks(self.path, max(1, math.ceil(BLOCK_SECONDS * rate)), self.info)
        for mono in blocks if resampler is None else _resampled_blocks(blocks, resampler):
            if mono.size:
                self.peak = max(self.peak, float(np.abs(mono).max()))
            yield mono


def _resampled_blocks(blocks: Iterator[np.ndarray], resampler: soxr.ResampleStream) -> Iterator[np.ndarray]:
    for mono in blocks:
        yield resampler.resample_chunk(mono, last=False)
    yield resampler.resample_chunk(np.zeros(0, np.float32), last=True)
