"""The custom ops of ``moe`` (:class:`~ser_fast.ops._backend.FusedOp` s): torch.compile and torch.export trace the
routing and the aux losses as ordinary torch ops and take what depends on the routing's values as one node each:

- ``ser_fast::moe_experts``: the dispatch plan, every chosen (frame, expert) pair's expert and each router's
  gate-weighted combine, ``y [R, N, D_out]``. The number of pairs P is known only once the plan is built, so the fake
  declares it as a new dynamic size. The backend (:func:`~ser_fast.ops._backend.backend_module`) is an argument: one
  node and one export rule whatever ran it. Both backends keep the same state for their backward (the plan, the
  pre-activations, the expert outputs), the op's six other outputs.
- ``ser_fast::moe_routing``: the Triton routing kernel (softmax and top-k per frame). The torch path routes with plain
  torch ops instead.

The inputs are assumed checked: :func:`ser_fast.ops.moe` checks them.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ser_fast.ops._backend import FusedOp, backend_module, call_without_autocast


def _experts_forward(
    x: Tensor, experts: Tensor, gates: Tensor, valid: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor,
    activation: str, backend: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``(y [R, N, D_out], *state)``: ``y[r, n] = Σ_j gates[r, n, j] · expert_{experts[r, n, j]}(x[n])`` for the frames
    where ``valid [N]`` (bool) holds, 0 elsewhere, in x's dtype; ``x [N, D]``, ``experts [R, N, k]`` int64 in 0..E-1,
    ``gates [R, N, k]`` float, expert e is ``act(x @ w1[e] + b1[e]) @ w2[e] + b2[e]`` with ``w1 [E, D, H]``,
    ``b1 [E, H]``, ``w2 [E, H, D_out]``, ``b2 [E, D_out]`` of x's dtype, ``activation`` "relu", "gelu" or "silu". The
    state: the pairs' frames and experts ``[P]`` (int64), the experts' offsets ``[E + 1]``, ``slot_pair [R, N, k]`` (the
    pair each choice reads, -1 on padding), the pre-activations (relu: the activations) ``[P, H]`` and the expert
    outputs ``[P, D_out]``.
    """
    return call_without_autocast(x.device.type, backend_module("moe", backend).forward, x, experts, gates, valid, w1,
                                 b1, w2, b2, activation)


def fake_outputs(x, experts, w1, w2, num_pairs) -> tuple[Tensor, ...]:
    """Empty tensors shaped like ``ser_fast::moe_experts``'s outputs, for ``num_pairs`` pairs."""
    index = {"dtype": torch.int64}
    y = x.new_empty(experts.shape[0], experts.shape[1], w2.shape[-1])
    plan = (x.new_empty(num_pairs, **index), x.new_empty(num_pairs, **index), x.new_empty(w1.shape[0] + 1, **index),
            x.new_empty(experts.shape, **index))
    return y, *plan, x.new_empty(num_pairs, w1.shape[-1]), x.new_empty(num_pairs, w2.shape[-1])


def _experts_backward(
    grad_y: Tensor, x: Tensor, gates: Tensor, w1: Tensor, w2: Tensor, state: list[Tensor], activation: str,
    backend: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``(dx, dgates, dw1, db1, dw2, db2)``, each of its input's shape and dtype."""
    return call_without_autocast(x.device.type, backend_module("moe", backend).backward, grad_y, x, gates, w1, w2,
                                 state, activation)


def _experts_setup_context(ctx, inputs, output) -> None:
    x, experts, gates, valid, w1, b1, w2, b2, activation, backend = inputs
    state = output[1:]
    ctx.save_for_backward(x, gates, w1, w2, *state)
    ctx.options = (activation, backend)


def _experts_grads(ctx, backward, grad_y, *_grad_state):
    x, gates, w1, w2, *state = ctx.saved_tensors
    grad_x, grad_gates, grad_w1, grad_b1, grad_w2, grad_b2 = backward(grad_y, x, gates, w1, w2, state, *ctx.options)
    return grad_x, None, grad_gates, None, grad_w1, grad_b1, grad_w2, grad_b2, None, None


fused_moe_experts = FusedOp("moe_experts", _experts_forward, _experts_backward, _experts_setup_context,
                            _experts_grads, differentiable=1)
moe_experts_op = fused_moe_experts.op
moe_experts_backward_op = fused_moe_experts.backward_op


def _routing_forward(logits: Tensor, k: int, normalize_gates: bool) -> tuple[Tensor, Tensor, Tensor]:
    """The Triton routing: ``logits [M, E]`` (finite) -> float32 ``probs [M, E]`` (softmax), int64 ``experts [M, k]``
    (top-k, best first, ties to the lower index), float32 ``gates [M, k]``."""
    from ser_fast.kernels.moe_routing import moe_routing_fwd

    return call_without_autocast(logits.device.type, moe_routing_fwd, logits, k, normalize_gates)


def _routing_backward(
    probs: Tensor, experts: Tensor, gates: Tensor, grad_gates: Tensor, grad_probs: Tensor, normalize_gates: bool
) -> Tensor:
    """float32 ``d logits [M, E]`` through the gates and the probabilities."""
    from ser_fast.kernels.moe_routing import moe_routing_bwd

    return call_without_autocast(probs.device.type, moe_routing_bwd, probs, experts, gates, grad_gates, grad_probs,
                                 normalize_gates)


def _routing_setup_context(ctx, inputs, output) -> None:
    logits, k, normalize_gates = inputs
    probs, experts, gates = output
    ctx.save_for_backward(probs, experts, gates)
    ctx.normalize_gates, ctx.logits_dtype = normalize_gates, logits.dtype


def _routing_grads(ctx, backward, grad_probs, _grad_experts, grad_gates):
    probs, experts, gates = ctx.saved_tensors
    grad = backward(probs, experts, gates, grad_gates, grad_probs, ctx.normalize_gates)
    return grad.to(ctx.logits_dtype), None, None


fused_moe_routing = FusedOp("moe_routing", _routing_forward, _routing_backward, _routing_setup_context,
                            _routing_grads, differentiable=3)
moe_routing_op = fused_moe_routing.op
moe_routing_backward_op = fused_moe_routing.backward_op



@moe_experts_op.register_fake
def _moe_experts_fake(x, experts, gates, valid, w1, b1, w2, b2, activation, backend):
    return fake_outputs(x, experts, w1, w2, torch.library.get_ctx().new_dynamic_size())


@moe_experts_backward_op.register_fake
def _moe_experts_backward_fake(grad_y, x, gates, w1, w2, state, activation, backend):
    experts, hidden, dim_out = w1.shape[0], w1.shape[-1], w2.shape[-1]
    return (x.new_empty(x.shape), gates.new_empty(gates.shape), w1.new_empty(w1.shape),
            x.new_empty(experts, hidden), w2.new_empty(w2.shape), x.new_empty(experts, dim_out))


@moe_routing_op.register_fake
def _moe_routing_fake(logits, k, normalize_gates):
    rows, num_experts = logits.shape
    f32 = {"dtype": torch.float32}
    return (logits.new_empty(rows, num_experts, **f32), logits.new_empty(rows, k, dtype=torch.int64),
            logits.new_empty(rows, k, **f32))


@moe_routing_backward_op.register_fake
def _moe_routing_backward_fake(probs, experts, gates, grad_gates, grad_probs, normalize_gates):
    return probs.new_empty(probs.shape)
