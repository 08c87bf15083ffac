"""The experts' activation inside Triton kernels (ids match ``ACTIVATION_IDS``)."""

from __future__ import annotations

import triton
import triton.language as tl

ACTIVATION_IDS = {"relu": 0, "gelu": 1, "silu": 2}


@triton.jit
def apply_activation(b_a, ACTIVATION: tl.constexpr):
    """act(a) on a float32 tile."""
    if ACTIVATION == 0:
        return tl.maximum(b_a, 0.0)
    elif ACTIVATION == 1:
        return 0.5 * b_a * (1.0 + tl.math.erf(b_a * 0.7071067811865476))
    else:
        return b_a / (1.0 + tl.exp(-b_a))


@triton.jit
def activation_derivative(b_a, ACTIVATION: tl.constexpr):
    """act'(a) on a float32 tile (relu' = 0 at 0, as torch's relu backward)."""
    if ACTIVATION == 0:
        return tl.where(b_a > 0.0, 1.0, 0.0)
    elif ACTIVATION == 1:
        b_cdf = 0.5 * (1.0 + tl.math.erf(b_a * 0.7071067811865476))
        return b_cdf + b_a * tl.exp(-0.5 * b_a * b_a) * 0.3989422804014327
    else:
        b_sig = 1.0 / (1.0 + tl.exp(-b_a))
        return b_sig * (1.0 + b_a * (1.0 - b_sig))
