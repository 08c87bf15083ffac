"""The reference orthogonality loss: DSNet eq. 4 written as the paper reads, autograd for gradients."""

from __future__ import annotations

import torch


def orthogonality_loss_ref(
    z1: torch.Tensor, z2: torch.Tensor, *, reduction: str = "sum", eps: float = 1e-5
) -> torch.Tensor:
    """:func:`ser_fast.ops.orthogonality_loss.orthogonality_loss` (which checks the inputs) as the paper writes it,
    computed in float32 (float64 for float64 inputs)."""
    compute_dtype = torch.promote_types(z1.dtype, torch.float32)
    z1_scored = _zscore(z1.to(compute_dtype), eps)
    z2_scored = _zscore(z2.to(compute_dtype), eps)
    correlation = z1_scored.mT @ z2_scored
    loss = correlation.square().sum(dim=(-2, -1))
    if reduction == "mean":
        n, d1, d2 = z1.shape[-2], z1.shape[-1], z2.shape[-1]
        loss = loss / (n * n * d1 * d2)
    elif reduction != "sum":
        raise ValueError(f"reduction={reduction!r}: expected 'sum' or 'mean'")
    return loss.to(z1.dtype)


def _zscore(z: torch.Tensor, eps: float) -> torch.Tensor:
    variance, mean = torch.var_mean(z, dim=-2, correction=0, keepdim=True)
    return (z - mean) / torch.sqrt(variance + eps)
