"""The reference attention pooling: masked softmax over time, then the weighted mean (and std).

Written the way the models' papers state it, with autograd providing the backward; every other backend is tested against
it. The weights are computed in float32 (float64 for float64 inputs).
"""

from __future__ import annotations

import torch


def attention_pool_ref(
    x: torch.Tensor,
    scores: torch.Tensor,
    lengths: torch.Tensor | None = None,
    *,
    return_std: bool = False,
    eps: float = 1e-5,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """:func:`ser_fast.ops.attention_pool` (which checks the inputs) as the papers write it: ``mu [B, D]``, or
    ``(mu, sigma)`` with ``sigma = sqrt(clamp(E_w[x^2] - mu^2, min=eps))``, in ``x.dtype``."""
    compute_dtype = torch.promote_types(x.dtype, torch.float32)
    s = scores.to(compute_dtype)
    if lengths is not None:
        frames = torch.arange(x.shape[1], device=x.device)
        padding = frames[None, :] >= torch.as_tensor(lengths, device=x.device)[:, None]
        s = s.masked_fill(padding if s.ndim == 2 else padding[:, :, None], float("-inf"))
    w = torch.softmax(s, dim=1)
    if w.ndim == 2:
        w = w[:, :, None]
    xc = x.to(compute_dtype)
    mu = (w * xc).sum(dim=1)
    if not return_std:
        return mu.to(x.dtype)
    m2 = (w * xc * xc).sum(dim=1)
    sigma = torch.sqrt(torch.clamp(m2 - mu * mu, min=eps))
    return mu.to(x.dtype), sigma.to(x.dtype)
