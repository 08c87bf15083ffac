"""Utterances to DSNet's input features, computed once per (corpus, noise condition) and kept in memory: log-Mel + Δ +
ΔΔ, ``[3, T, 80]`` per utterance, normalised per utterance. A file that cannot be read is reported and left out."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence
from tqdm.auto import tqdm

from ser_fast.data.audio import AudioError, load_audio
from ser_fast.data.augmentation import Augmenter
from ser_fast.data.corpus import Utterance
from ser_fast.data.noise import NoiseBank, NoiseCondition, mix_at_snr
from ser_fast.frontend.constants import MIN_SAMPLES
from ser_fast.frontend.module import LogMelFrontend, fit_frames
from ser_fast.frontend.recipe import model_features, model_frontend

logger = logging.getLogger(__name__)


@dataclass
class FeatureTable:
    """Features of utterances, in the order given (failed ones left out and listed in ``failed``)."""

    utterances: list[Utterance]
    features: list[torch.Tensor]
    labels: torch.Tensor
    failed: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.utterances)

    def subset(self, paths: Sequence) -> FeatureTable:
        """The rows of the utterances at ``paths`` (those this table holds), in the table's order."""
        if isinstance(paths, (str, bytes, os.PathLike)):
            raise TypeError(f"paths must be a sequence of paths, got one: {paths!r}")
        wanted = {str(p) for p in paths}
        rows = [i for i, u in enumerate(self.utterances) if str(u.path) in wanted]
        return FeatureTable([self.utterances[i] for i in rows], [self.features[i] for i in rows], self.labels[rows],
                            list(self.failed))

    def batch(self, indices: Sequence[int], max_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``[len(indices), 3, max_frames, 80]`` (each item cut, or repeated cyclically, to
        ``max_frames``: DSNet's fixed-length mini-batches) and the items' valid frames, capped."""
        items = [self.features[i] for i in indices]
        padded = pad_sequence([f.transpose(0, 1) for f in items], batch_first=True).transpose(1, 2)
        num_frames = torch.tensor([f.shape[1] for f in items])
        return fit_frames(padded, num_frames, max_frames), num_frames.clamp(max=max_frames)


def augmented_batch(utterances: Sequence[Utterance], rows: Sequence[int], augmenter: Augmenter, epoch: int,
                    max_frames: int, frontend: LogMelFrontend, draws: Sequence[int] | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """What :meth:`FeatureTable.batch` gives for ``rows`` of ``utterances``, computed now from each one's audio
    through ``augmenter``, seeded by ``epoch`` and the row (or the matching entry of ``draws``: DSNet's neutral
    reference takes its anchor's draw, so both pass through the same room, noise and band), so an epoch's batch is
    the same after a resume. Audio a speed-up left shorter than one frame is padded with silence to one."""
    waves = []
    for row, draw in zip(rows, rows if draws is None else draws, strict=True):
        wave = augmenter(load_audio(utterances[row].path), epoch, draw)
        waves.append(np.pad(wave, (0, max(0, MIN_SAMPLES - wave.size))))
    x, num_frames = model_features(waves, frontend)
    return fit_frames(x, num_frames, max_frames), num_frames.clamp(max=max_frames)


def usable_wave(utterance: Utterance, classes: Sequence[str], failed: list[tuple[str, str]], *,
                mix: Callable[[np.ndarray], np.ndarray] | None = None, what: str = "skipping") -> np.ndarray | None:
    """The 16 kHz samples of ``utterance`` (through ``mix``, if given), or None with ``(path, reason)`` appended to
    ``failed`` and a warning beginning with ``what``: a label outside ``classes``, unreadable audio, or less than one
    25 ms frame."""
    if utterance.label not in classes:
        failed.append((str(utterance.path), f"label {utterance.label!r} not in {classes}"))
        return None
    try:
        wave = load_audio(utterance.path)
        if mix is not None:
            wave = mix(wave)
        if len(wave) < MIN_SAMPLES:
            raise AudioError(f"{utterance.path}: shorter than one 25 ms frame")
    except (AudioError, ValueError) as error:
        logger.warning("%s %s", what, error)
        failed.append((str(utterance.path), str(error)))
        return None
    return wave


def extract_features(utterances: Sequence[Utterance], classes: Sequence[str], *,
                     condition: NoiseCondition | None = None, noise_bank: NoiseBank | None = None,
                     seed: int = 0, chunk: int = 32, progress: bool = False, desc: str = "features") -> FeatureTable:
    """Read, optionally mix with noise at ``condition`` (the noise of utterance i is drawn from a
    generator seeded by (seed, i), so a condition is the same mixture every time), and extract."""
    classes = tuple(classes)
    if condition is not None and condition.kind is not None and noise_bank is None:
        raise ValueError(f"condition {condition.name} needs a noise_bank")
    frontend = model_frontend()
    kept: list[Utterance] = []
    features: list[torch.Tensor] = []
    failed: list[tuple[str, str]] = []
    bar = tqdm(total=len(utterances), desc=desc, disable=not progress, unit="utt", leave=False)
    for start in range(0, len(utterances), chunk):
        batch, waves = [], []
        for offset, utterance in enumerate(utterances[start:start + chunk]):
            mix = None
            if condition is not None and condition.kind is not None:
                def mix(wave: np.ndarray, index: int = start + offset) -> np.ndarray:
                    rng = np.random.default_rng([seed, index])
                    return mix_at_snr(wave, noise_bank.sample(condition.kind, len(wave), rng), condition.snr_db, rng)
            wave = usable_wave(utterance, classes, failed, mix=mix)
            if wave is None:
                continue
            batch.append(utterance)
            waves.append(wave)
        if waves:
            stacked, num_frames = model_features(waves, frontend)
            features.extend(stacked[i, :, : int(n)].clone() for i, n in enumerate(num_frames))
            kept.extend(batch)
        bar.update(min(chunk, len(utterances) - start))
    bar.close()
    labels = torch.tensor([classes.index(u.label) for u in kept], dtype=torch.int64)
    return FeatureTable(kept, features, labels, failed)
