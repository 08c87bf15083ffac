"""Argument checks the models share: ints, flags, class counts, dropout, and per-utterance lengths of a padded batch
(frames of features, samples of waveforms)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch

Lengths = torch.Tensor | Sequence[int] | None


def is_int(value: object) -> bool:
    """An integral number (numpy's included) that is not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_bools(**flags: object) -> None:
    """Raises TypeError naming the first of ``flags`` that is not a bool."""
    for name, flag in flags.items():
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be a bool, got {type(flag).__name__}")


def check_positive_ints(where: str, **values: object) -> None:
    """Raises ValueError ("<where>: <name> must be a positive int") for the first of ``values`` that is not a Python
    int >= 1."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{where}: {name} must be a positive int, got {value!r}")


def check_num_classes(num_classes: object) -> int:
    if not is_int(num_classes) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    return int(num_classes)


def check_dropout(dropout: object) -> float:
    if (isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not math.isfinite(dropout)
            or not 0 <= dropout < 1):
        raise ValueError(f"dropout must be a probability in [0, 1), got {dropout!r}")
    return float(dropout)


def as_lengths(lengths: object, batch: int, limit: int, argument: str, *, unit: str, symbol: str,
               device: torch.device) -> torch.Tensor | None:
    """``lengths`` (None, an integer tensor or a sequence of ints) as an int64 ``[batch]`` tensor on ``device``, each
    value in 1..``limit``; raises naming ``argument``, the ``unit`` it counts ("frames", "samples") and the ``symbol``
    of its limit ("T", "S"). The range check reads the values (a device sync on CUDA, a graph break for torch.compile):
    it runs in eager calls, once, at the public boundary, and a compiled graph leaves it to its eager caller."""
    if lengths is None:
        return None
    if isinstance(lengths, torch.Tensor):
        if lengths.dtype == torch.bool or lengths.is_floating_point() or lengths.is_complex():
            raise TypeError(f"{argument} must hold integers (valid {unit} per utterance), got dtype {lengths.dtype}")
    elif isinstance(lengths, Sequence) and not isinstance(lengths, (str, bytes)):
        if not all(is_int(n) for n in lengths):
            raise TypeError(f"{argument} must be a sequence of ints (valid {unit} per utterance), got {lengths!r}")
        lengths = torch.tensor([int(n) for n in lengths], dtype=torch.int64)
    else:
        raise TypeError(f"{argument} must be None, an integer tensor or a sequence of ints, got {type(lengths).__name__}")
    if tuple(lengths.shape) != (batch,):
        raise ValueError(f"{argument} must have shape [B] = [{batch}], got {tuple(lengths.shape)}")
    lengths = lengths.to(device=device, dtype=torch.int64)
    if torch.compiler.is_compiling():
        return lengths
    out_of_range = (lengths < 1) | (lengths > limit)
    if bool(out_of_range.any()):
        i = int(out_of_range.nonzero()[0, 0])
        raise ValueError(f"{argument}[{i}] is {int(lengths[i])}; expected 1..{symbol} = 1..{limit} valid {unit}")
    return lengths
