"""The experts' hidden activation and its derivative (the fused backward needs it explicitly)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

ACTIVATIONS = ("relu", "gelu", "silu")


def activate(a: torch.Tensor, name: str) -> torch.Tensor:
    if name == "relu":
        return F.relu(a)
    if name == "gelu":
        return F.gelu(a)
    return F.silu(a)


def activation_grad(a: torch.Tensor, grad: torch.Tensor, name: str) -> torch.Tensor:
    """``grad · act'(a)``, written into ``grad`` for relu (the common case costs no new tensor)."""
    if name == "relu":
        return grad.masked_fill_(a <= 0, 0)
    wide = a if a.dtype == torch.float64 else a.float()
    if name == "gelu":
        cdf = 0.5 * (1.0 + torch.erf(wide * (1.0 / math.sqrt(2.0))))
        pdf = torch.exp(-0.5 * wide * wide) * (1.0 / math.sqrt(2.0 * math.pi))
        return (grad * (cdf + wide * pdf)).to(grad.dtype)
    sig = torch.sigmoid(wide)
    return (grad * (sig * (1.0 + wide * (1.0 - sig)))).to(grad.dtype)
