"""Combine and gather for ``moe``: each router's gate-weighted sum of its frames' expert outputs,
the backward of both, and the sum of the pairs' input gradients back onto their frames. Every sum
reads its terms through an index (no atomics), so results do not depend on scheduling."""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from ser_fast.kernels._utils import rounded_to


@triton.jit
def _moe_combine_fwd_kernel(out_ptr, gates_ptr, slot_pair_ptr, y_ptr, S, D, K: tl.constexpr,
                            BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr):
    # y[s] = Σ_j gates[s, j] · out[slot_pair[s, j]] for the slots s = r·N + n; pair -1 is padding.
    i_s, i_d = tl.program_id(0), tl.program_id(1)
    o_s = i_s * BLOCK_S + tl.arange(0, BLOCK_S)
    o_d = i_d * BLOCK_D + tl.arange(0, BLOCK_D)
    m_s = o_s < S
    m_d = o_d < D
    b_y = tl.zeros([BLOCK_S, BLOCK_D], dtype=tl.float32)
    for j in tl.static_range(K):
        b_pair = tl.load(slot_pair_ptr + o_s * K + j, mask=m_s, other=-1)
        b_gate = tl.load(gates_ptr + o_s * K + j, mask=m_s, other=0.0)
        m_pair = b_pair >= 0
        b_out = tl.load(out_ptr + b_pair[:, None] * D + o_d[None, :], mask=m_pair[:, None] & m_d[None, :], other=0.0)
        b_y += tl.where(m_pair, b_gate, 0.0)[:, None] * b_out.to(tl.float32)
    tl.store(y_ptr + o_s[:, None].to(tl.int64) * D + o_d[None, :], rounded_to(b_y, y_ptr.dtype.element_ty),
             mask=m_s[:, None] & m_d[None, :])


@triton.jit
def _moe_combine_bwd_gates_kernel(out_ptr, grad_y_ptr, slot_pair_ptr, grad_gates_ptr, S, D, K: tl.constexpr,
                                  BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr):
    # dgates[s, j] = <dy[s], out[slot_pair[s, j]]>.
    i_s = tl.program_id(0)
    o_s = i_s * BLOCK_S + tl.arange(0, BLOCK_S)
    m_s = o_s < S
    for j in tl.static_range(K):
        b_pair = tl.load(slot_pair_ptr + o_s * K + j, mask=m_s, other=-1)
        m_pair = b_pair >= 0
        b_dot = tl.zeros([BLOCK_S], dtype=tl.float32)
        for d0 in range(0, D, BLOCK_D):
            o_d = d0 + tl.arange(0, BLOCK_D)
            m_d = o_d < D
            b_dy = tl.load(grad_y_ptr + o_s[:, None].to(tl.int64) * D + o_d[None, :],
                           mask=m_s[:, None] & m_d[None, :], other=0.0)
            b_out = tl.load(out_ptr + b_pair[:, None] * D + o_d[None, :], mask=m_pair[:, None] & m_d[None, :],
                            other=0.0)
            b_dot += tl.sum(b_dy.to(tl.float32) * b_out.to(tl.float32), axis=1)
        tl.store(grad_gates_ptr + o_s * K + j, b_dot, mask=m_s)


@triton.jit
def _moe_combine_bwd_rows_kernel(grad_y_ptr, gates_ptr, pair_slot_ptr, grad_out_ptr, P, D, R, K: tl.constexpr,
                                 BLOCK_P: tl.constexpr, BLOCK_D: tl.constexpr):
    # dout[p] = Σ_r gates[slot] · dy[slot // K] over the routers r whose choice slot reads pair p.
    i_p, i_d = tl.program_id(0), tl.program_id(1)
    o_p = i_p * BLOCK_P + tl.arange(0, BLOCK_P)
    o_d = i_d * BLOCK_D + tl.arange(0, BLOCK_D)
    m_p = o_p < P
    m_d = o_d < D
    b_acc = tl.zeros([BLOCK_P, BLOCK_D], dtype=tl.float32)
    for r in range(R):
        b_slot = tl.load(pair_slot_ptr + r * P + o_p, mask=m_p, other=-1)
        m_slot = b_slot >= 0
        b_gate = tl.load(gates_ptr + b_slot, mask=m_slot, other=0.0)
        b_dy = tl.load(grad_y_ptr + (b_slot // K)[:, None] * D + o_d[None, :], mask=m_slot[:, None] & m_d[None, :],
                       other=0.0)
        b_acc += b_gate[:, None] * b_dy.to(tl.float32)
    tl.store(grad_out_ptr + o_p[:, None].to(tl.int64) * D + o_d[None, :],
             rounded_to(b_acc, grad_out_ptr.dtype.element_ty), mask=m_p[:, None] & m_d[None, :])


@triton.jit
def _moe_gather_bwd_kernel(grad_rows_ptr, frame_order_ptr, frame_offsets_ptr, grad_x_ptr, N, D,
                           MAX_PAIRS: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    # dx[n] = Σ over frame n's pairs (frame_order[frame_offsets[n]:frame_offsets[n+1]]) of drows[p].
    i_n, i_d = tl.program_id(0), tl.program_id(1)
    o_n = i_n * BLOCK_N + tl.arange(0, BLOCK_N)
    o_d = i_d * BLOCK_D + tl.arange(0, BLOCK_D)
    m_n = o_n < N
    m_d = o_d < D
    b_start = tl.load(frame_offsets_ptr + o_n, mask=m_n, other=0)
    b_stop = tl.load(frame_offsets_ptr + o_n + 1, mask=m_n, other=0)
    b_acc = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    for i in tl.static_range(MAX_PAIRS):
        m_i = b_start + i < b_stop
        b_pair = tl.load(frame_order_ptr + b_start + i, mask=m_i, other=0)
        b_acc += tl.load(grad_rows_ptr + b_pair[:, None] * D + o_d[None, :], mask=m_i[:, None] & m_d[None, :],
                         other=0.0).to(tl.float32)
    tl.store(grad_x_ptr + o_n[:, None].to(tl.int64) * D + o_d[None, :], rounded_to(b_acc, grad_x_ptr.dtype.element_ty),
             mask=m_n[:, None] & m_d[None, :])


BLOCK_ROWS, BLOCK_D = 32, 64


def combine_fwd(out: torch.Tensor, gates: torch.Tensor, slot_pair: torch.Tensor) -> torch.Tensor:
    """``out [P, D]``, float32 ``gates [S, K]``, ``slot_pair [S, K]`` → ``y [S, D]`` in out's dtype."""
    slots, k = slot_pair.shape
    dim = out.shape[1]
    y = torch.empty(slots, dim, dtype=out.dtype, device=out.device)
    grid = (triton.cdiv(slots, BLOCK_ROWS), triton.cdiv(dim, BLOCK_D))
    _moe_combine_fwd_kernel[grid](out, gates, slot_pair, y, slots, dim, K=k, BLOCK_S=BLOCK_ROWS, BLOCK_D=BLOCK_D)
    return y


def combine_bwd(out, gates, slot_pair, pair_slot, grad_y):
    """Gradients of ``combine_fwd``: float32 ``dgates [S, K]`` and ``dout [P, D]``."""
    slots, k = slot_pair.shape
    num_pairs, dim = out.shape
    grad_y = grad_y.contiguous()
    grad_gates = torch.empty(slots, k, dtype=torch.float32, device=out.device)
    _moe_combine_bwd_gates_kernel[(triton.cdiv(slots, BLOCK_ROWS),)](
        out, grad_y, slot_pair, grad_gates, slots, dim, K=k, BLOCK_S=BLOCK_ROWS, BLOCK_D=BLOCK_D)
    grad_out = torch.empty_like(out)
    if num_pairs:
        grid = (triton.cdiv(num_pairs, BLOCK_ROWS), triton.cdiv(dim, BLOCK_D))
        _moe_combine_bwd_rows_kernel[grid](grad_y, gates, pair_slot, grad_out, num_pairs, dim, pair_slot.shape[0],
                                           K=k, BLOCK_P=BLOCK_ROWS, BLOCK_D=BLOCK_D)
    return grad_gates, grad_out


def gather_bwd(grad_rows: torch.Tensor, pair_frame: torch.Tensor, num_frames: int, max_pairs: int) -> torch.Tensor:
    """Sum each pair's ``grad_rows [P, D]`` onto its frame → ``[N, D]`` (frames with no pair get 0)."""
    dim = grad_rows.shape[1]
    frame_order = torch.sort(pair_frame, stable=True).indices
    frame_offsets = torch.zeros(num_frames + 1, dtype=torch.int64, device=pair_frame.device)
    torch.cumsum(torch.bincount(pair_frame, minlength=num_frames), 0, out=frame_offsets[1:])
    grad_x = torch.empty(num_frames, dim, dtype=grad_rows.dtype, device=grad_rows.device)
    grid = (triton.cdiv(num_frames, BLOCK_ROWS), triton.cdiv(dim, BLOCK_D))
    _moe_gather_bwd_kernel[grid](grad_rows.contiguous(), frame_order, frame_offsets, grad_x, num_frames, dim,
                                 MAX_PAIRS=max_pairs, BLOCK_N=BLOCK_ROWS, BLOCK_D=BLOCK_D)
    return grad_x
