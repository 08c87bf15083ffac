"""The models' input recipe (``ser_fast.frontend.recipe``) as one traceable module, so that an exported graph takes
16 kHz samples rather than features: framing by index arithmetic, Kaldi's DC removal, pre-emphasis and window, the real
DFT as two matrix products (every exporter and runtime has MatMul; not all have a DFT op), the Mel matrix, the log,
Δ/ΔΔ, and the per-utterance normalisation over each item's valid frames. No step reads a tensor's values, so the
batch size and the number of samples stay free in the graph.

It computes :func:`ser_fast.fbank`'s numbers for the options :func:`~ser_fast.frontend.recipe.model_frontend` uses
(snip_edges, no dither, power spectrum, log), or with ``snip_edges=False`` (Sparse MERIT's log-Mel front-end:
frames centred every 10 ms, reflected at each item's own ends), up to float32 rounding of the DFT: within 1e-3 on
every band within 80 dB of its frame's loudest (``tests/test_onnx_waveform.py``); bands far below that hold the log of
rounding noise."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ser_fast.frontend import tables
from ser_fast.frontend.constants import DELTA_WINDOW, INT16_SCALE
from ser_fast.frontend.deltas import add_deltas
from ser_fast.frontend.module import normalize_valid
from ser_fast.frontend.options import FbankOptions
from ser_fast.frontend.recipe import model_frontend

_FLT_EPSILON = float(np.finfo(np.float32).eps)


class LogMelGraph(nn.Module):
    """``forward(waveform [B, S] float32 in [-1, 1], lengths [B] int64 samples, clamped to 0..S) -> (x [B, 3, T, M],
    num_frames [B])`` with T = (S - 400) // 160 + 1 for S >= 400 (``snip_edges=False``: (S + 80) // 160 for S >= 1),
    zero past each item's frames."""

    def __init__(self, options: FbankOptions | None = None) -> None:
        super().__init__()
        options = options or model_frontend().options
        unsupported = {name: value for name, value in (("dither", options.dither), ("use_energy", options.use_energy),
                       ("use_power", not options.use_power), ("use_log_fbank", not options.use_log_fbank)) if value}
        if unsupported:
            raise ValueError(f"LogMelGraph computes the models' recipe only; these options differ: {unsupported}")
        self.options = options
        n, padded = options.window_size, options.padded_window_size
        phase = 2 * np.pi * np.outer(np.arange(n), np.arange(padded // 2)) / padded  # [window, bins]: no Nyquist
        self.register_buffer("window", torch.from_numpy(tables.window(options)), persistent=False)
        self.register_buffer("dft_cos", torch.from_numpy(np.cos(phase).astype(np.float32)), persistent=False)
        self.register_buffer("dft_sin", torch.from_numpy(np.sin(phase).astype(np.float32)), persistent=False)
        self.register_buffer("mel", torch.from_numpy(tables.mel_banks(options)), persistent=False)

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = torch.clamp(lengths, min=0, max=waveform.shape[1])
        num_frames = self.options.num_frames_of(lengths)
        stacked = add_deltas(self.log_mel(waveform, lengths), num_frames, 2, DELTA_WINDOW)  # [B, T, 3M], 0 past frames
        bins = self.options.num_mel_bins
        stacked = stacked.reshape(stacked.shape[0], stacked.shape[1], 3, bins).permute(0, 2, 1, 3)
        return normalize_valid(stacked, num_frames, dim=2, eps=1e-5), num_frames

    def log_mel(self, waveform: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``[B, T, M]`` Kaldi log-Mel of every frame of ``waveform [B, S]`` (samples in [-1, 1]; ``lengths [B]`` valid
        samples), as ``ser_fast.fbank`` computes it from the int16-range samples."""
        options = self.options
        size, shift = options.window_size, options.window_shift
        if options.snip_edges:
            # Frames never reach past an item's end: one index for the whole batch.
            frames_max = (waveform.shape[1] - size) // shift + 1
            index = torch.arange(frames_max, device=waveform.device)[:, None] * shift + torch.arange(
                size, device=waveform.device)[None, :]
            frames = waveform[:, index]
        else:
            frames_max = (waveform.shape[1] + shift // 2) // shift
            index = options.frame_indices(frames_max, lengths.clamp(max=waveform.shape[1]))
            frames = torch.gather(waveform, 1, index.reshape(index.shape[0], -1)).reshape(index.shape)
        frames = frames * INT16_SCALE  # [B, T, window]
        if options.remove_dc_offset:
            frames = frames - frames.mean(dim=-1, keepdim=True)
        if options.preemph_coeff != 0:
            c = options.preemph_coeff
            frames = torch.cat([frames[..., :1] * (1 - c), frames[..., 1:] - c * frames[..., :-1]], dim=-1)
        frames = frames * self.window
        power = (frames @ self.dft_cos).square() + (frames @ self.dft_sin).square()
        return (power @ self.mel).clamp(min=_FLT_EPSILON).log()
