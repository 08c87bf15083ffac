"""``moe`` on Triton: routing, grouped expert GEMMs over the sorted pairs, combine, and their
backward (see ser_fast/ops/moe/README.md for the maths and the data flow)."""

from __future__ import annotations

import torch
from ser_fast.kernels._utils import check_triton_device
from ser_fast.kernels.moe_activation import ACTIVATION_IDS
from ser_fast.kernels.moe_combine import combine_bwd, combine_fwd, gather_bwd
from ser_fast.kernels.moe_grouped_gemm import grouped_gemm, weight_grad
from ser_fast.kernels.moe_routing import MoERoutingFunction

from ser_fast.ops._backend import backward_outside_autocast
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


class MoEExpertsFunction(torch.autograd.Function):
    """``out[p] = act(x[frame_p] @ w1[e_p] + b1[e_p]) @ w2[e_p] + b2[e_p]`` for the sorted pairs p."""

    @staticmethod
    def forward(ctx, x, w1, b1, w2, b2, dispatch, activation, max_pairs_per_frame):
        x = x.contiguous()
        pre, out = moe_experts_fwd(x, w1, b1, w2, b2, dispatch, activation)
        ctx.save_for_backward(x, w1, w2, pre)
        ctx.dispatch, ctx.activation, ctx.max_pairs = dispatch, activation, max_pairs_per_frame
        return out

    @staticmethod
    @backward_outside_autocast
    def backward(ctx, grad_out):
        x, w1, w2, pre = ctx.saved_tensors
        grads = moe_experts_bwd(x, w1, w2, pre, grad_out, ctx.dispatch, ctx.activation, ctx.max_pairs)
        return (*grads, None, None, None)


class MoECombineFunction(torch.autograd.Function):
    """``y[r, n] = Σ_j gates[r, n, j] · out[slot_pair[r, n, j]]``."""

    @staticmethod
    def forward(ctx, out, gates, slot_pair):
        routers, frames, k = slot_pair.shape
        flat_slots = slot_pair.reshape(-1, k)
        flat_gates = gates.reshape(-1, k).contiguous()
        y = combine_fwd(out, flat_gates, flat_slots)
        ctx.save_for_backward(out, flat_gates, flat_slots)
        ctx.shape = (routers, frames)
        return y.view(routers, frames, -1)

    @staticmethod
    @backward_outside_autocast
    def backward(ctx, grad_y):
        out, flat_gates, flat_slots = ctx.saved_tensors
        routers, frames = ctx.shape
        grad_gates, grad_out = combine_bwd(out, flat_gates, flat_slots, _pair_slots(flat_slots, routers, out.shape[0]),
                                           grad_y.reshape(routers * frames, -1))
        return grad_out, grad_gates.view(routers, frames, -1), None


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
    probs, experts, gates = MoERoutingFunction.apply(logits.reshape(-1, num_experts), k, normalize_gates)
    probs = probs.view(routers, frames, num_experts)
    experts = experts.view(routers, frames, k)
    dispatch = build_dispatch(experts, valid, num_experts)
    out = MoEExpertsFunction.apply(x, w1.contiguous(), b1.contiguous(), w2.contiguous(), b2.contiguous(), dispatch,
                                   ACTIVATION_IDS[activation], min(num_experts, routers * k))
    y = MoECombineFunction.apply(out, gates.view(routers, frames, k), dispatch.slot_pair)
    return y, router_aux(logits, probs, experts, valid)
