"""The torch path of ``moe``: the sorted dispatch with one matmul per expert over its contiguous
slice of routed frames, and an analytic backward that keeps only the pre-activations. Torch ops
only, so it runs on any device; on CPU it is the fast path."""

from __future__ import annotations

import torch

from ser_fast.ops._backend import backward_outside_autocast
from ser_fast.ops.moe.activations import activate, activation_grad
from ser_fast.ops.moe.routing import (
    Dispatch,
    at_least_float32,
    build_dispatch,
    gate_values,
    router_aux,
    top_k_experts,
)


class MoEExpertsFunction(torch.autograd.Function):
    """``o[p] = act(x[frame_p] @ w1[e_p] + b1[e_p]) @ w2[e_p] + b2[e_p]`` for the sorted pairs p."""

    @staticmethod
    def forward(ctx, x, w1, b1, w2, b2, pair_frame, bounds, activation):
        rows = x.index_select(0, pair_frame)
        pre = x.new_empty(rows.shape[0], w1.shape[-1])
        out = x.new_empty(rows.shape[0], w2.shape[-1])
        for e, (start, stop) in enumerate(bounds):
            if stop > start:
                torch.addmm(b1[e], rows[start:stop], w1[e], out=pre[start:stop])
        hidden = activate(pre, activation)
        for e, (start, stop) in enumerate(bounds):
            if stop > start:
                torch.addmm(b2[e], hidden[start:stop], w2[e], out=out[start:stop])
        # relu' can be read off the activations, so relu keeps those and skips recomputing them.
        ctx.save_for_backward(x, w1, w2, pair_frame, hidden if activation == "relu" else pre)
        ctx.bounds, ctx.activation = bounds, activation
        return out

    @staticmethod
    @backward_outside_autocast
    def backward(ctx, grad_out):
        x, w1, w2, pair_frame, saved = ctx.saved_tensors
        bounds, activation = ctx.bounds, ctx.activation
        grad_out = grad_out.contiguous()
        hidden = saved if activation == "relu" else activate(saved, activation)
        # Every expert's slice of the weight gradients is written by its matmul; only experts that
        # got no frame need zeros (zero-filling all of them costs as much as a matmul).
        grad_w1, grad_w2 = torch.empty_like(w1), torch.empty_like(w2)
        grad_b1 = x.new_empty(w1.shape[0], w1.shape[-1])
        grad_b2 = x.new_empty(w2.shape[0], w2.shape[-1])
        grad_pre = torch.empty_like(saved)
        for e, (start, stop) in enumerate(bounds):
            if stop == start:
                for grad in (grad_w1, grad_w2, grad_b1, grad_b2):
                    grad[e].zero_()
                continue
            torch.mm(grad_out[start:stop], w2[e].t(), out=grad_pre[start:stop])
            torch.mm(hidden[start:stop].t(), grad_out[start:stop], out=grad_w2[e])
            torch.sum(grad_out[start:stop], 0, out=grad_b2[e])
        grad_pre = activation_grad(hidden if activation == "relu" else saved, grad_pre, activation)
        rows = x.index_select(0, pair_frame)
        grad_rows = torch.empty_like(rows)
        for e, (start, stop) in enumerate(bounds):
            if stop > start:
                torch.mm(grad_pre[start:stop], w1[e].t(), out=grad_rows[start:stop])
                torch.mm(rows[start:stop].t(), grad_pre[start:stop], out=grad_w1[e])
                torch.sum(grad_pre[start:stop], 0, out=grad_b1[e])
        grad_x = torch.zeros_like(x).index_add_(0, pair_frame, grad_rows)
        return grad_x, grad_w1, grad_b1, grad_w2, grad_b2, None, None, None


def combine(out: torch.Tensor, gates: torch.Tensor, slot_pair: torch.Tensor) -> torch.Tensor:
    """``y[r, n] = Σ_j gates[r, n, j] · out[slot_pair[r, n, j]]``; padding frames (slot -1) get 0."""
    padding = slot_pair < 0
    picked = out[slot_pair.clamp(min=0)]
    weights = gates.masked_fill(padding, 0).to(out.dtype).unsqueeze(-2)
    return (weights @ picked).squeeze(-2)


def moe_torch(x, router_logits, w1, b1, w2, b2, *, k, activation, mask, normalize_gates):
    logits = router_logits if router_logits.dim() == 3 else router_logits.unsqueeze(0)
    valid = torch.ones(x.shape[0], dtype=torch.bool, device=x.device) if mask is None else ~mask
    probs = torch.softmax(at_least_float32(logits), dim=-1)
    experts = top_k_experts(logits, k)
    gates = gate_values(probs, experts, normalize_gates)
    dispatch = build_dispatch(experts, valid, w1.shape[0])
    out = MoEExpertsFunction.apply(x, w1, b1, w2, b2, dispatch.pair_frame, _bounds(dispatch), activation)
    y = combine(out, gates, dispatch.slot_pair)
    return y, router_aux(logits, probs, experts, valid)


def _bounds(dispatch: Dispatch) -> tuple[tuple[int, int], ...]:
    offsets = dispatch.expert_offsets.tolist()
    return tuple(zip(offsets[:-1], offsets[1:]))
