"""Triton attention pooling: one pass over time per (sequence, block of channels), both directions.

The forward runs an online softmax (running max, running sum, running sums of e*x and e*x^2), so x
and the scores are read once. It saves the softmax's max and sum, the float32 mean and the
variance. The max and sum are the log-sum-exp kept in two parts: the backward recomputes the
weights as exp(s - max) / sum, as exactly as the forward made them, where one float32 log-sum-exp
near a score of 1e4 would be off by ~1e-3. The backward writes dx and dscores in one more pass.
Scores shared by all channels ([B, T]) use a one-column softmax state broadcast over the channel
tile; each channel block then writes its partial dscores, which the launcher adds up.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from ser_fast.kernels._utils import check_triton_device, rounded_to

from ser_fast.ops.attention_pool.op import fused_attention_pool


@triton.jit
def _attention_pool_fwd_kernel(
    x, s, lengths, mu, sigma, row_max, row_sum, mean, var,
    T, D, NUM_D_BLOCKS,
    stride_xb, stride_xt, stride_xd,
    stride_sb, stride_st, stride_sd,
    eps,
    HAS_LENGTHS: tl.constexpr,
    RETURN_STD: tl.constexpr,
    PER_CHANNEL: tl.constexpr,
    BLOCK_T: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_S: tl.constexpr,
):
    i_d, i_b = tl.program_id(0), tl.program_id(1)
    o_d = i_d * BLOCK_D + tl.arange(0, BLOCK_D)
    m_d = o_d < D
    # BLOCK_S is BLOCK_D for per-channel scores and 1 for shared ones (whose stride_sd is 0).
    o_sd = i_d * BLOCK_D + tl.arange(0, BLOCK_S)
    m_sd = o_sd < D
    if HAS_LENGTHS:
        # Clamped to T: lengths that the caller chose not to check never move a read past x.
        length = tl.minimum(tl.load(lengths + i_b), T)
    else:
        length = T

    b_max = tl.full([BLOCK_S], float("-inf"), tl.float32)
    b_sum = tl.zeros([BLOCK_S], dtype=tl.float32)
    b_sum_x = tl.zeros([BLOCK_D], dtype=tl.float32)
    b_sum_xx = tl.zeros([BLOCK_D], dtype=tl.float32)
    for t_start in range(0, length, BLOCK_T):
        o_t = t_start + tl.arange(0, BLOCK_T)
        m_t = o_t < length
        p_s = s + i_b * stride_sb + o_t[:, None] * stride_st + o_sd[None, :] * stride_sd
        b_s = tl.load(p_s, mask=m_t[:, None] & m_sd[None, :], other=float("-inf")).to(tl.float32)
        p_x = x + i_b * stride_xb + o_t[:, None] * stride_xt + o_d[None, :] * stride_xd
        b_x = tl.load(p_x, mask=m_t[:, None] & m_d[None, :], other=0.0).to(tl.float32)

        b_max_new = tl.maximum(b_max, tl.max(b_s, axis=0))
        # Channel lanes past D see only -inf scores; a finite shift keeps exp() off -inf - -inf.
        b_shift = tl.where(b_max_new == float("-inf"), 0.0, b_max_new)
        b_rescale = tl.exp(b_max - b_shift)
        b_e = tl.exp(b_s - b_shift[None, :])
        b_ex = b_e * b_x
        b_sum = b_sum * b_rescale + tl.sum(b_e, axis=0)
        b_sum_x = b_sum_x * b_rescale + tl.sum(b_ex, axis=0)
        if RETURN_STD:
            b_sum_xx = b_sum_xx * b_rescale + tl.sum(b_ex * b_x, axis=0)
        b_max = b_max_new

    b_sum = tl.where(m_sd, b_sum, 1.0)
    if PER_CHANNEL:
        o_state = i_b * D + o_sd
    else:
        o_state = i_b * NUM_D_BLOCKS + i_d + tl.arange(0, BLOCK_S)
    tl.store(row_max + o_state, b_max, mask=m_sd)
    tl.store(row_sum + o_state, b_sum, mask=m_sd)
    b_mean = b_sum_x / b_sum
    tl.store(mean + i_b * D + o_d, b_mean, mask=m_d)
    tl.store(mu + i_b * D + o_d, rounded_to(b_mean, mu.dtype.element_ty), mask=m_d)
    if RETURN_STD:
        b_var = b_sum_xx / b_sum - b_mean * b_mean
        tl.store(var + i_b * D + o_d, b_var, mask=m_d)
        b_sigma = tl.sqrt(tl.maximum(b_var, eps))
        tl.store(sigma + i_b * D + o_d, rounded_to(b_sigma, sigma.dtype.element_ty), mask=m_d)


@triton.jit
def _attention_pool_bwd_kernel(
    x, s, lengths, row_max, row_sum, mean, var, g_mu, g_sigma, dx, ds,
    B, T, D, NUM_D_BLOCKS,
    stride_xb, stride_xt, stride_xd,
    stride_sb, stride_st, stride_sd,
    eps,
    HAS_LENGTHS: tl.constexpr,
    RETURN_STD: tl.constexpr,
    PER_CHANNEL: tl.constexpr,
    BLOCK_T: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_S: tl.constexpr,
):
    i_d, i_b = tl.program_id(0), tl.program_id(1)
    o_d = i_d * BLOCK_D + tl.arange(0, BLOCK_D)
    m_d = o_d < D
    o_sd = i_d * BLOCK_D + tl.arange(0, BLOCK_S)
    m_sd = o_sd < D
    if HAS_LENGTHS:
        # Clamped to T: lengths that the caller chose not to check never move a read past x.
        length = tl.minimum(tl.load(lengths + i_b), T)
    else:
        length = T

    # a = dL/dmu through both outputs; c = sum_t w_t f_t, the softmax's centring term.
    b_mean = tl.load(mean + i_b * D + o_d, mask=m_d, other=0.0)
    b_a = tl.load(g_mu + i_b * D + o_d, mask=m_d, other=0.0).to(tl.float32)
    b_c = b_a * b_mean
    if RETURN_STD:
        b_var = tl.load(var + i_b * D + o_d, mask=m_d, other=0.0)
        b_g_sigma = tl.load(g_sigma + i_b * D + o_d, mask=m_d, other=0.0).to(tl.float32)
        # clamp(var, min=eps) passes the gradient where var >= eps, as torch.clamp does.
        b_g_var = tl.where(b_var >= eps, b_g_sigma / (2.0 * tl.sqrt(tl.maximum(b_var, eps))), 0.0)
        b_a = b_a - 2.0 * b_mean * b_g_var
        b_c = b_a * b_mean + b_g_var * (b_var + b_mean * b_mean)
    if PER_CHANNEL:
        o_state = i_b * D + o_sd
    else:
        o_state = i_b * NUM_D_BLOCKS + i_d + tl.arange(0, BLOCK_S)
    b_max = tl.load(row_max + o_state, mask=m_sd, other=0.0)
    b_inv_sum = 1.0 / tl.load(row_sum + o_state, mask=m_sd, other=1.0)

    # Padded frames are visited too: their dx and dscores are zeros that must be written.
    for t_start in range(0, T, BLOCK_T):
        o_t = t_start + tl.arange(0, BLOCK_T)
        m_t = o_t < length
        m_out = (o_t < T)[:, None] & m_d[None, :]
        p_s = s + i_b * stride_sb + o_t[:, None] * stride_st + o_sd[None, :] * stride_sd
        b_s = tl.load(p_s, mask=m_t[:, None] & m_sd[None, :], other=float("-inf")).to(tl.float32)
        p_x = x + i_b * stride_xb + o_t[:, None] * stride_xt + o_d[None, :] * stride_xd
        b_x = tl.load(p_x, mask=m_t[:, None] & m_d[None, :], other=0.0).to(tl.float32)
        b_w = tl.exp(b_s - b_max[None, :]) * b_inv_sum[None, :]

        if RETURN_STD:
            b_u = b_a[None, :] + b_g_var[None, :] * b_x
            b_dx = b_w * (b_u + b_g_var[None, :] * b_x)
            b_f = b_x * b_u - b_c[None, :]
        else:
            b_dx = b_w * b_a[None, :]
            b_f = b_x * b_a[None, :] - b_c[None, :]
        p_dx = dx + i_b * T * D + o_t[:, None] * D + o_d[None, :]
        tl.store(p_dx, rounded_to(b_dx, dx.dtype.element_ty), mask=m_out)

        if PER_CHANNEL:
            p_ds = ds + i_b * T * D + o_t[:, None] * D + o_d[None, :]
            tl.store(p_ds, rounded_to(b_w * b_f, ds.dtype.element_ty), mask=m_out)
        else:
            p_ds = ds + (i_d * B + i_b) * T + o_t
            tl.store(p_ds, tl.sum(b_w * b_f, axis=1), mask=o_t < T)


def _blocks(T: int, D: int, per_channel: bool) -> tuple[int, int, int]:
    block_t = min(32, max(16, triton.next_power_of_2(T)))
    block_d = min(64, max(16, triton.next_power_of_2(D)))
    return block_t, block_d, block_d if per_channel else 1


def _lengths_arg(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    # The kernel never reads this pointer without lengths, but it needs a tensor to bind.
    return x if lengths is None else lengths.to(device=x.device, dtype=torch.int32).contiguous()


def attention_pool_fwd(
    x: torch.Tensor, scores: torch.Tensor, lengths: torch.Tensor | None, return_std: bool, eps: float
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """Returns ``mu [B, D]``, ``sigma [B, D]`` (or None) in x.dtype, and for the backward the float32
    softmax max and sum stacked ``[2, B, D]`` (``[2, B, num_d_blocks]`` for shared scores: one
    copy per channel block, so no two programs write the same address) and the float32 mean (and
    variance) stacked ``[1 or 2, B, D]``."""
    B, T, D = x.shape
    per_channel = scores.ndim == 3
    block_t, block_d, block_s = _blocks(T, D, per_channel)
    num_d_blocks = triton.cdiv(D, block_d)
    mu = torch.empty(B, D, device=x.device, dtype=x.dtype)
    sigma = torch.empty_like(mu) if return_std else None
    moments = torch.empty(2 if return_std else 1, B, D, device=x.device, dtype=torch.float32)
    mean, var = moments[0], moments[1] if return_std else None
    softmax_state = torch.empty(2, B, D if per_channel else num_d_blocks, device=x.device, dtype=torch.float32)
    row_max, row_sum = softmax_state
    stride_sd = scores.stride(2) if per_channel else 0
    _attention_pool_fwd_kernel[(num_d_blocks, B)](
        x, scores, _lengths_arg(x, lengths), mu, sigma if return_std else mu, row_max, row_sum,
        mean, var if return_std else mean,
        T, D, num_d_blocks,
        *x.stride(), scores.stride(0), scores.stride(1), stride_sd,
        eps,
        HAS_LENGTHS=lengths is not None, RETURN_STD=return_std, PER_CHANNEL=per_channel,
        BLOCK_T=block_t, BLOCK_D=block_d, BLOCK_S=block_s,
    )
    return mu, sigma, softmax_state, moments


def attention_pool_bwd(
    x: torch.Tensor, scores: torch.Tensor, lengths: torch.Tensor | None, row_max: torch.Tensor,
    row_sum: torch.Tensor, mean: torch.Tensor, var: torch.Tensor | None, g_mu: torch.Tensor,
    g_sigma: torch.Tensor | None, eps: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns ``dx [B, T, D]`` and ``dscores`` (the scores' shape), both in x.dtype."""
    B, T, D = x.shape
    per_channel = scores.ndim == 3
    return_std = var is not None
    block_t, block_d, block_s = _blocks(T, D, per_channel)
    num_d_blocks = triton.cdiv(D, block_d)
    dx = torch.empty(B, T, D, device=x.device, dtype=x.dtype)
    if per_channel:
        ds = torch.empty(B, T, D, device=x.device, dtype=x.dtype)
    else:
        # One partial sum over channels per channel block, added up below: deterministic, no atomics.
        ds = torch.empty(num_d_blocks, B, T, device=x.device, dtype=torch.float32)
    g_mu = g_mu.contiguous()
    g_sigma = g_sigma.contiguous() if return_std else g_mu
    stride_sd = scores.stride(2) if per_channel else 0
    _attention_pool_bwd_kernel[(num_d_blocks, B)](
        x, scores, _lengths_arg(x, lengths), row_max, row_sum, mean, var if return_std else mean, g_mu, g_sigma,
        dx, ds,
        B, T, D, num_d_blocks,
        *x.stride(), scores.stride(0), scores.stride(1), stride_sd,
        eps,
        HAS_LENGTHS=lengths is not None, RETURN_STD=return_std, PER_CHANNEL=per_channel,
        BLOCK_T=block_t, BLOCK_D=block_d, BLOCK_S=block_s,
    )
    if not per_channel:
        ds = ds.sum(dim=0)
    return dx, ds.to(x.dtype)


def forward(x, scores, lengths, return_std: bool, eps: float):
    """The "triton" backend of ``ser_fast::attention_pool``: ``(mu, sigma, softmax_state, moments)``
    as :func:`attention_pool_fwd` returns them, sigma None without ``return_std``."""
    check_triton_device(x, scores)
    mu, sigma, softmax_state, moments = attention_pool_fwd(x, scores, lengths, return_std, eps)
    return mu, sigma if return_std else None, softmax_state, moments


def fake_state(x, scores, return_std: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Empty tensors shaped like the ``softmax_state`` and ``moments`` :func:`forward` returns."""
    B, T, D = x.shape
    per_channel = scores.ndim == 3
    _, block_d, _ = _blocks(T, D, per_channel)
    width = D if per_channel else triton.cdiv(D, block_d)
    f32 = {"dtype": torch.float32}
    return x.new_empty(2, B, width, **f32), x.new_empty(2 if return_std else 1, B, D, **f32)


def backward(g_mu, g_sigma, x, scores, lengths, softmax_state, moments, return_std: bool, eps: float,
             need_dx: bool, need_ds: bool):
    """``(dx, dscores)`` in x.dtype; the kernel writes both in its one pass, needed or not."""
    check_triton_device(x, scores)
    row_max, row_sum = softmax_state
    return attention_pool_bwd(x, scores, lengths, row_max, row_sum, moments[0], moments[1] if return_std else None,
                              g_mu, g_sigma if return_std else None, eps)


def attention_pool_triton(
    x: torch.Tensor,
    scores: torch.Tensor,
    lengths: torch.Tensor | None = None,
    *,
    return_std: bool = False,
    eps: float = 1e-5,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """:func:`ser_fast.ops.attention_pool` with the Triton kernels; the inputs are assumed checked.

    ``x [B, T, D]`` float32/float16/bfloat16, ``scores [B, T]`` or ``[B, T, D]`` of x's dtype,
    ``lengths [B]`` integer (or None). Returns ``mu [B, D]`` or ``(mu, sigma)`` in ``x.dtype``.
    """
    mu, sigma = fused_attention_pool(x, scores, lengths, return_std, eps, "triton")
    return (mu, sigma) if return_std else mu
