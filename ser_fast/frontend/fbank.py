"""``ser_fast.fbank``: Kaldi-exact log-Mel filterbank features for a batch of waveforms."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch

from ser_fast._extension import extension
from ser_fast.frontend.fbank_torch import fbank_torch
from ser_fast.frontend.options import FbankOptions
from ser_fast.frontend.waveforms import as_waveform_list, check_finite_samples

BACKENDS = ("auto", "cpp", "torch")


def fbank(waveforms: Any, sample_rate: float = 16000, *, lengths: Any = None, num_mel_bins: int = 80,
          frame_length_ms: float = 25.0, frame_shift_ms: float = 10.0, dither: float = 0.0, preemph_coeff: float = 0.97,
          remove_dc_offset: bool = True, window_type: str = "povey", round_to_power_of_two: bool = True,
          snip_edges: bool = True, low_freq: float = 20.0, high_freq: float = 0.0, use_energy: bool = False,
          energy_floor: float = 0.0, raw_energy: bool = True, use_log_fbank: bool = True, use_power: bool = True,
          seed: int | None = None, backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Log-Mel filterbank features, the same numbers as Kaldi's ``compute-fbank-feats``.

    Args:
        waveforms: a list of 1-D arrays/tensors of any lengths, or a padded ``[B, N]`` tensor/array (``[N]`` is a batch
            of one). float32, float64 or int16; samples are used as given, with no rescaling (Kaldi and
            kaldi-native-fbank semantics: int16-range floats give Kaldi's values).
        sample_rate: Hz, of every waveform; nothing is resampled here (see ``LogMelFrontend``).
        lengths: ``[B]`` valid samples per item (of the padded tensor, or cutting list items).
        seed: seeds the dither noise, which is a pure function of (seed, item index, frame, sample) on the C++ path, so
            results do not depend on threads. ``None`` draws a seed from torch's global generator (``torch.manual_seed``
            makes it reproducible).
        backend: ``"cpp"`` (compiled, CPU, multithreaded over ``torch.get_num_threads()`` threads), ``"torch"`` (torch
            ops, any device) or ``"auto"`` (cpp for CPU tensors, torch otherwise).
        The other options are Kaldi's, with Kaldi's meaning; ``dither`` defaults to 0 here.

    Returns:
        ``feats [B, T_max, num_mel_bins (+1 with use_energy, log energy first)]`` float32, zero past each item's frames,
        and ``num_frames [B]`` int64. With ``snip_edges=True`` a waveform under one frame has 0 frames, as in Kaldi.

    Raises:
        ValueError / TypeError naming the offending item and what was expected (NaN/Inf samples, a non-1-D item, an
        unsupported dtype, bad lengths or options). Finite samples so large that their power overflows float32 (beyond
        about 1e17) give inf features, as in Kaldi."""
    opts = FbankOptions(
        sample_rate=_positive_rate(sample_rate), frame_length_ms=frame_length_ms, frame_shift_ms=frame_shift_ms,
        dither=dither, preemph_coeff=preemph_coeff, remove_dc_offset=remove_dc_offset, window_type=window_type,
        round_to_power_of_two=round_to_power_of_two, snip_edges=snip_edges, num_mel_bins=num_mel_bins,
        low_freq=low_freq, high_freq=high_freq, use_energy=use_energy, energy_floor=energy_floor,
        raw_energy=raw_energy, use_log_fbank=use_log_fbank, use_power=use_power,
    )
    return fbank_with_options(waveforms, opts, lengths=lengths, seed=seed, backend=backend)


def fbank_with_options(waveforms: Any, opts: FbankOptions, *, lengths: Any = None, seed: int | None = None,
                       backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`fbank` with the options as one :class:`FbankOptions` (what modules keep)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}: expected one of {', '.join(BACKENDS)}")
    items = as_waveform_list(waveforms, lengths, check_finite=False)
    on_cpu = items[0].device.type == "cpu"
    if backend == "cpp" and not on_cpu:
        raise ValueError(f'backend="cpp" needs CPU tensors, got {items[0].device}; use backend="torch" or "auto"')
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)))
    elif not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed={seed!r}: expected a non-negative int or None")
    if backend == "torch" or (backend == "auto" and not on_cpu):
        check_finite_samples(items)
        return fbank_torch(items, opts, seed)
    return _fbank_cpp(items, opts, seed)


def _fbank_cpp(items: list[torch.Tensor], opts: FbankOptions, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    num_frames = opts.num_frames_of(torch.tensor([t.numel() for t in items], dtype=torch.int64))
    max_frames = int(num_frames.max())
    feats = torch.empty(len(items), max_frames, opts.feature_dim)  # the extension zeroes the padding
    extension().fbank_out(items, opts.to_cpp(), feats, seed % 2**64)  # also with no frames: it checks the samples
    return feats, num_frames


def _positive_rate(sample_rate: Any) -> float:
    if isinstance(sample_rate, (bool, np.bool_)) or not isinstance(sample_rate, numbers.Real) or not sample_rate > 0:
        raise ValueError(f"sample_rate={sample_rate!r}: expected a positive number of Hz (int, float or numpy scalar)")
    return float(sample_rate)
