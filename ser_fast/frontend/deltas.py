"""``ser_fast.deltas``: Kaldi's ``add-deltas``, batched over utterances of different lengths."""

from __future__ import annotations

import functools
from typing import Any

import torch


@functools.lru_cache(maxsize=16)
def delta_scales(order: int, window: int) -> tuple[tuple[float, ...], ...]:
    """Kaldi's regression filters: scales[i] has 2*i*window + 1 taps; scales[i] is scales[i-1] convolved with j /
    sum(j^2) for j in [-window, window]."""
    scales = [(1.0,)]
    normalizer = float(sum(j * j for j in range(-window, window + 1)))
    for _ in range(order):
        prev = scales[-1]
        cur = [0.0] * (len(prev) + 2 * window)
        for j in range(-window, window + 1):
            for k, p in enumerate(prev):
                cur[j + window + k] += j * p
        scales.append(tuple(c / normalizer for c in cur))
    return tuple(scales)


def deltas(feats: torch.Tensor, order: int = 2, window: int = 2, *, lengths: Any = None) -> torch.Tensor:
    """Appends delta features: ``[..., T, M] -> [..., T, (order + 1) * M]``, blocks ``[x, Δx, Δ²x, ...]``. The same
    arithmetic as Kaldi's ``add-deltas`` and ``kaldi_native_fbank.compute_deltas``: each order is a regression filter
    over the original frames, and frames outside ``[0, length)`` are replaced by the nearest edge frame. ``feats`` is
    ``[T, M]`` or ``[B, T, M]``; ``lengths [B]`` gives each item's valid frames (zero past it in the output)."""
    if not isinstance(feats, torch.Tensor) or not feats.is_floating_point():
        raise TypeError(f"feats must be a floating-point tensor, got {type(feats).__name__}"
                        f"{'' if not isinstance(feats, torch.Tensor) else ' of dtype ' + str(feats.dtype)}")
    if feats.dim() not in (2, 3):
        raise ValueError(f"feats has shape {tuple(feats.shape)}; expected [T, M] or [B, T, M]")
    for name, value, low in (("order", order, 0), ("window", window, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name}={value!r}: expected an integer >= {low}")
    single = feats.dim() == 2
    x = feats[None] if single else feats
    batch, frames, _ = x.shape
    if lengths is None:
        lens = torch.full((batch,), frames, dtype=torch.int64, device=x.device)
    else:
        lens = torch.as_tensor(lengths, device=x.device)
        if lens.shape != (batch,) or lens.is_floating_point() or lens.is_complex() or lens.dtype == torch.bool:
            raise ValueError(f"lengths has shape {tuple(lens.shape)}; expected {batch} integers")
        if bool(((lens < 0) | (lens > frames)).any()):
            raise ValueError(f"lengths must lie in [0, {frames}], got {lens.tolist()}")
    if frames == 0:
        out = x.new_zeros(batch, 0, x.shape[-1] * (order + 1))
        return out[0] if single else out
    out = add_deltas(x, lens, order, window)
    return out[0] if single else out


def add_deltas(x: torch.Tensor, lens: torch.Tensor, order: int, window: int) -> torch.Tensor:
    """:func:`deltas`' arithmetic on checked inputs (``x [B, T, M]`` with T >= 1, ``lens [B]`` in 0..T), in ops a graph
    exporter can trace (no check reads a value)."""
    frames = x.shape[1]
    reach = order * window
    # Every item padded by edge replication to [B, T + 2*reach, M] with one gather.
    t = torch.arange(-reach, frames + reach, device=x.device)
    idx = torch.minimum(t[None, :].clamp(min=0), (lens[:, None] - 1).clamp(min=0))
    padded = torch.gather(x, 1, idx[..., None].expand(-1, -1, x.shape[-1]))
    blocks = [x]
    for scales in delta_scales(order, window)[1:]:
        half = (len(scales) - 1) // 2
        acc = torch.zeros_like(x)
        for j, scale in enumerate(scales):
            if scale != 0.0:
                start = reach - half + j
                acc = acc + scale * padded[:, start : start + frames]
        blocks.append(acc)
    out = torch.cat(blocks, dim=-1)
    valid = torch.arange(frames, device=x.device)[None, :] < lens[:, None]
    return torch.where(valid[..., None], out, 0.0)
