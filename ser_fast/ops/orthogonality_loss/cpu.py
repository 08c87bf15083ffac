"""The orthogonality loss in torch ops with its closed-form backward (any device).

Autograd through the reference keeps every intermediate of the z-score and walks the graph back op
by op; here the backward is one batched matmul and a closed-form correction per input, from the z-scored
inputs, the reciprocal spreads and the matmul's other factor saved by the forward.

Two ways to the same numbers, picked by cost: with few rows (N·(D1 + D2) < D1·D2, DSNet's N = 32
against D = 256) everything goes through the N×N Gram matrices ``Zk Zkᵀ`` and the D1×D2 correlation
matrix is never formed, since ``||Z1ᵀ Z2||² = <Z1 Z1ᵀ, Z2 Z2ᵀ>`` and ``Z2 Cᵀ = (Z2 Z2ᵀ) Z1``; with
many rows, through ``C = Z1ᵀ Z2``.
"""

from __future__ import annotations

import torch

from ser_fast.ops._backend import backward_outside_autocast


def orthogonality_loss_torch(
    z1: torch.Tensor, z2: torch.Tensor, *, reduction: str = "sum", eps: float = 1e-5
) -> torch.Tensor:
    """The torch path of :func:`ser_fast.ops.orthogonality_loss.orthogonality_loss` (inputs unchecked).

    ``z1 [(G,) N, D1]``, ``z2 [(G,) N, D2]`` -> scalar or ``[G]`` in the input dtype.
    """
    batched = z1.dim() == 3
    if not batched:
        z1, z2 = z1.unsqueeze(0), z2.unsqueeze(0)
    n, d1, d2 = z1.shape[1], z1.shape[2], z2.shape[2]
    scale = _reduction_scale(reduction, n, d1, d2)
    through_gram = prefer_gram(n, d1, d2)
    if torch.is_grad_enabled() and (z1.requires_grad or z2.requires_grad):
        loss = OrthogonalityLossTorchFunction.apply(z1, z2, scale, eps, through_gram)
    else:
        loss = _forward(z1, z2, scale, eps, through_gram)[0]
    return loss if batched else loss.squeeze(0)


def prefer_gram(n: int, d1: int, d2: int) -> bool:
    """Whether the N×N Gram matrices (N²·(D1 + D2) multiply-adds) are cheaper than C (N·D1·D2)."""
    return n * (d1 + d2) < d1 * d2


class OrthogonalityLossTorchFunction(torch.autograd.Function):
    """``z1 [G, N, D1]``, ``z2 [G, N, D2]`` -> ``[G]``: ``scale · ||Z1ᵀ Z2||_F²`` per pair."""

    @staticmethod
    def forward(ctx, z1: torch.Tensor, z2: torch.Tensor, scale: float, eps: float, through_gram: bool):
        loss, scored1, rstd1, scored2, rstd2, products = _forward(z1, z2, scale, eps, through_gram)
        ctx.save_for_backward(scored1, rstd1, scored2, rstd2, *products)
        ctx.scale, ctx.through_gram, ctx.input_dtype = scale, through_gram, z1.dtype
        return loss

    @staticmethod
    @backward_outside_autocast
    def backward(ctx, grad_loss: torch.Tensor):
        scored1, rstd1, scored2, rstd2, *products = ctx.saved_tensors
        coef = grad_loss.to(scored1.dtype).view(-1, 1, 1) * (2.0 * ctx.scale)
        if ctx.through_gram:
            # Z2 Cᵀ = (Z2 Z2ᵀ) Z1 and Z1 C = (Z1 Z1ᵀ) Z2.
            gram1, gram2 = products
            factors1, factors2 = (gram2, scored1), (gram1, scored2)
        else:
            (correlation,) = products
            factors1, factors2 = (scored2, correlation.mT), (scored1, correlation)
        grad1 = grad2 = None
        if ctx.needs_input_grad[0]:
            grad1 = _grad_from_projection(torch.bmm(*factors1), scored1, rstd1, coef)
        if ctx.needs_input_grad[1]:
            grad2 = _grad_from_projection(torch.bmm(*factors2), scored2, rstd2, coef)
        return _cast(grad1, ctx.input_dtype), _cast(grad2, ctx.input_dtype), None, None, None


def _grad_from_projection(projection, scored, rstd, coef):
    """(2 gL / s) (P − Z · (1/N) Σ_n Z ∘ P), with P the other input projected on C (Z2 Cᵀ for z1,
    Z1 C for z2): Σ_n Z1 ∘ (Z2 Cᵀ) is the row sums of C², and the z-score's centring term drops out
    because P's columns are centred like the other input's."""
    energy = (scored * projection).sum(dim=1, keepdim=True)
    return projection.sub_(scored * (energy / scored.shape[1])).mul_(coef * rstd)


def _cast(grad: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    return None if grad is None else grad.to(dtype)


def _forward(z1: torch.Tensor, z2: torch.Tensor, scale: float, eps: float, through_gram: bool):
    scored1, rstd1 = _zscore(z1, eps)
    scored2, rstd2 = _zscore(z2, eps)
    if through_gram:
        products = (torch.bmm(scored1, scored1.mT), torch.bmm(scored2, scored2.mT))
        loss = (products[0] * products[1]).sum(dim=(1, 2))
    else:
        products = (torch.bmm(scored1.mT, scored2),)
        loss = torch.linalg.vector_norm(products[0], dim=(1, 2)).square()
    if scale != 1.0:
        loss = loss * scale
    return loss.to(z1.dtype), scored1, rstd1, scored2, rstd2, products


def _zscore(z: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Z and 1/s in float32 (float64 for float64 inputs). Two passes (mean, then the centred squares):
    torch.var_mean's Welford reduction across rows is several times slower here."""
    compute_dtype = torch.promote_types(z.dtype, torch.float32)
    mean = z.mean(dim=1, keepdim=True, dtype=compute_dtype)
    centred = z - mean
    rstd = torch.rsqrt(centred.square().sum(dim=1, keepdim=True) / z.shape[1] + eps)
    return centred.mul_(rstd), rstd


def _reduction_scale(reduction: str, n: int, d1: int, d2: int) -> float:
    if reduction == "mean":
        return 1.0 / (n * n * d1 * d2)
    if reduction == "sum":
        return 1.0
    raise ValueError(f"reduction={reduction!r}: expected 'sum' or 'mean'")
