"""``orthogonality_loss``: DSNet's L_o = ||Z_erᵀ Z_ei||_F² between column-z-scored embeddings, batched.

The reference is ``naive.orthogonality_loss_ref``; the torch path (``cpu.orthogonality_loss_torch``) and the Triton
kernels (``ser_fast.kernels.orthogonality_loss.orthogonality_loss_triton``) run through the custom op
``ser_fast::orthogonality_loss`` (``op.py``). The checks read no tensor values, so the public function holds nothing
that would wait for a GPU or end a compiled graph.
"""

from __future__ import annotations

import math

import torch

from ser_fast.ops._backend import outside_autocast, resolve_backend
from ser_fast.ops.orthogonality_loss.cpu import orthogonality_loss_torch
from ser_fast.ops.orthogonality_loss.naive import orthogonality_loss_ref
from ser_fast.ops.orthogonality_loss.op import orthogonality_loss_backward_op, orthogonality_loss_op

__all__ = ["orthogonality_loss", "orthogonality_loss_backward_op", "orthogonality_loss_op", "orthogonality_loss_ref",
           "orthogonality_loss_torch"]

REDUCTIONS = ("sum", "mean")
SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


@outside_autocast
def orthogonality_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    *,
    reduction: str = "sum",
    eps: float = 1e-5,
    backend: str = "auto",
) -> torch.Tensor:
    """How far two embeddings are from orthogonal: ``||Z1ᵀ Z2||_F²`` (DSNet eq. 4). Each column is z-scored over the N
    rows with the population variance, ``Z = (z − mean_N(z)) / sqrt(var_N(z) + eps)``, so ``Z1ᵀ Z2 / N`` is the matrix
    of correlations between the features of ``z1`` and those of ``z2``.

    Args:
        z1: ``[N, D1]`` (one pair) or ``[G, N, D1]`` (G pairs: heads, folds, models); N >= 2 rows (the batch), D1 >= 1
            features. float32, float16, bfloat16 (float64 on the torch and reference paths).
        z2: ``[N, D2]`` or ``[G, N, D2]``, same N, G, dtype and device as ``z1``.
        reduction: ``"sum"`` gives ``||Z1ᵀ Z2||_F²``; ``"mean"`` divides it by ``N²·D1·D2`` (the mean squared
            correlation, in [0, 1]).
        eps: added to each column's variance (>= 0); a constant column gets ``Z = 0``, not NaN, as long as ``eps > 0``.
        backend: ``"auto"`` (Triton for CUDA tensors, else torch), ``"triton"``, ``"torch"`` or ``"reference"``.

    Returns:
        A scalar for ``[N, D]`` inputs, ``[G]`` for ``[G, N, D]`` inputs, in the input dtype (computed in float32, or
        float64 for float64 inputs). Differentiable in ``z1`` and ``z2``.

    Raises:
        TypeError: a non-tensor or an unsupported dtype.
        ValueError: wrong ndim, mismatched shapes/dtypes/devices, N < 2, an empty dimension, an unknown reduction or
            backend, a negative or non-finite eps.
    """
    _check_inputs(z1, z2, reduction, eps)
    eps = float(eps)
    chosen = resolve_backend(backend, z1, op="orthogonality_loss")
    if chosen == "reference":
        return orthogonality_loss_ref(z1, z2, reduction=reduction, eps=eps)
    if chosen == "torch":
        return orthogonality_loss_torch(z1, z2, reduction=reduction, eps=eps)
    from ser_fast.kernels.orthogonality_loss import orthogonality_loss_triton

    return orthogonality_loss_triton(z1, z2, reduction=reduction, eps=eps)


def _check_inputs(z1: torch.Tensor, z2: torch.Tensor, reduction: str, eps: float) -> None:
    for name, z in (("z1", z1), ("z2", z2)):
        if not isinstance(z, torch.Tensor):
            raise TypeError(f"orthogonality_loss: {name} must be a torch.Tensor, got {type(z).__name__}")
        if z.dtype not in SUPPORTED_DTYPES:
            raise TypeError(f"orthogonality_loss: {name} has dtype {z.dtype}; expected a floating dtype "
                            "(float32, float16, bfloat16 or float64)")
        if z.dim() not in (2, 3):
            raise ValueError(f"orthogonality_loss: {name} must be [N, D] or [G, N, D], got {z.dim()} dims "
                             f"with shape {tuple(z.shape)}")
    if z1.dim() != z2.dim():
        raise ValueError(f"orthogonality_loss: z1 and z2 must both be [N, D] or both [G, N, D], got shapes "
                         f"{tuple(z1.shape)} and {tuple(z2.shape)}")
    if z1.dtype != z2.dtype:
        raise ValueError(f"orthogonality_loss: z1 and z2 must have the same dtype, got {z1.dtype} and {z2.dtype}")
    if z1.device != z2.device:
        raise ValueError(f"orthogonality_loss: z1 and z2 must be on the same device, got {z1.device} and "
                         f"{z2.device}")
    if z1.shape[:-1] != z2.shape[:-1]:
        what = "rows N" if z1.dim() == 2 else "pairs G and rows N"
        raise ValueError(f"orthogonality_loss: z1 and z2 must have the same {what}, got shapes "
                         f"{tuple(z1.shape)} and {tuple(z2.shape)}")
    if z1.dim() == 3 and z1.shape[0] == 0:
        raise ValueError("orthogonality_loss: z1 and z2 have G = 0 pairs; expected at least one")
    if z1.shape[-2] < 2:
        raise ValueError(f"orthogonality_loss: z1 and z2 have N = {z1.shape[-2]} rows; expected N >= 2 (a "
                         "column cannot be z-scored over fewer than two rows)")
    for name, z in (("z1", z1), ("z2", z2)):
        if z.shape[-1] == 0:
            raise ValueError(f"orthogonality_loss: {name} has no features (shape {tuple(z.shape)}); expected D >= 1")
    if reduction not in REDUCTIONS:
        raise ValueError(f"orthogonality_loss: reduction={reduction!r}; expected one of "
                         f"{', '.join(map(repr, REDUCTIONS))}")
    # A chained comparison, not math.isfinite, which torch.compile cannot fold with dynamic=True.
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 <= eps < math.inf:
        raise ValueError(f"orthogonality_loss: eps={eps!r}; expected a finite number >= 0")
