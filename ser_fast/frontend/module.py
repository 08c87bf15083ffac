"""``LogMelFrontend``: waveforms to DSNet's input, ``[B, 3, max_frames, 80]`` (static, Δ, ΔΔ)."""

from __future__ import annotations

from typing import Any

import numpy as np
import soxr
import torch
from torch import nn

from ser_fast.frontend.constants import DELTA_WINDOW, SAMPLE_RATE
from ser_fast.frontend.deltas import deltas
from ser_fast.frontend.fbank import BACKENDS, fbank_with_options
from ser_fast.frontend.options import FbankOptions
from ser_fast.frontend.waveforms import as_waveform_list


def resample(waveform: torch.Tensor, from_rate: float, to_rate: float) -> torch.Tensor:
    """Band-limited resampling of a 1-D waveform with soxr (high quality), float32 out."""
    if from_rate == to_rate:
        return waveform.to(torch.float32)
    samples = waveform.detach().cpu().to(torch.float32).numpy()
    out = soxr.resample(samples, from_rate, to_rate, quality="HQ")
    return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32)).to(waveform.device)


def fit_frames(feats: torch.Tensor, num_frames: torch.Tensor, max_frames: int) -> torch.Tensor:
    """Cuts each item of ``feats [B, C, T, M]`` to its first ``max_frames`` frames, or repeats its valid frames
    cyclically until it has ``max_frames`` (DSNet's fixed-length input)."""
    t = torch.arange(max_frames, device=feats.device)
    idx = t[None, :] % num_frames.to(feats.device)[:, None]  # [B, max_frames]
    idx = idx[:, None, :, None].expand(-1, feats.shape[1], -1, feats.shape[3])
    return torch.gather(feats, 2, idx)


class LogMelFrontend(nn.Module):
    """Waveforms → ``[B, 3, max_frames, num_mel_bins]``: Kaldi log-Mel, Δ and ΔΔ (window 2), each item cut or cyclically
    padded to ``max_frames`` frames, as DSNet's input (25 ms / 10 ms at 16 kHz).

    Args:
        num_mel_bins: Mel filters (80 in DSNet).
        max_frames: frames per item (600 in DSNet: 6 s).
        normalize: per-utterance mean/variance normalisation per channel and bin over valid frames, before the cut/pad.
        backend: as in :func:`ser_fast.fbank`.
        fbank_options: any other :func:`ser_fast.fbank` option (e.g. ``window_type="hamming"``).

    ``forward(waveforms, lengths=None, sample_rate=16000)`` takes what :func:`ser_fast.fbank` takes; other sample rates
    are resampled to 16 kHz with soxr first. An item shorter than one frame (25 ms) is a ValueError that names it."""

    sample_rate = SAMPLE_RATE

    def __init__(self, num_mel_bins: int = 80, max_frames: int = 600, *, normalize: bool = False,
                 backend: str = "auto", **fbank_options: Any) -> None:
        super().__init__()
        if not isinstance(max_frames, int) or isinstance(max_frames, bool) or max_frames < 1:
            raise ValueError(f"max_frames={max_frames!r}: expected a positive integer")
        if backend not in BACKENDS:
            raise ValueError(f"backend={backend!r}: expected one of {', '.join(BACKENDS)}")
        if "sample_rate" in fbank_options:
            raise ValueError("the frontend works at 16 kHz; pass the input rate to forward(sample_rate=...)")
        self.options = FbankOptions(num_mel_bins=num_mel_bins, sample_rate=float(self.sample_rate), **fbank_options)
        self.max_frames = max_frames
        self.normalize = normalize
        self.backend = backend

    def extra_repr(self) -> str:
        return f"num_mel_bins={self.options.num_mel_bins}, max_frames={self.max_frames}, normalize={self.normalize}"

    def forward(self, waveforms: Any, lengths: Any = None, sample_rate: float = 16000) -> torch.Tensor:
        stacked, num_frames = self.features(waveforms, lengths, sample_rate)
        return fit_frames(stacked, num_frames, self.max_frames)

    def features(self, waveforms: Any, lengths: Any = None, sample_rate: float = 16000
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """The features before the cut/pad: ``[B, 3, T_max, M]`` (zero past each item's frames) and ``num_frames [B]``,
        for callers that cut or pad later (per training batch)."""
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float)) or not sample_rate > 0:
            raise ValueError(f"sample_rate={sample_rate!r}: expected a positive number of Hz")
        items = as_waveform_list(waveforms, lengths, check_finite=False)  # fbank checks the samples
        if sample_rate != self.sample_rate:
            items = [resample(w, sample_rate, self.sample_rate) for w in items]
        feats, num_frames = fbank_with_options(items, self.options, backend=self.backend)
        empty = (num_frames == 0).nonzero().flatten().tolist()
        if empty:
            raise ValueError(f"waveforms{empty} are shorter than one {self.options.frame_length_ms} ms frame; "
                             "expected at least one frame of audio per item")
        stacked = deltas(feats, order=2, window=DELTA_WINDOW, lengths=num_frames)
        bins = self.options.feature_dim
        stacked = stacked.reshape(*stacked.shape[:2], 3, bins).permute(0, 2, 1, 3)  # [B, 3, T, M]
        if self.normalize:
            stacked = normalize_valid(stacked, num_frames, dim=2, eps=1e-5)
        return stacked, num_frames


def normalize_valid(x: torch.Tensor, lengths: torch.Tensor | None, dim: int, eps: float) -> torch.Tensor:
    """Each item ``b`` of ``x`` to zero mean, unit variance along ``dim`` over its first ``lengths[b]`` positions (None:
    all), ``eps`` added to the variance; the positions past them become 0."""
    if lengths is None:
        mean = x.mean(dim=dim, keepdim=True)
        return (x - mean) / torch.sqrt(x.var(dim=dim, unbiased=False, keepdim=True) + eps)
    valid = torch.arange(x.shape[dim], device=x.device)[None, :] < lengths.to(x.device)[:, None]
    shape = [1] * x.dim()
    shape[0], shape[dim] = valid.shape
    weight = valid.view(shape).to(x.dtype)
    count = weight.sum(dim=dim, keepdim=True).clamp(min=1)
    mean = (x * weight).sum(dim=dim, keepdim=True) / count
    variance = ((x - mean).square() * weight).sum(dim=dim, keepdim=True) / count
    return (x - mean) / torch.sqrt(variance + eps) * weight
