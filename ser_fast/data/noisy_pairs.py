"""Noisy/clean waveform pairs made on the fly from a corpus and a :class:`NoiseBank` (Sparse MERIT's data): each item's
crop, noise type, segment and shift come from a Generator seeded by (seed, epoch, item): a resumed run sees the same."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

from ser_fast.data.audio import AudioError, load_audio
from ser_fast.data.corpus import Utterance
from ser_fast.data.noise import NoiseBank, mix_at_snr
from ser_fast.frontend.constants import SAMPLE_RATE

logger = logging.getLogger(__name__)


@lru_cache(maxsize=4096)
def _clean_audio(path: Path) -> np.ndarray:
    return load_audio(path, SAMPLE_RATE)


@dataclass(frozen=True)
class WaveBatch:
    """``noisy``, ``clean`` ``[B, S]`` zero-padded past ``lengths [B]``; ``labels [B]``; the noise
    type and SNR of each item (None for clean items)."""

    noisy: torch.Tensor
    clean: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor
    kinds: list[str | None]
    snrs_db: list[float | None]


def readable(utterances: Sequence[Utterance]) -> tuple[list[Utterance], list[tuple[Path, str]]]:
    """The utterances whose audio loads and is not silent, and (path, reason) for the others."""
    good, bad = [], []
    for u in utterances:
        try:
            audio = _clean_audio(u.path)
        except AudioError as error:
            bad.append((u.path, str(error)))
            continue
        if not np.any(audio):
            bad.append((u.path, "silent (all samples are zero)"))
            continue
        good.append(u)
    return good, bad


def make_batch(utterances: Sequence[Utterance], classes: Sequence[str], bank: NoiseBank | None,
               kinds: Sequence[str], snr_db: float | None, *, seed: Sequence[int], max_samples: int | None = None,
               random_crop: bool = False, augment: Callable[[np.ndarray, int], np.ndarray] | None = None) -> WaveBatch:
    """A batch of pairs. Item i uses ``default_rng([*seed, i])``: a random crop of ``max_samples`` (the first ones
    without ``random_crop``), a noise type from ``kinds``, mixed at ``snr_db``; ``snr_db=None`` or no bank: clean.
    ``augment(speech, i)``, if given, changes item i's speech first (a room, a level, a band, a speed): the clean
    target is the augmented speech, which the noise is then added to. ``classes``: the labels' (empty for a model
    without classes, whose labels are then -1)."""
    label_of = {c: i for i, c in enumerate(classes)}
    noisy, clean, kinds_used, snrs = [], [], [], []
    for i, u in enumerate(utterances):
        rng = np.random.default_rng([*seed, i])
        speech = _clean_audio(u.path) if augment is None else augment(_clean_audio(u.path), i)
        if max_samples is not None and len(speech) > max_samples:
            start = int(rng.integers(len(speech) - max_samples + 1)) if random_crop else 0
            speech = speech[start:start + max_samples]
        if bank is None or snr_db is None or not np.any(speech):
            noisy.append(speech)
            kinds_used.append(None)
            snrs.append(None)
        else:
            kind = kinds[int(rng.integers(len(kinds)))]
            noisy.append(mix_at_snr(speech, bank.sample(kind, len(speech), rng), snr_db, rng).astype(np.float32))
            kinds_used.append(kind)
            snrs.append(float(snr_db))
        clean.append(speech)
    lengths = torch.tensor([len(x) for x in clean], dtype=torch.long)

    def padded(signals: list[np.ndarray]) -> torch.Tensor:
        return pad_sequence([torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)) for x in signals],
                            batch_first=True)

    # No classes (a model that rates arousal, valence and dominance only): no label, -1.
    labels = torch.tensor([label_of[u.label] if classes else -1 for u in utterances], dtype=torch.long)
    return WaveBatch(padded(noisy), padded(clean), lengths, labels, kinds_used, snrs)
