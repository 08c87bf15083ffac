"""The models' input recipe, in one place: mono 16 kHz waveforms in [-1, 1] → ``[B, 3, T, 80]`` log-Mel + Δ + ΔΔ (Kaldi
fbank on int16-range samples, delta window 2), normalised per utterance over its valid frames. Training, evaluation,
inference and the ONNX metadata all take it from here."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ser_fast.frontend.constants import INT16_SCALE, N_MELS
from ser_fast.frontend.module import LogMelFrontend


def model_frontend() -> LogMelFrontend:
    """The front-end of the CNN models' features (its ``options`` describe the filterbank)."""
    return LogMelFrontend(num_mel_bins=N_MELS, normalize=True)


def model_features(waves: Sequence[np.ndarray | torch.Tensor],
                   frontend: LogMelFrontend | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x [B, 3, T_max, 80], num_frames [B])`` of mono 16 kHz waveforms in [-1, 1], zero past each item's frames;
    ``frontend`` reuses one :func:`model_frontend` across calls."""
    scaled = [(torch.from_numpy(w) if isinstance(w, np.ndarray) else w) * INT16_SCALE for w in waves]
    return (frontend or model_frontend()).features(scaled)
