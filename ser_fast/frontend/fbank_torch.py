"""The filterbank in torch ops: framing by index arithmetic, ``torch.fft.rfft``, a dense Mel matmul: the path for CUDA
tensors and the independent check of the C++ core; ``backend="torch"`` selects it on CPU too. Same numbers as the C++
path up to float32 rounding, except the dither noise (drawn from a ``torch.Generator`` seeded with ``seed``)."""

from __future__ import annotations

import torch

from ser_fast.frontend import tables
from ser_fast.frontend.options import FbankOptions

_FLT_EPSILON = torch.finfo(torch.float32).eps


def fbank_torch(waveforms: list[torch.Tensor], opts: FbankOptions, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Filterbank of 1-D waveforms (any float/int16 dtype, one device) → ``(feats [B, T, D], num_frames [B])``."""
    device = waveforms[0].device
    lengths = torch.tensor([w.numel() for w in waveforms], device=device)
    num_frames = opts.num_frames_of(lengths)
    batch, max_frames = len(waveforms), int(num_frames.max())
    if max_frames == 0:
        return torch.zeros(batch, 0, opts.feature_dim, device=device), num_frames
    signal = torch.nn.utils.rnn.pad_sequence([w.to(torch.float32) for w in waveforms], batch_first=True)
    idx = opts.frame_indices(max_frames, lengths)
    frames = torch.gather(signal, 1, idx.reshape(batch, -1)).reshape(batch, max_frames, opts.window_size)

    if opts.dither > 0:
        generator = torch.Generator(device=device).manual_seed(seed)
        frames = frames + opts.dither * torch.randn(frames.shape, generator=generator, device=device)
    if opts.remove_dc_offset:
        frames = frames - frames.mean(dim=-1, keepdim=True)
    energy = frames.square().sum(-1) if opts.raw_energy else None
    if opts.preemph_coeff != 0:
        c = opts.preemph_coeff
        frames = torch.cat([frames[..., :1] * (1 - c), frames[..., 1:] - c * frames[..., :-1]], dim=-1)
    frames = frames * torch.from_numpy(tables.window(opts)).to(device)
    if not opts.raw_energy:
        energy = frames.square().sum(-1)

    spectrum = torch.fft.rfft(frames, n=opts.padded_window_size)
    power = spectrum.real.square() + spectrum.imag.square()
    num_fft_bins = opts.padded_window_size // 2
    power = power[..., :num_fft_bins]
    if not opts.use_power:
        power = power.sqrt()
    feats = power @ torch.from_numpy(tables.mel_banks(opts)).to(device)
    if opts.use_log_fbank:
        feats = feats.clamp(min=_FLT_EPSILON).log()
    if opts.use_energy:
        log_energy = energy.clamp(min=_FLT_EPSILON).log()
        if opts.energy_floor > 0:
            log_energy = log_energy.clamp(min=float(torch.tensor(opts.energy_floor).log()))
        feats = torch.cat([log_energy[..., None], feats], dim=-1)
    valid = torch.arange(max_frames, device=device)[None, :] < num_frames[:, None]
    return torch.where(valid[..., None], feats, 0.0), num_frames
