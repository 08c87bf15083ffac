"""The built-in backbone of Sparse MERIT: WavLM's transformer (gated relative position bias, pre-LN) on DSNet's log-Mel
features instead of WavLM's waveform CNN, trained from scratch with the task.

Why not the small waveform WavLM (``SSLFeatures.default(frontend="waveform")``): a randomly initialised waveform CNN has
to discover a filterbank before emotion cues reach the transformer, and a short run does not give it the steps. On the
synthetic corpus (480 utterances, 1.5 s crops, batch 8, AdamW 1e-3, experts + SER head, two held-out speakers), after
180 steps on clean speech the waveform CNN was still at chance (25 %, cross-entropy ln 4) and the log-Mel front-end at
48 % (a plain transformer on the same features: 62 %); with noise at 5 dB the log-Mel front-end reached 39–57 % after
180–480 steps. Kaldi log-Mel with Δ and ΔΔ, normalised per utterance, is the input DSNet learns from in the same budget.
The transformer and everything after it are Hugging Face's WavLM, so ``SSLFeatures`` treats this model like any other.

Frames: Kaldi frames without edge snipping (25 ms windows centred every 10 ms, ``(S + 80) // 160`` frames for S
samples), then a 5-frame convolution with stride 2 → 20 ms frames, the SSL frame rate the SE head expects:
``((S + 80) // 160 + 1) // 2 = (S + 240) // 320`` frames, which is what Hugging Face's length formula gives for one
"conv layer" of kernel 80 and stride 320, so the config says that (``LOG_MEL_CONV``) and the attention masks and
``SSLFeatures.min_samples`` follow. The convolution is padded on the left only, so a frame never sees past the
utterance's last frame: with the sample lengths given, every utterance of a padded batch gets the features it gets
alone.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ser_fast.frontend.constants import IN_CHANNELS, INT16_SCALE, N_MELS
from ser_fast.frontend.deltas import deltas
from ser_fast.frontend.fbank import fbank_with_options
from ser_fast.frontend.graph import LogMelGraph
from ser_fast.frontend.module import normalize_valid
from ser_fast.frontend.options import FbankOptions

FRONTEND_KEY = "ser_fast_frontend"
FRONTEND_NAME = "log-mel"
CHANNELS = IN_CHANNELS * N_MELS  # log-Mel, Δ, ΔΔ
SUBSAMPLING_KERNEL = 5
# The frame arithmetic of the front-end in Hugging Face's conv-layer terms (see the module docstring).
LOG_MEL_CONV = {"conv_kernel": (80,), "conv_stride": (320,)}
NORMALIZE_EPS = 1e-5
FBANK_OPTIONS = FbankOptions(num_mel_bins=N_MELS, snip_edges=False)


class LogMelFeatureEncoder(nn.Module):
    """``waveform [B, S]`` → ``[B, C, T]`` at 20 ms: log-Mel + Δ + ΔΔ (normalised per utterance over its valid frames),
    a strided convolution and GELU. Takes the place of WavLM's ``feature_extractor``. Under ``torch.export`` the
    features come from the same recipe in traceable ops (:class:`~ser_fast.frontend.graph.LogMelGraph`), so that an
    exported graph holds its front-end; eagerly, from the C++ filterbank."""

    def __init__(self, out_channels: int) -> None:
        super().__init__()
        self.subsample = nn.Conv1d(CHANNELS, out_channels, SUBSAMPLING_KERNEL, stride=2)
        self.graph_frontend = LogMelGraph(FBANK_OPTIONS)  # constants only: nothing in the state dict
        self._requires_grad = True
        # Set by LogMelWavLM.forward for the duration of one call: HF's forward passes the extractor only
        # the waveform, but exact per-utterance features need each utterance's length.
        self.sample_lengths: torch.Tensor | None = None

    def _freeze_parameters(self) -> None:
        self.requires_grad_(False)
        self._requires_grad = False

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        batch, samples = waveform.shape
        lengths = self.sample_lengths
        if lengths is None:
            lengths = torch.full((batch,), samples, dtype=torch.int64)
        if torch.compiler.is_exporting():
            stacked, _ = self.graph_frontend(waveform.float(), lengths.to(waveform.device))  # [B, 3, T, M]
            feats = stacked.permute(0, 2, 1, 3).reshape(batch, stacked.shape[2], CHANNELS)
        else:
            with torch.no_grad():
                feats, frames = fbank_with_options(waveform.detach().float().cpu() * INT16_SCALE, FBANK_OPTIONS,
                                                   lengths=lengths.cpu())
                feats = deltas(feats, lengths=frames)  # [B, T, 240]
                feats = normalize_valid(feats, frames, dim=1, eps=NORMALIZE_EPS)
        x = feats.to(waveform.device, self.subsample.weight.dtype).transpose(1, 2)
        # Left padding only: output frame j covers input frames 2j - 4 .. 2j, never one past the end.
        return F.gelu(self.subsample(F.pad(x, (SUBSAMPLING_KERNEL - 1, 0))))


@functools.cache
def log_mel_wavlm_class(transformers) -> type:
    """``LogMelWavLM``, defined on first use so that ``transformers`` stays an optional import."""
    class LogMelWavLM(transformers.WavLMModel):
        """``WavLMModel`` with :class:`LogMelFeatureEncoder` as its feature extractor."""

        def __init__(self, config) -> None:
            super().__init__(config)
            self.feature_extractor = LogMelFeatureEncoder(config.conv_dim[-1])

        def forward(self, input_values: torch.Tensor | None, attention_mask: torch.Tensor | None = None,
                    **kwargs: Any):
            lengths = None if attention_mask is None else attention_mask.sum(-1).to(torch.int64)
            self.feature_extractor.sample_lengths = lengths
            try:
                return super().forward(input_values, attention_mask=attention_mask, **kwargs)
            finally:
                self.feature_extractor.sample_lengths = None

    return LogMelWavLM
