"""Grouped GEMMs over frames sorted by expert, for ``moe``.

``out[p] = A[row_p] @ W[e_p] (+ bias[e_p])`` for every routed pair p. A block of BLOCK_M pairs may
straddle experts: it multiplies its rows of each expert it holds by that expert's weights (rows of
other experts masked to zero), so no expert's frames are padded to a block multiple. The weight
gradient ``dW[e] = A_eᵀ G_e`` reduces over each expert's contiguous slice of pairs.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from ser_fast.kernels._utils import (
    INTERPRETED,
    dot_precision,
    rounded_to,
    upcast_dot_operands,
)
from ser_fast.kernels.moe_activation import activation_derivative, apply_activation


@triton.jit
def _moe_grouped_gemm_kernel(a_ptr, rows_ptr, pair_expert_ptr, w_ptr, bias_ptr, pre_ptr, out_ptr,
                             P, K, N, stride_am, stride_we, stride_wk, stride_wn,
                             GATHER: tl.constexpr, HAS_BIAS: tl.constexpr, ACT_ON_LOAD: tl.constexpr,
                             ACT_GRAD_EPILOGUE: tl.constexpr, ACTIVATION: tl.constexpr,
                             UPCAST: tl.constexpr, PRECISION: tl.constexpr, BLOCK_M: tl.constexpr,
                             BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    i_m, i_n = tl.program_id(0), tl.program_id(1)
    o_m = i_m * BLOCK_M + tl.arange(0, BLOCK_M)
    o_n = i_n * BLOCK_N + tl.arange(0, BLOCK_N)
    m_m = o_m < P
    m_n = o_n < N
    b_expert = tl.load(pair_expert_ptr + o_m, mask=m_m, other=-1)
    e_first = tl.load(pair_expert_ptr + i_m * BLOCK_M)
    e_last = tl.load(pair_expert_ptr + tl.minimum(i_m * BLOCK_M + BLOCK_M, P) - 1)
    if GATHER:
        b_rows = tl.load(rows_ptr + o_m, mask=m_m, other=0)
    else:
        b_rows = o_m
    b_acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for e in range(e_first, e_last + 1):
        m_row = m_m & (b_expert == e)
        for k0 in range(0, K, BLOCK_K):
            o_k = k0 + tl.arange(0, BLOCK_K)
            m_k = o_k < K
            p_a = a_ptr + b_rows[:, None].to(tl.int64) * stride_am + o_k[None, :]
            b_a = tl.load(p_a, mask=m_row[:, None] & m_k[None, :], other=0.0)
            if ACT_ON_LOAD:
                b_a = rounded_to(apply_activation(b_a.to(tl.float32), ACTIVATION), a_ptr.dtype.element_ty)
            p_w = w_ptr + e * stride_we + o_k[:, None] * stride_wk + o_n[None, :] * stride_wn
            b_w = tl.load(p_w, mask=m_k[:, None] & m_n[None, :], other=0.0)
            if UPCAST:
                b_a, b_w = b_a.to(tl.float32), b_w.to(tl.float32)
            b_acc += tl.dot(b_a, b_w, input_precision=PRECISION)
        if HAS_BIAS:
            b_bias = tl.load(bias_ptr + e * N + o_n, mask=m_n, other=0.0).to(tl.float32)
            b_acc += tl.where(m_row[:, None], b_bias[None, :], 0.0)
    m_out = m_m[:, None] & m_n[None, :]
    o_out = o_m[:, None].to(tl.int64) * N + o_n[None, :]
    if ACT_GRAD_EPILOGUE:
        b_pre = tl.load(pre_ptr + o_out, mask=m_out, other=0.0).to(tl.float32)
        b_acc = b_acc * activation_derivative(b_pre, ACTIVATION)
    tl.store(out_ptr + o_out, rounded_to(b_acc, out_ptr.dtype.element_ty), mask=m_out)


@triton.jit
def _moe_weight_grad_kernel(a_ptr, rows_ptr, g_ptr, expert_offsets_ptr, dw_ptr, db_ptr, K, N, stride_am,
                            GATHER: tl.constexpr, ACT_ON_LOAD: tl.constexpr, ACTIVATION: tl.constexpr,
                            HAS_BIAS: tl.constexpr, UPCAST: tl.constexpr, PRECISION: tl.constexpr,
                            BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr):
    i_e, i_k, i_n = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    o_k = i_k * BLOCK_K + tl.arange(0, BLOCK_K)
    o_n = i_n * BLOCK_N + tl.arange(0, BLOCK_N)
    m_k = o_k < K
    m_n = o_n < N
    start = tl.load(expert_offsets_ptr + i_e)
    stop = tl.load(expert_offsets_ptr + i_e + 1)
    b_dw = tl.zeros([BLOCK_K, BLOCK_N], dtype=tl.float32)
    b_db = tl.zeros([BLOCK_N], dtype=tl.float32)
    for m0 in range(start, stop, BLOCK_M):
        o_m = m0 + tl.arange(0, BLOCK_M)
        m_m = o_m < stop
        if GATHER:
            b_rows = tl.load(rows_ptr + o_m, mask=m_m, other=0)
        else:
            b_rows = o_m
        b_a = tl.load(a_ptr + b_rows[:, None].to(tl.int64) * stride_am + o_k[None, :],
                      mask=m_m[:, None] & m_k[None, :], other=0.0)
        if ACT_ON_LOAD:
            b_a = rounded_to(apply_activation(b_a.to(tl.float32), ACTIVATION), a_ptr.dtype.element_ty)
        b_g = tl.load(g_ptr + o_m[:, None].to(tl.int64) * N + o_n[None, :], mask=m_m[:, None] & m_n[None, :],
                      other=0.0)
        if HAS_BIAS:
            b_db += tl.sum(b_g.to(tl.float32), axis=0)
        if UPCAST:
            b_a, b_g = b_a.to(tl.float32), b_g.to(tl.float32)
        b_dw += tl.dot(tl.trans(b_a), b_g, input_precision=PRECISION)
    p_dw = dw_ptr + i_e.to(tl.int64) * K * N + o_k[:, None] * N + o_n[None, :]
    tl.store(p_dw, rounded_to(b_dw, dw_ptr.dtype.element_ty), mask=m_k[:, None] & m_n[None, :])
    if HAS_BIAS and i_k == 0:
        tl.store(db_ptr + i_e * N + o_n, rounded_to(b_db, db_ptr.dtype.element_ty), mask=m_n)


def _gemm_blocks() -> dict[str, int]:
    # The interpreter runs each program in Python: fewer, larger blocks are faster there.
    if INTERPRETED:
        return dict(BLOCK_M=32, BLOCK_N=64, BLOCK_K=64)
    return dict(BLOCK_M=64, BLOCK_N=64, BLOCK_K=32)


def grouped_gemm(a: torch.Tensor, pair_expert: torch.Tensor, w: torch.Tensor, *, rows: torch.Tensor | None = None,
                 bias: torch.Tensor | None = None, act_on_load: bool = False, pre: torch.Tensor | None = None,
                 activation: int = 0, out_dtype: torch.dtype | None = None) -> torch.Tensor:
    """``out[p] = act?(a[rows[p]]) @ w[pair_expert[p]] + bias[pair_expert[p]]``, times act'(pre[p]) if
    ``pre`` is given. ``a [M, K]`` (row-contiguous), ``w [E, K, N]`` with any strides (a transposed
    view works), ``pair_expert [P]`` sorted; ``rows [P]`` gathers rows of ``a`` (None: row p)."""
    num_pairs = pair_expert.numel()
    k_dim, n_dim = w.shape[1], w.shape[2]
    out = torch.empty(num_pairs, n_dim, dtype=out_dtype or a.dtype, device=a.device)
    if num_pairs == 0:
        return out
    a = a if a.stride(-1) == 1 else a.contiguous()
    blocks = _gemm_blocks()
    grid = (triton.cdiv(num_pairs, blocks["BLOCK_M"]), triton.cdiv(n_dim, blocks["BLOCK_N"]))
    _moe_grouped_gemm_kernel[grid](
        a, rows if rows is not None else pair_expert, pair_expert, w, bias if bias is not None else w,
        pre if pre is not None else a, out, num_pairs, k_dim, n_dim, a.stride(0), w.stride(0), w.stride(1), w.stride(2),
        GATHER=rows is not None, HAS_BIAS=bias is not None, ACT_ON_LOAD=act_on_load,
        ACT_GRAD_EPILOGUE=pre is not None, ACTIVATION=activation, UPCAST=upcast_dot_operands(a.dtype),
        PRECISION=dot_precision(a.dtype), **blocks)
    return out


def weight_grad(a: torch.Tensor, grad: torch.Tensor, expert_offsets: torch.Tensor, *, rows: torch.Tensor | None = None,
                act_on_load: bool = False, activation: int = 0, with_bias: bool = True):
    """``dW[e] = act?(a[rows])_eᵀ @ grad_e`` ``[E, K, N]`` and ``db[e] = Σ grad_e`` ``[E, N]``."""
    num_experts = expert_offsets.numel() - 1
    k_dim, n_dim = a.shape[1], grad.shape[1]
    dw = torch.empty(num_experts, k_dim, n_dim, dtype=a.dtype, device=a.device)
    db = torch.empty(num_experts, n_dim, dtype=a.dtype, device=a.device) if with_bias else None
    a = a if a.stride(-1) == 1 else a.contiguous()
    grad = grad.contiguous()
    blocks = _gemm_blocks()
    grid = (num_experts, triton.cdiv(k_dim, blocks["BLOCK_K"]), triton.cdiv(n_dim, blocks["BLOCK_N"]))
    _moe_weight_grad_kernel[grid](
        a, rows if rows is not None else expert_offsets, grad, expert_offsets, dw, db if with_bias else dw,
        k_dim, n_dim, a.stride(0), GATHER=rows is not None, ACT_ON_LOAD=act_on_load, ACTIVATION=activation,
        HAS_BIAS=with_bias, UPCAST=upcast_dot_operands(a.dtype), PRECISION=dot_precision(a.dtype), **blocks)
    return dw, db

