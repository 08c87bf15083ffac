"""``attention_pool``: temporal attention pooling (DSNet) and attentive statistics pooling (MERIT).

The reference is ``naive.attention_pool_ref``; the torch path (``cpu.attention_pool_torch``) and the Triton kernels
(``ser_fast.kernels.attention_pool.attention_pool_triton``) run through the custom op ``ser_fast::attention_pool``
(``op.py``), which :func:`attention_pool` calls after its checks.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch

from ser_fast.ops._backend import check_flag, outside_autocast, reads_values, resolve_backend
from ser_fast.ops.attention_pool.cpu import attention_pool_torch
from ser_fast.ops.attention_pool.naive import attention_pool_ref
from ser_fast.ops.attention_pool.op import attention_pool_backward_op, attention_pool_op

__all__ = ["attention_pool", "attention_pool_backward_op", "attention_pool_op", "attention_pool_ref",
           "attention_pool_torch"]

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


@outside_autocast
def attention_pool(
    x: torch.Tensor,
    scores: torch.Tensor,
    lengths: torch.Tensor | Sequence[int] | None = None,
    *,
    return_std: bool = False,
    eps: float = 1e-5,
    backend: str = "auto",
    check_values: bool = True,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Pool ``x`` over time with softmax weights of ``scores``, masked past each sequence's length.

    Args:
        x: ``[B, T, D]`` frames, float32, float16 or bfloat16 (float64 on the torch and reference paths). Any strides.
        scores: ``[B, T]`` (one weight per frame, shared by all channels: DSNet's temporal attention pooling) or
            ``[B, T, D]`` (one per channel: attentive statistics pooling), x's dtype and device. The softmax over time
            is computed in float32.
        lengths: optional ``[B]`` valid frames per sequence, each in 1..T: an integer tensor on x's device or on the
            CPU, or a sequence of ints. Frames ``t >= lengths[b]`` get no weight.
        return_std: also return the weighted standard deviation.
        eps: positive floor of the variance before the square root.
        backend: ``"auto"`` (Triton for CUDA tensors when installed, else torch), ``"triton"``, ``"torch"`` or
            ``"reference"``.
        check_values: check that every ``lengths[b]`` lies in 1..T, the one check that reads values (see
            :func:`~ser_fast.ops._backend.reads_values`): on CUDA it waits for the device once per call, before any work
            is queued (CPU lengths are checked there, without waiting). A caller that checked the lengths already (a
            model at its input) passes False. Unchecked lengths outside 1..T give undefined values (NaN below 1), never
            a read outside ``x``.

    Returns:
        ``mu [B, D]`` = sum_t w_t x_t, or with ``return_std`` the tuple ``(mu, sigma)`` where
        ``sigma [B, D]`` = sqrt(max(sum_t w_t x_t^2 - mu^2, eps)); both in x's dtype. On the torch path they are
        views of what the backward keeps, so while gradients are recorded autograd refuses to modify them in place
        (clone them first); without gradients they are plain tensors.

    Raises:
        TypeError / ValueError naming the argument and what was expected.
    """
    _check_tensors(x, scores)
    check_values = check_flag(check_values, "check_values", op="attention_pool")
    lengths = _as_lengths(lengths, x, check_values)
    check_flag(return_std, "return_std", op="attention_pool")
    # A chained comparison, not math.isfinite, which torch.compile cannot fold with dynamic=True.
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not 0 < eps < math.inf:
        raise ValueError(f"attention_pool: eps must be a positive finite number, got {eps!r}")
    eps = float(eps)
    resolved = resolve_backend(backend, x, op="attention_pool")
    if resolved == "reference":
        return attention_pool_ref(x, scores, lengths, return_std=return_std, eps=eps)
    if resolved == "torch":
        return attention_pool_torch(x, scores, lengths, return_std=return_std, eps=eps)
    from ser_fast.kernels.attention_pool import attention_pool_triton

    return attention_pool_triton(x, scores, lengths, return_std=return_std, eps=eps)


def _check_tensors(x, scores) -> None:
    for name, t in (("x", x), ("scores", scores)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"attention_pool: {name} must be a torch.Tensor, got {type(t).__name__}")
    if x.ndim != 3:
        raise ValueError(f"attention_pool: x must be [B, T, D], got shape {tuple(x.shape)}")
    if x.dtype not in SUPPORTED_DTYPES:
        raise TypeError(
            f"attention_pool: x must be float32, float16, bfloat16 or float64, got {x.dtype}"
        )
    if 0 in x.shape:
        raise ValueError(f"attention_pool: x has an empty dimension, shape {tuple(x.shape)}; B, T and D must be >= 1")
    B, T, D = x.shape
    if scores.shape not in ((B, T), (B, T, D)):
        raise ValueError(
            f"attention_pool: scores must be [B, T] = {[B, T]} or [B, T, D] = {[B, T, D]} for x of shape "
            f"{tuple(x.shape)}, got shape {tuple(scores.shape)}"
        )
    if scores.dtype != x.dtype:
        raise TypeError(f"attention_pool: scores must have x's dtype {x.dtype}, got {scores.dtype}")
    if scores.device != x.device:
        raise ValueError(f"attention_pool: scores must be on x's device {x.device}, got {scores.device}")


def _as_lengths(lengths, x: torch.Tensor, check_values: bool) -> torch.Tensor | None:
    """``lengths`` as an int64 tensor on x's device; with ``check_values`` (see :func:`reads_values`) every value
    checked to lie in 1..T, on the device it came on."""
    if lengths is None:
        return None
    B, T, _ = x.shape
    if isinstance(lengths, torch.Tensor):
        if lengths.dtype == torch.bool or lengths.is_floating_point() or lengths.is_complex():
            raise TypeError(f"attention_pool: lengths must be an integer tensor, got dtype {lengths.dtype}")
        if lengths.device != x.device and lengths.device.type != "cpu":
            raise ValueError(
                f"attention_pool: lengths must be on x's device {x.device} or on the CPU, got {lengths.device}"
            )
    elif isinstance(lengths, Sequence) and not isinstance(lengths, (str, bytes)):
        if not all(isinstance(n, numbers.Integral) and not isinstance(n, bool) for n in lengths):
            raise TypeError(f"attention_pool: lengths must be a sequence of ints, got {list(lengths)!r}")
        lengths = torch.tensor([int(n) for n in lengths], dtype=torch.int64)
    else:
        raise TypeError(
            "attention_pool: lengths must be None, an integer tensor or a sequence of ints, got "
            f"{type(lengths).__name__}"
        )
    if tuple(lengths.shape) != (B,):
        raise ValueError(f"attention_pool: lengths must have shape [B] = [{B}], got {tuple(lengths.shape)}")
    lengths = lengths.to(dtype=torch.int64)
    if reads_values(check_values, x):
        _check_length_values(lengths, T)
    return lengths.to(device=x.device)


def _check_length_values(lengths: torch.Tensor, T: int) -> None:
    bad = (lengths < 1) | (lengths > T)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        n = int(lengths[i])
        if n < 1:
            raise ValueError(f"attention_pool: lengths[{i}] is {n}; every sequence needs at least one frame")
        raise ValueError(f"attention_pool: lengths[{i}] is {n}, more than the T = {T} frames of x")
