"""Pure-PyTorch references for ``moe``: the sparse reference (each expert on the frames routed to it, autograd for the
backward) and the dense design of the Sparse MERIT release (every expert on every frame, outputs weighted by the gates),
which benchmarks compare against."""

from __future__ import annotations

import torch

from ser_fast.ops.moe.activations import activate
from ser_fast.ops.moe.routing import (
    MoEAux,
    at_least_float32,
    gate_values,
    router_aux,
    top_k_experts,
)


def _route(router_logits, k, mask, normalize_gates):
    logits = router_logits if router_logits.dim() == 3 else router_logits.unsqueeze(0)
    valid = torch.ones(logits.shape[1], dtype=torch.bool, device=logits.device) if mask is None else ~mask
    probs = torch.softmax(at_least_float32(logits), dim=-1)
    experts = top_k_experts(logits, k)
    gates = gate_values(probs, experts, normalize_gates)
    return logits, valid, probs, experts, dense_gates(experts, gates, valid, probs.shape[-1])


def dense_gates(experts, gates, valid, num_experts):
    """``[R, N, E]``: each router's gate of every expert on every frame, 0 for the experts it did not choose and on
    padding frames (``valid [N]`` False)."""
    dense = gates.new_zeros(*experts.shape[:-1], num_experts)
    return dense.scatter(-1, experts, gates * valid.view(1, -1, 1))


def dense_experts(x, gates, w1, b1, w2, b2, activation):
    """``y[r, n] = Σ_e gates[r, n, e] · expert_e(x[n])`` with every expert run on every frame (batched matmuls): the
    dense design's arithmetic, from dense ``gates [R, N, E]``."""
    num_experts, frames, dim = w1.shape[0], x.shape[0], x.shape[1]
    hidden = activate(torch.baddbmm(b1.unsqueeze(1), x.expand(num_experts, frames, dim), w1), activation)
    out = torch.baddbmm(b2.unsqueeze(1), hidden, w2)
    return torch.einsum("rne,end->rnd", gates.to(out.dtype), out)


def _squeeze(y, aux, router_logits):
    if router_logits.dim() == 3:
        return y, aux
    return y[0], MoEAux(aux.load_balancing_loss[0], aux.router_z_loss[0], aux.expert_counts[0])


def moe_ref(x, router_logits, w1, b1, w2, b2, *, k=1, activation="relu", mask=None, normalize_gates=False):
    """The reference: each expert on the frames any router chose for it, then each router's gate-weighted sum. Shapes as
    in ``ser_fast.ops.moe``."""
    logits, valid, probs, experts, gates = _route(router_logits, k, mask, normalize_gates)
    chosen = torch.zeros_like(probs, dtype=torch.bool).scatter(-1, experts, True) & valid.view(1, -1, 1)
    y = [x.new_zeros(x.shape[0], w2.shape[-1]) for _ in range(logits.shape[0])]
    for e in range(w1.shape[0]):
        frames = torch.nonzero(chosen[..., e].any(0)).flatten()
        if frames.numel() == 0:
            continue
        out = activate(x[frames] @ w1[e] + b1[e], activation) @ w2[e] + b2[e]
        for r in range(len(y)):
            y[r] = y[r].index_add(0, frames, gates[r, frames, e, None].to(out.dtype) * out)
    return _squeeze(torch.stack(y), router_aux(logits, probs, experts, valid), router_logits)


def moe_dense(x, router_logits, w1, b1, w2, b2, *, k=1, activation="relu", mask=None, normalize_gates=False):
    """The dense design: every expert on every frame (batched matmuls), then the gate-weighted sum; the unchosen
    experts' work is multiplied by zero. Same results as ``moe_ref``."""
    logits, valid, probs, experts, gates = _route(router_logits, k, mask, normalize_gates)
    y = dense_experts(x, gates, w1, b1, w2, b2, activation)
    return _squeeze(y, router_aux(logits, probs, experts, valid), router_logits)
