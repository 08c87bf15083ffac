"""``moe`` on Triton: routing, grouped expert GEMMs over the sorted pairs, combine, and their
backward (see ser_fast/ops/moe/README.md for the maths and the data flow). The routing runs as the
custom op ``ser_fast::moe_routing``; ``forward`` and ``backward`` are the "triton" backend of
``ser_fast::moe_experts`` (``ser_fast/ops/moe/op.py``)."""

from __future__ import annotations

import torch
from ser_fast.kernels._utils import check_triton_device
from ser_fast.kernels.moe_activation import ACTIVATION_IDS
from ser_fast.kernels.moe_combine import combine_bwd, combine_fwd, gather_bwd
from ser_fast.kernels.moe_grouped_gemm import grouped_gemm, weight_grad

from ser_fast.ops.moe.op import fused_moe_experts, fused_moe_routing
from ser_fast.ops.moe.routing import Dispatch, build_dispatch, router_aux


def moe_experts_fwd(x, w1, b1, w2, b2, dispatch: Dispatch, activation: int):
    """Pre-activations ``[P, H]`` (kept for the backward) and expert outputs ``[P, D_out]``."""
    pre = grouped_gemm(x, dispatch.pair_expert, w1, rows=dispatch.pair_frame, bias=b1)
    out = grouped_gemm(pre, dispatch.pair_expert, w2, bias=b2, act_on_load=True, activation=activation)
    return pre, out


def moe_experts_bwd(x, w1, w2, pre, grad_out, dispatch: Dispatch, activation: int, max_pairs_per_frame: int):
    grad_out = grad_out.contiguous()
    grad_pre = grouped_gemm(grad_out, dispatch.pair_expert, w2.transpose(1, 2), pre=pre, activation=activation)
    grad_w2, grad_b2 = weight_grad(pre, grad_out, dispatch.expert_offsets, act_on_load=True, activation=activation)
    grad_rows = grouped_gemm(grad_pre, dispatch.pair_expert, w1.transpose(1, 2))
    grad_w1, grad_b1 = weight_grad(x, grad_pre, dispatch.expert_offsets, rows=dispatch.pair_frame)
    grad_x = gather_bwd(grad_rows, dispatch.pair_frame, x.shape[0], max_pairs_per_frame)
    return grad_x, grad_w1, grad_b1, grad_w2, grad_b2


def forward(x, experts, gates, valid, w1, b1, w2, b2, activation: str):
    """``y [R, N, D_out]`` in x's dtype, and the state the backward reads: the dispatch plan (the
    pairs' frames and experts ``[P]``, the experts' offsets ``[E + 1]``, ``slot_pair [R, N, k]``),
    the pre-activations ``[P, H]`` and the expert outputs ``[P, D_out]``."""
    check_triton_device(x, w1, b1, w2, b2)
    routers, frames, k = experts.shape
    dispatch = build_dispatch(experts, valid, w1.shape[0])
    pre, out = moe_experts_fwd(x.contiguous(), w1.contiguous(), b1.contiguous(), w2.contiguous(), b2.contiguous(),
                               dispatch, ACTIVATION_IDS[activation])
    y = combine_fwd(out, gates.reshape(-1, k).float().contiguous(), dispatch.slot_pair.reshape(-1, k))
    plan = (dispatch.pair_frame, dispatch.pair_expert, dispatch.expert_offsets, dispatch.slot_pair)
    return y.view(routers, frames, -1), *plan, pre, out


def backward(grad_y, x, gates, w1, w2, state, activation: str):
    """``(dx, dgates, dw1, db1, dw2, db2)``; ``state`` as :func:`forward` made it."""
    check_triton_device(x, w1, w2)
    pair_frame, pair_expert, expert_offsets, slot_pair, pre, out = state
    routers, frames, k = slot_pair.shape
    flat_slots = slot_pair.reshape(-1, k)
    grad_gates, grad_out = combine_bwd(out, gates.reshape(-1, k).float().contiguous(), flat_slots,
                                       _pair_slots(flat_slots, routers, out.shape[0]),
                                       grad_y.reshape(routers * frames, -1))
    dispatch = Dispatch(pair_frame, pair_expert, expert_offsets, slot_pair)
    grad_x, grad_w1, grad_b1, grad_w2, grad_b2 = moe_experts_bwd(
        x.contiguous(), w1.contiguous(), w2.contiguous(), pre, grad_out, dispatch, ACTIVATION_IDS[activation],
        min(w1.shape[0], routers * k),
    )
    return grad_x, grad_gates.view(routers, frames, k).to(gates.dtype), grad_w1, grad_b1, grad_w2, grad_b2


def _pair_slots(flat_slots: torch.Tensor, routers: int, num_pairs: int) -> torch.Tensor:
    """``[R, P]``: the flat slot (r·N + n)·k + j through which router r reads pair p, or -1."""
    slots_per_router = flat_slots.numel() // routers
    pair_slot = torch.full((routers, num_pairs + 1), -1, dtype=torch.int64, device=flat_slots.device)
    slot_ids = torch.arange(flat_slots.numel(), device=flat_slots.device).view(routers, slots_per_router)
    targets = flat_slots.view(routers, slots_per_router).clamp(min=-1) % (num_pairs + 1)
    pair_slot.scatter_(1, targets, slot_ids)
    return pair_slot[:, :num_pairs].contiguous()


def moe_triton(x, router_logits, w1, b1, w2, b2, *, k, activation, mask, normalize_gates):
    check_triton_device(x, router_logits, w1, b1, w2, b2)
    logits = router_logits if router_logits.dim() == 3 else router_logits.unsqueeze(0)
    routers, frames, num_experts = logits.shape
    valid = torch.ones(frames, dtype=torch.bool, device=x.device) if mask is None else ~mask
    probs, experts, gates = fused_moe_routing(logits.reshape(-1, num_experts), k, normalize_gates)
    probs = probs.view(routers, frames, num_experts)
    experts = experts.view(routers, frames, k)
    y = fused_moe_experts(x, experts, gates.view(routers, frames, k), valid, w1, b1, w2, b2, activation, "triton")[0]
    return y, router_aux(logits, probs, experts, valid)
