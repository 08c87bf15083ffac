"""Turning what users pass as audio into a checked list of 1-D tensors, with errors naming the item."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

_ACCEPTED = "float32, float64 or int16 (float16/bfloat16 are widened to float32)"
_WIDENED = (torch.float16, torch.bfloat16)
_NATIVE = (torch.float32, torch.float64, torch.int16)
_FLT_MAX = float(torch.finfo(torch.float32).max)


def _as_tensor(item: Any, where: str) -> torch.Tensor:
    if isinstance(item, torch.Tensor):
        if item.layout != torch.strided:
            raise TypeError(f"{where} is a {item.layout} tensor; expected a dense waveform (call .to_dense() first)")
        return item
    if isinstance(item, np.ndarray):
        if item.dtype.kind not in "fiu":
            raise TypeError(f"{where} has dtype {item.dtype}; expected {_ACCEPTED}")
        try:
            return torch.from_numpy(np.ascontiguousarray(item))
        except (TypeError, ValueError) as err:  # byte-swapped or extended-precision arrays
            raise TypeError(f"{where} has dtype {item.dtype!r} that torch cannot read ({err}); convert it, e.g. "
                            "x.astype(np.float32)") from None
    raise TypeError(f"{where} is a {type(item).__name__}; expected a numpy array or a torch tensor")


def _check_item(t: torch.Tensor, where: str) -> torch.Tensor:
    if t.device.type == "meta":
        raise ValueError(f"{where} is a meta tensor, which holds no samples; expected a CPU or CUDA tensor")
    if t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"{where} has dtype {t.dtype}; expected real samples: {_ACCEPTED}")
    if t.dtype in _WIDENED:
        t = t.to(torch.float32)
    if t.dtype not in _NATIVE:
        raise TypeError(f"{where} has dtype {t.dtype}; expected {_ACCEPTED}. Convert integer PCM other than int16 to "
                        "float yourself (samples are used as given, Kaldi-style, with no rescaling)")
    if t.dim() != 1:
        raise ValueError(f"{where} has shape {tuple(t.shape)}; expected a 1-D waveform (mix down to mono, e.g. "
                         "x.mean(0), or pick a channel)")
    return t.contiguous()


def check_finite_samples(items: list[torch.Tensor]) -> None:
    """Raises ValueError naming the first item with NaN, Inf or values that overflow float32 (the C++ backend makes the
    same check in its binding, in parallel; this is for the torch path)."""
    for i, t in enumerate(items):
        if t.dtype == torch.int16 or t.numel() == 0:
            continue
        # max |x| in one pass without a temporary; NaN propagates, and > FLT_MAX covers Inf too.
        peak = float(torch.linalg.vector_norm(t, ord=float("inf")))
        if not peak <= _FLT_MAX:
            raise ValueError(f"waveforms[{i}] contains NaN, Inf or values beyond float32 range; expected finite samples")


def as_waveform_list(waveforms: Any, lengths: Any = None, *, check_finite: bool = True) -> list[torch.Tensor]:
    """Normalises ``waveforms`` (a sequence of 1-D arrays/tensors, or a ``[B, N]`` / ``[N]`` tensor or array with
    optional ``lengths``) into contiguous 1-D tensors on one device, each cut to its length. ``check_finite=False``
    leaves the sample check to the caller (the C++ binding does it itself)."""
    if isinstance(waveforms, (torch.Tensor, np.ndarray)):
        padded = _as_tensor(waveforms, "waveforms")
        if padded.dim() == 1:
            padded = padded[None]
        if padded.dim() != 2:
            raise ValueError(f"waveforms has shape {tuple(padded.shape)}; expected [B, N] (padded batch) or [N] "
                             "(one waveform)")
        if padded.shape[0] == 0:
            raise ValueError("waveforms is an empty batch; expected at least one waveform")
        padded = _check_item(padded.reshape(-1), "waveforms").reshape(padded.shape)
        if lengths is None:
            lengths = [padded.shape[1]] * padded.shape[0]
        lens = _check_lengths(lengths, padded.shape[0], padded.shape[1])
        items = [padded[b, : lens[b]] for b in range(padded.shape[0])]
    elif isinstance(waveforms, Sequence) and not isinstance(waveforms, (str, bytes)):
        if len(waveforms) == 0:
            raise ValueError("waveforms is an empty batch; expected at least one waveform")
        items = [_check_item(_as_tensor(w, f"waveforms[{i}]"), f"waveforms[{i}]") for i, w in enumerate(waveforms)]
        if lengths is not None:
            lens = _check_lengths(lengths, len(items), None, items)
            items = [t[:n] for t, n in zip(items, lens)]
        devices = {t.device for t in items}
        if len(devices) > 1:
            raise ValueError(f"waveforms are on several devices {sorted(map(str, devices))}; expected one")
    else:
        raise TypeError(f"waveforms is a {type(waveforms).__name__}; expected a list of 1-D arrays/tensors or a "
                        "[B, N] tensor")
    if check_finite:
        check_finite_samples(items)
    return items


def _check_lengths(lengths: Any, batch: int, width: int | None, items: list[torch.Tensor] | None = None) -> list[int]:
    expected = f"expected {batch} non-negative integers (a list, an array or an integer tensor)"
    if isinstance(lengths, (str, bytes)):
        raise TypeError(f"lengths is a {type(lengths).__name__}; {expected}")
    if isinstance(lengths, torch.Tensor) and lengths.layout != torch.strided:
        raise TypeError(f"lengths is a {lengths.layout} tensor; {expected}")
    try:
        lens = torch.as_tensor(lengths)
    except (TypeError, ValueError, RuntimeError, OverflowError) as error:
        raise ValueError(f"lengths={lengths!r} cannot be read as integers ({error}); {expected}") from None
    if lens.dim() != 1 or lens.numel() != batch or lens.is_floating_point() or lens.is_complex() or lens.dtype == torch.bool:
        raise ValueError(f"lengths has shape {tuple(lens.shape)} and dtype {lens.dtype}; expected {batch} integers")
    lens_list = [int(n) for n in lens.tolist()]
    for b, n in enumerate(lens_list):
        limit = width if width is not None else items[b].numel()
        if n < 0 or n > limit:
            raise ValueError(f"lengths[{b}]={n} but waveform {b} has {limit} samples; expected 0 <= length <= {limit}")
    return lens_list
