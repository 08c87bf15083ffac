"""The torch path of ``moe``: the sorted dispatch with one matmul per expert over its contiguous slice of routed frames,
and an analytic backward that keeps only the pre-activations. Torch ops only, so it runs on any device; on CPU it is the
fast path.

The routing (softmax, top-k, gates) and the aux losses are plain torch ops of fixed shapes, which autograd and
torch.compile take as they are. The dispatch, the experts and the combine are the custom op ``ser_fast::moe_experts``
(``op.py``): the dispatch's size depends on the routing's values, and the per-expert matmuls need each expert's slice on
the host. ``forward``, ``backward`` and ``fake_state`` are that op's "torch" backend.
"""

from __future__ import annotations

import torch

from ser_fast.ops.moe.activations import activate, activation_grad
from ser_fast.ops.moe.op import fused_moe_experts
from ser_fast.ops.moe.routing import at_least_float32, build_dispatch, gate_values, router_aux, top_k_experts


def moe_torch(x, router_logits, w1, b1, w2, b2, *, k, activation, mask, normalize_gates):
    logits = router_logits if router_logits.dim() == 3 else router_logits.unsqueeze(0)
    valid = torch.ones(x.shape[0], dtype=torch.bool, device=x.device) if mask is None else ~mask
    probs = torch.softmax(at_least_float32(logits), dim=-1)
    experts = top_k_experts(logits, k)
    gates = gate_values(probs, experts, normalize_gates)
    y = fused_moe_experts(x, experts, gates, valid, w1, b1, w2, b2, activation, "torch")[0]
    return y, router_aux(logits, probs, experts, valid)


def forward(x, experts, gates, valid, w1, b1, w2, b2, activation: str):
    """``y [R, N, D_out]`` in x's dtype, and the state the backward reads: the dispatch plan (the pairs' frames and
    experts ``[P]``, the experts' offsets ``[E + 1]``, the choices' pairs ``slot_pair [R, N, k]``), the pre-activations
    ``[P, H]`` (relu: the activations, since relu' can be read off them) and the expert outputs ``[P, D_out]`` (for the
    gates' gradient)."""
    dispatch = build_dispatch(experts, valid, w1.shape[0])
    bounds = _bounds(dispatch.expert_offsets)
    rows = x.index_select(0, dispatch.pair_frame)
    pre = x.new_empty(rows.shape[0], w1.shape[-1])
    out = x.new_empty(rows.shape[0], w2.shape[-1])
    for e, (start, stop) in enumerate(bounds):
        if stop > start:
            torch.addmm(b1[e], rows[start:stop], w1[e], out=pre[start:stop])
    hidden = activate(pre, activation)
    for e, (start, stop) in enumerate(bounds):
        if stop > start:
            torch.addmm(b2[e], hidden[start:stop], w2[e], out=out[start:stop])
    y = combine(out, gates, dispatch.slot_pair)
    saved = hidden if activation == "relu" else pre
    return y, dispatch.pair_frame, dispatch.pair_expert, dispatch.expert_offsets, dispatch.slot_pair, saved, out


def backward(grad_y, x, gates, w1, w2, state, activation: str):
    """``(dx, dgates, dw1, db1, dw2, db2)``; ``state`` as :func:`forward` made it."""
    pair_frame, _, expert_offsets, slot_pair, saved, out = state
    grad_out, grad_gates = _combine_backward(grad_y, out, gates, slot_pair)
    grads = _experts_backward(grad_out, x, w1, w2, pair_frame, _bounds(expert_offsets), saved, activation)
    grad_x, grad_w1, grad_b1, grad_w2, grad_b2 = grads
    return grad_x, grad_gates, grad_w1, grad_b1, grad_w2, grad_b2


def combine(out: torch.Tensor, gates: torch.Tensor, slot_pair: torch.Tensor) -> torch.Tensor:
    """``y[r, n] = Σ_j gates[r, n, j] · out[slot_pair[r, n, j]]``; padding frames (slot -1) get 0."""
    padding = slot_pair < 0
    picked = out[slot_pair.clamp(min=0)]
    weights = gates.masked_fill(padding, 0).to(out.dtype).unsqueeze(-2)
    return (weights @ picked).squeeze(-2)


def _combine_backward(grad_y, out, gates, slot_pair):
    """``d out_p = Σ_{(r, n, j) reading p} g · dy[r, n]`` and ``d g[r, n, j] = <dy[r, n], out[slot]>``, 0 for padding;
    computed at out's dtype like :func:`combine`, the gates' gradient in theirs."""
    padding = slot_pair < 0
    slots = slot_pair.clamp(min=0)
    grad_y = grad_y.to(out.dtype)
    grad_gates = (out[slots] @ grad_y.unsqueeze(-1)).squeeze(-1).masked_fill_(padding, 0).to(gates.dtype)
    weights = gates.masked_fill(padding, 0).to(out.dtype)
    terms = weights.unsqueeze(-1) * grad_y.unsqueeze(-2)
    grad_out = torch.zeros_like(out).index_put_((slots.flatten(),), terms.flatten(0, 2), accumulate=True)
    return grad_out, grad_gates


def _experts_backward(grad_out, x, w1, w2, pair_frame, bounds, saved, activation):
    grad_out = grad_out.contiguous()
    hidden = saved if activation == "relu" else activate(saved, activation)
    # Every expert's slice of the weight gradients is written by its matmul; only experts that
    # got no frame need zeros (zero-filling all of them costs as much as a matmul).
    grad_w1, grad_w2 = w1.new_empty(w1.shape), w2.new_empty(w2.shape)
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
    grad_x = x.new_zeros(x.shape).index_add_(0, pair_frame, grad_rows)
    return grad_x, grad_w1, grad_b1, grad_w2, grad_b2


def _bounds(expert_offsets: torch.Tensor) -> tuple[tuple[int, int], ...]:
    offsets = expert_offsets.tolist()
    return tuple(zip(offsets[:-1], offsets[1:]))
