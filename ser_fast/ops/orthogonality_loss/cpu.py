"""The orthogonality loss in torch ops with its closed-form backward (any device).

Autograd through the reference keeps every intermediate of the z-score and walks the graph back op by op; here the
backward is one batched matmul and a closed-form correction per input, from the z-scored inputs, the reciprocal spreads
and the matmul's other factor saved by the forward.

Two ways to the same numbers, picked by cost: with few rows (N·(D1 + D2) < D1·D2, DSNet's N = 32 against D = 256)
everything goes through the N×N Gram matrices ``Zk Zkᵀ`` and the D1×D2 correlation matrix is never formed, since
``||Z1ᵀ Z2||² = <Z1 Z1ᵀ, Z2 Z2ᵀ>`` and ``Z2 Cᵀ = (Z2 Z2ᵀ) Z1``; with many rows, through ``C = Z1ᵀ Z2``.

``forward``, ``backward`` and ``fake_state`` are the "torch" backend of the custom op ``ser_fast::orthogonality_loss``
(``op.py``); :func:`orthogonality_loss_torch` calls that op.
"""

from __future__ import annotations

import torch

from ser_fast.ops.orthogonality_loss.op import fused_orthogonality_loss


def orthogonality_loss_torch(
    z1: torch.Tensor, z2: torch.Tensor, *, reduction: str = "sum", eps: float = 1e-5
) -> torch.Tensor:
    """The torch path of :func:`ser_fast.ops.orthogonality_loss.orthogonality_loss` (inputs unchecked)."""
    batched = z1.dim() == 3
    if not batched:
        z1, z2 = z1.unsqueeze(0), z2.unsqueeze(0)
    loss = fused_orthogonality_loss(z1, z2, reduction, eps, "torch")[0]
    return loss if batched else loss.squeeze(0)


def prefer_gram(n: int, d1: int, d2: int) -> bool:
    """Whether the N×N Gram matrices (N²·(D1 + D2) multiply-adds) are cheaper than C (N·D1·D2)."""
    return n * (d1 + d2) < d1 * d2


def forward(z1: torch.Tensor, z2: torch.Tensor, reduction: str, eps: float):
    """``z1 [G, N, D1]``, ``z2 [G, N, D2]`` -> ``||Z1ᵀ Z2||_F²`` per pair ``[G]`` (divided by N²·D1·D2 for "mean") in
    the input dtype, and the state the backward reads: Z1, 1/s1, Z2, 1/s2, then the Gram matrices Z1 Z1ᵀ and Z2 Z2ᵀ
    ``[G, N, N]`` or the correlation matrix C = Z1ᵀ Z2 ``[G, D1, D2]`` and None, whichever :func:`prefer_gram`
    picks."""
    sizes = _sizes(z1, z2)
    return _forward(z1, z2, _reduction_scale(reduction, *sizes), eps, prefer_gram(*sizes))


def fake_state(z1: torch.Tensor, z2: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Empty tensors shaped like the state :func:`forward` returns."""
    g, n, d1 = z1.shape
    d2 = z2.shape[2]
    products = [(g, n, n), (g, n, n)] if prefer_gram(n, d1, d2) else [(g, d1, d2)]
    shapes = [(g, n, d1), (g, 1, d1), (g, n, d2), (g, 1, d2), *products]
    state = [z1.new_empty(shape, dtype=torch.promote_types(z1.dtype, torch.float32)) for shape in shapes]
    return *state, *[z1.new_empty(0)] * (6 - len(state))


def backward(grad_loss, z1, z2, state, reduction: str, need_dz1: bool, need_dz2: bool):
    """``(dz1, dz2)`` in the input dtype, None where not needed (the formula: :func:`_grad_from_projection`)."""
    scored1, rstd1, scored2, rstd2, first, second = state
    sizes = _sizes(z1, z2)
    coef = grad_loss.to(scored1.dtype).view(-1, 1, 1) * (2.0 * _reduction_scale(reduction, *sizes))
    if prefer_gram(*sizes):
        # Z2 Cᵀ = (Z2 Z2ᵀ) Z1 and Z1 C = (Z1 Z1ᵀ) Z2.
        gram1, gram2 = first, second
        factors1, factors2 = (gram2, scored1), (gram1, scored2)
    else:
        correlation = first
        factors1, factors2 = (scored2, correlation.mT), (scored1, correlation)
    grad1 = grad2 = None
    if need_dz1:
        grad1 = _grad_from_projection(torch.bmm(*factors1), scored1, rstd1, coef)
    if need_dz2:
        grad2 = _grad_from_projection(torch.bmm(*factors2), scored2, rstd2, coef)
    return _cast(grad1, z1.dtype), _cast(grad2, z2.dtype)


def _sizes(z1: torch.Tensor, z2: torch.Tensor) -> tuple[int, int, int]:
    return z1.shape[1], z1.shape[2], z2.shape[2]


def _grad_from_projection(projection, scored, rstd, coef):
    """(2 gL / s) (P − Z · (1/N) Σ_n Z ∘ P), with P the other input projected on C (Z2 Cᵀ for z1, Z1 C for z2): Σ_n Z1 ∘
    (Z2 Cᵀ) is the row sums of C², and the z-score's centring term drops out because P's columns are centred like the
    other input's."""
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
        products = (torch.bmm(scored1.mT, scored2), None)
        loss = torch.linalg.vector_norm(products[0], dim=(1, 2)).square()
    if scale != 1.0:
        loss = loss * scale
    return loss.to(z1.dtype), scored1, rstd1, scored2, rstd2, *products


def _zscore(z: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Z and 1/s in float32 (float64 for float64 inputs). Two passes (mean, then the centred squares): torch.var_mean's
    Welford reduction across rows is several times slower here."""
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
