"""Room impulse responses for the ``reverb`` augmentation: simulated with pyroomacoustics (the image-source method in
a shoebox room whose wall absorption gives the drawn RT60 by Sabine's formula) or read from a folder of recorded
ones. Simulating one costs 0.02 s at RT60 0.2 s and 1.3 s at 0.8 s, so a run simulates a seeded pool once and each
utterance draws from it."""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
from pathlib import Path

import numpy as np

from ser_fast.data.audio import AudioError, load_audio
from ser_fast.data.noise import AUDIO_SUFFIXES
from ser_fast.frontend.constants import SAMPLE_RATE

logger = logging.getLogger(__name__)

POOL_SIZE = 32
ROOM_SIZE_M = ((3.0, 10.0), (3.0, 8.0), (2.4, 4.0))  # length, width, height: offices to meeting rooms
WALL_MARGIN = 0.5  # source and microphone keep at least this far (m) from every wall
PYROOMACOUSTICS_HINT = "install it with `pip install 'ser_fast[augment]'`"


def rooms_simulable() -> bool:
    """Whether pyroomacoustics, which simulates the rooms, is installed."""
    return importlib.util.find_spec("pyroomacoustics") is not None


class RoomPool:
    """Impulse responses, each starting at its direct path (so reverberation delays no speech) and scaled to unit
    energy (so it changes the level by no more than a room's colouring)."""

    def __init__(self, responses: list[np.ndarray], source: str) -> None:
        if not responses:
            raise ValueError(f"no room impulse responses in {source}")
        self.responses = [_aligned(r) for r in responses]
        self.source = source

    def __len__(self) -> int:
        return len(self.responses)

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        return self.responses[int(rng.integers(len(self.responses)))]

    @classmethod
    def simulated(cls, rt60_s: tuple[float, float], seed: int, count: int = POOL_SIZE) -> RoomPool:
        """``count`` shoebox rooms with RT60 uniform in ``rt60_s``, their sizes and the source's and microphone's
        positions drawn from ``seed``; simulated once per process (the folds of a run share them)."""
        if not rooms_simulable():
            raise ImportError(f"simulated reverberation needs pyroomacoustics; {PYROOMACOUSTICS_HINT}, or give "
                              "recorded impulse responses (--rir-dir)")
        low, high = (float(t) for t in rt60_s)
        responses = _simulated_rooms(low, high, int(seed), int(count))
        return cls(list(responses), f"{count} simulated rooms (RT60 {low:g}-{high:g} s)")

    @classmethod
    def from_dir(cls, root: str | os.PathLike) -> RoomPool:
        """Every readable audio file below ``root``, at 16 kHz and mixed to one channel as ``load_audio`` reads
        recordings (give single-microphone responses: a mix of several microphones is no room's response);
        unreadable or silent ones are logged and skipped."""
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"room impulse response folder {root} does not exist")
        responses = []
        for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES):
            try:
                response = load_audio(path).astype(np.float64)
            except AudioError as error:
                logger.warning("room impulse responses: skipping %s", error)
                continue
            if not np.any(response):
                logger.warning("room impulse responses: skipping %s (all samples are zero)", path)
                continue
            responses.append(response)
        return cls(responses, f"{root}")


@functools.lru_cache(maxsize=4)
def _simulated_rooms(low: float, high: float, seed: int, count: int) -> tuple[np.ndarray, ...]:
    import pyroomacoustics as pra

    logger.info("simulating %d rooms (RT60 %g-%g s) for the reverb augmentation", count, low, high)
    rng = np.random.default_rng([seed, 0x5200])
    responses = []
    for _ in range(count):
        size, absorption, max_order = _shoebox(pra, rng.uniform(low, high), rng)
        room = pra.ShoeBox(size, fs=SAMPLE_RATE, materials=pra.Material(absorption), max_order=max_order)
        source, microphone = (WALL_MARGIN + rng.uniform(0, 1, 3) * (size - 2 * WALL_MARGIN) for _ in range(2))
        room.add_source(source)
        room.add_microphone(microphone)
        room.compute_rir()
        responses.append(np.asarray(room.rir[0][0], dtype=np.float64))
    return tuple(responses)


def _shoebox(pra, rt60_s: float, rng: np.random.Generator) -> tuple[np.ndarray, float, int]:
    """A room size drawn from ``ROOM_SIZE_M``, with the wall absorption and image-source order that give ``rt60_s``
    by Sabine's formula; a room too large for so short a time (absorption above 1) shrinks until it fits, down to the
    smallest sizes (which fit any RT60 from ``LIMITS``' 0.1 s)."""
    smallest = np.array([low for low, _ in ROOM_SIZE_M])
    size = np.array([rng.uniform(*span) for span in ROOM_SIZE_M])
    while True:
        try:
            absorption, max_order = pra.inverse_sabine(rt60_s, size)
            return size, absorption, max_order
        except ValueError:
            if np.all(size <= smallest):
                raise
            size = np.maximum(size * 0.85, smallest)


def _aligned(response: np.ndarray) -> np.ndarray:
    response = np.asarray(response, dtype=np.float64).reshape(-1)
    if response.size == 0 or not np.all(np.isfinite(response)) or not np.any(response):
        raise ValueError("a room impulse response must hold finite samples, not all zero")
    start = int(np.argmax(np.abs(response)))
    trimmed = response[start:]
    return trimmed / np.sqrt(np.sum(trimmed ** 2))
