"""Triton routing for ``moe``: softmax over experts and top-k per frame, and its backward; the
custom op ``ser_fast::moe_routing`` (``ser_fast/ops/moe/op.py``) runs them."""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _moe_routing_fwd_kernel(logits_ptr, probs_ptr, experts_ptr, gates_ptr, M, E,
                            K: tl.constexpr, NORMALIZE: tl.constexpr, BLOCK_M: tl.constexpr,
                            BLOCK_E: tl.constexpr, BLOCK_K: tl.constexpr):
    i_m = tl.program_id(0)
    o_m = i_m * BLOCK_M + tl.arange(0, BLOCK_M)
    o_e = tl.arange(0, BLOCK_E)
    m_m = o_m < M
    m_e = o_e < E
    m_me = m_m[:, None] & m_e[None, :]
    p_logits = logits_ptr + o_m[:, None] * E + o_e[None, :]
    # Rows past M read finite zeros (no -inf − -inf); experts past E read -inf (no probability).
    b_logits = tl.load(p_logits, mask=m_me, other=0.0).to(tl.float32)
    b_logits = tl.where(m_e[None, :], b_logits, float("-inf"))
    b_max = tl.max(b_logits, axis=1)
    b_exp = tl.exp(b_logits - b_max[:, None])
    b_probs = b_exp / tl.sum(b_exp, axis=1)[:, None]
    tl.store(probs_ptr + o_m[:, None] * E + o_e[None, :], b_probs, mask=m_me)
    # Top-k by repeated argmax over the logits (finite, checked at the boundary); an exact tie goes
    # to the lowest expert index, as torch.sort(stable=True) does on the torch path.
    b_taken = o_e[None, :] >= E
    o_k = tl.arange(0, BLOCK_K)
    b_experts = tl.zeros([BLOCK_M, BLOCK_K], dtype=tl.int64)
    b_gates = tl.zeros([BLOCK_M, BLOCK_K], dtype=tl.float32)
    for j in tl.static_range(K):
        b_best = tl.max(tl.where(b_taken, float("-inf"), b_logits), axis=1)
        b_is_best = (b_logits == b_best[:, None]) & (~b_taken)
        # No best at all (NaN logits that the caller chose not to check) picks the last expert
        # rather than an index past E.
        b_expert = tl.minimum(tl.min(tl.where(b_is_best, o_e[None, :], BLOCK_E), axis=1), E - 1)
        b_hit = o_e[None, :] == b_expert[:, None]
        b_taken = b_taken | b_hit
        b_experts = tl.where(o_k[None, :] == j, b_expert[:, None].to(tl.int64), b_experts)
        b_gates = tl.where(o_k[None, :] == j, tl.sum(tl.where(b_hit, b_probs, 0.0), axis=1)[:, None], b_gates)
    if NORMALIZE:
        b_total = tl.sum(b_gates, axis=1)
        b_gates = b_gates / tl.where(m_m, b_total, 1.0)[:, None]
    m_mk = m_m[:, None] & (o_k[None, :] < K)
    tl.store(experts_ptr + o_m[:, None] * K + o_k[None, :], b_experts, mask=m_mk)
    tl.store(gates_ptr + o_m[:, None] * K + o_k[None, :], b_gates, mask=m_mk)


@triton.jit
def _moe_routing_bwd_kernel(probs_ptr, experts_ptr, gates_ptr, grad_gates_ptr, grad_probs_ptr, grad_logits_ptr,
                            M, E, K: tl.constexpr, NORMALIZE: tl.constexpr, HAS_GRAD_PROBS: tl.constexpr,
                            BLOCK_M: tl.constexpr, BLOCK_E: tl.constexpr):
    i_m = tl.program_id(0)
    o_m = i_m * BLOCK_M + tl.arange(0, BLOCK_M)
    o_e = tl.arange(0, BLOCK_E)
    m_m = o_m < M
    m_me = m_m[:, None] & (o_e[None, :] < E)
    b_probs = tl.load(probs_ptr + o_m[:, None] * E + o_e[None, :], mask=m_me, other=0.0)
    if HAS_GRAD_PROBS:
        b_dprobs = tl.load(grad_probs_ptr + o_m[:, None] * E + o_e[None, :], mask=m_me, other=0.0)
    else:
        b_dprobs = tl.zeros([BLOCK_M, BLOCK_E], dtype=tl.float32)
    # Normalised gates g_j = p_j / S (S = Σ chosen p): ∂/∂p_j = (dg_j − Σ_i dg_i g_i) / S.
    b_dot = tl.zeros([BLOCK_M], dtype=tl.float32)
    b_sum = tl.zeros([BLOCK_M], dtype=tl.float32)
    if NORMALIZE:
        for j in tl.static_range(K):
            b_expert = tl.load(experts_ptr + o_m * K + j, mask=m_m, other=0)
            b_dot += tl.load(grad_gates_ptr + o_m * K + j, mask=m_m, other=0.0) * \
                tl.load(gates_ptr + o_m * K + j, mask=m_m, other=0.0)
            b_sum += tl.sum(tl.where(o_e[None, :] == b_expert[:, None], b_probs, 0.0), axis=1)
    for j in tl.static_range(K):
        b_expert = tl.load(experts_ptr + o_m * K + j, mask=m_m, other=0)
        b_dgate = tl.load(grad_gates_ptr + o_m * K + j, mask=m_m, other=0.0)
        if NORMALIZE:
            b_dgate = (b_dgate - b_dot) / tl.where(m_m, b_sum, 1.0)
        b_dprobs += tl.where(o_e[None, :] == b_expert[:, None], b_dgate[:, None], 0.0)
    # Softmax backward: dl = p ⊙ (dp − Σ_e p_e dp_e).
    b_inner = tl.sum(b_probs * b_dprobs, axis=1)
    b_dlogits = b_probs * (b_dprobs - b_inner[:, None])
    tl.store(grad_logits_ptr + o_m[:, None] * E + o_e[None, :], b_dlogits, mask=m_me)


def _blocks(num_experts: int) -> tuple[int, int]:
    block_e = triton.next_power_of_2(num_experts)
    return max(1, min(64, 4096 // block_e)), block_e


def moe_routing_fwd(logits: torch.Tensor, k: int, normalize: bool):
    """``[M, E]`` logits → float32 probs ``[M, E]``, int64 experts ``[M, k]``, float32 gates ``[M, k]``."""
    logits = logits.contiguous()
    rows, num_experts = logits.shape
    probs = torch.empty(rows, num_experts, dtype=torch.float32, device=logits.device)
    experts = torch.empty(rows, k, dtype=torch.int64, device=logits.device)
    gates = torch.empty(rows, k, dtype=torch.float32, device=logits.device)
    block_m, block_e = _blocks(num_experts)
    _moe_routing_fwd_kernel[(triton.cdiv(rows, block_m),)](
        logits, probs, experts, gates, rows, num_experts, K=k, NORMALIZE=normalize, BLOCK_M=block_m, BLOCK_E=block_e,
        BLOCK_K=triton.next_power_of_2(k))
    return probs, experts, gates


def moe_routing_bwd(probs, experts, gates, grad_gates, grad_probs, normalize: bool) -> torch.Tensor:
    rows, num_experts = probs.shape
    grad_logits = torch.empty_like(probs)
    block_m, block_e = _blocks(num_experts)
    has_grad_probs = grad_probs is not None
    _moe_routing_bwd_kernel[(triton.cdiv(rows, block_m),)](
        probs, experts, gates, grad_gates.float().contiguous(),
        grad_probs.float().contiguous() if has_grad_probs else probs, grad_logits, rows, num_experts,
        K=experts.shape[1], NORMALIZE=normalize, HAS_GRAD_PROBS=has_grad_probs, BLOCK_M=block_m, BLOCK_E=block_e)
    return grad_logits
