"""The custom ops of ``moe``, as ``torch.library`` ops with a declared output (``register_fake``)
and gradient (``register_autograd``), so torch.compile and torch.export trace the routing and the
aux losses as ordinary torch ops and take what depends on the routing's values as one node each:

- ``ser_fast::moe_experts``: the dispatch plan, every chosen (frame, expert) pair's expert and each
  router's gate-weighted combine, ``y [R, N, D_out]``; backward ``ser_fast::moe_experts_backward``.
  The number of pairs P is known only once the plan is built, so the fake declares it as a new
  dynamic size. The backend ("torch" or "triton") is an argument: one node and one export rule
  whatever ran it. Both backends keep the same state for their backward (the plan, the
  pre-activations, the expert outputs), the op's six other outputs (tensors, not a list: a list
  output costs the autograd wrapper a pytree pass on every call). Backends are modules with
  ``forward`` and ``backward``: ``ser_fast.ops.moe.cpu`` for "torch", ``ser_fast.kernels.moe`` for
  "triton".
- ``ser_fast::moe_routing``: the Triton routing kernel (softmax and top-k per frame); backward
  ``ser_fast::moe_routing_backward``. The torch path routes with plain torch ops instead.

The inputs are assumed checked: :func:`ser_fast.ops.moe` checks them.
"""

from __future__ import annotations

from types import ModuleType

import torch
from torch import Tensor
from torch.utils.flop_counter import register_flop_formula

from ser_fast.ops._backend import autocast_disabled

OP_BACKENDS = ("torch", "triton")


def backend_module(backend: str) -> ModuleType:
    if backend == "torch":
        from ser_fast.ops.moe import cpu

        return cpu
    if backend == "triton":
        from ser_fast.kernels import moe

        return moe
    raise ValueError(f"ser_fast::moe_experts: backend must be one of {OP_BACKENDS}, got {backend!r}")


@torch.library.custom_op("ser_fast::moe_experts", mutates_args=())
def moe_experts_op(
    x: Tensor, experts: Tensor, gates: Tensor, valid: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor,
    activation: str, backend: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``(y [R, N, D_out], *state)``: ``y[r, n] = Σ_j gates[r, n, j] · expert_{experts[r, n, j]}(x[n])``
    for the frames where ``valid [N]`` (bool) holds, 0 elsewhere, in x's dtype.

    ``x [N, D]``, ``experts [R, N, k]`` int64 in 0..E-1, ``gates [R, N, k]`` float, expert e is
    ``act(x @ w1[e] + b1[e]) @ w2[e] + b2[e]`` with ``w1 [E, D, H]``, ``b1 [E, H]``,
    ``w2 [E, H, D_out]``, ``b2 [E, D_out]`` of x's dtype, ``activation`` "relu", "gelu" or "silu".
    The state: the pairs' frames and experts ``[P]`` (int64), the experts' offsets ``[E + 1]``,
    ``slot_pair [R, N, k]`` (the pair each choice reads, -1 on padding), the pre-activations (relu:
    the activations) ``[P, H]`` and the expert outputs ``[P, D_out]``.
    """
    with autocast_disabled(x.device.type):
        return backend_module(backend).forward(x, experts, gates, valid, w1, b1, w2, b2, activation)


@moe_experts_op.register_fake
def _moe_experts_fake(x, experts, gates, valid, w1, b1, w2, b2, activation, backend):
    return fake_outputs(x, experts, w1, w2, torch.library.get_ctx().new_dynamic_size())


def fake_outputs(x, experts, w1, w2, num_pairs) -> tuple[Tensor, ...]:
    """Empty tensors shaped like ``ser_fast::moe_experts``'s outputs, for ``num_pairs`` pairs."""
    index = {"dtype": torch.int64}
    y = x.new_empty(experts.shape[0], experts.shape[1], w2.shape[-1])
    plan = (x.new_empty(num_pairs, **index), x.new_empty(num_pairs, **index), x.new_empty(w1.shape[0] + 1, **index),
            x.new_empty(experts.shape, **index))
    return y, *plan, x.new_empty(num_pairs, w1.shape[-1]), x.new_empty(num_pairs, w2.shape[-1])


@torch.library.custom_op("ser_fast::moe_experts_backward", mutates_args=())
def moe_experts_backward_op(
    grad_y: Tensor, x: Tensor, gates: Tensor, w1: Tensor, w2: Tensor, state: list[Tensor], activation: str,
    backend: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``(dx, dgates, dw1, db1, dw2, db2)``, each of its input's shape and dtype."""
    with autocast_disabled(x.device.type):
        return backend_module(backend).backward(grad_y, x, gates, w1, w2, state, activation)


@moe_experts_backward_op.register_fake
def _moe_experts_backward_fake(grad_y, x, gates, w1, w2, state, activation, backend):
    experts, hidden, dim_out = w1.shape[0], w1.shape[-1], w2.shape[-1]
    return (x.new_empty(x.shape), gates.new_empty(gates.shape), w1.new_empty(w1.shape),
            x.new_empty(experts, hidden), w2.new_empty(w2.shape), x.new_empty(experts, dim_out))


def _experts_setup_context(ctx, inputs, output) -> None:
    x, experts, gates, valid, w1, b1, w2, b2, activation, backend = inputs
    state = output[1:]
    ctx.mark_non_differentiable(*state)
    ctx.save_for_backward(x, gates, w1, w2, *state)
    ctx.options = (activation, backend)


def _experts_backward(ctx, grad_y, *_grad_state):
    x, gates, w1, w2, *state = ctx.saved_tensors
    grad_x, grad_gates, grad_w1, grad_b1, grad_w2, grad_b2 = moe_experts_backward_op(
        grad_y, x, gates, w1, w2, state, *ctx.options
    )
    return grad_x, None, grad_gates, None, grad_w1, grad_b1, grad_w2, grad_b2, None, None


moe_experts_op.register_autograd(_experts_backward, setup_context=_experts_setup_context)


@torch.library.custom_op("ser_fast::moe_routing", mutates_args=())
def moe_routing_op(logits: Tensor, k: int, normalize_gates: bool) -> tuple[Tensor, Tensor, Tensor]:
    """The Triton routing: ``logits [M, E]`` (finite) -> float32 ``probs [M, E]`` (softmax), int64
    ``experts [M, k]`` (top-k, best first, ties to the lower index), float32 ``gates [M, k]``."""
    from ser_fast.kernels.moe_routing import moe_routing_fwd

    with autocast_disabled(logits.device.type):
        return moe_routing_fwd(logits, k, normalize_gates)


@moe_routing_op.register_fake
def _moe_routing_fake(logits, k, normalize_gates):
    rows, num_experts = logits.shape
    f32 = {"dtype": torch.float32}
    return (logits.new_empty(rows, num_experts, **f32), logits.new_empty(rows, k, dtype=torch.int64),
            logits.new_empty(rows, k, **f32))


@torch.library.custom_op("ser_fast::moe_routing_backward", mutates_args=())
def moe_routing_backward_op(
    probs: Tensor, experts: Tensor, gates: Tensor, grad_gates: Tensor, grad_probs: Tensor, normalize_gates: bool
) -> Tensor:
    """float32 ``d logits [M, E]`` through the gates and the probabilities."""
    from ser_fast.kernels.moe_routing import moe_routing_bwd

    with autocast_disabled(probs.device.type):
        return moe_routing_bwd(probs, experts, gates, grad_gates, grad_probs, normalize_gates)


@moe_routing_backward_op.register_fake
def _moe_routing_backward_fake(probs, experts, gates, grad_gates, grad_probs, normalize_gates):
    return probs.new_empty(probs.shape)


def _routing_setup_context(ctx, inputs, output) -> None:
    logits, k, normalize_gates = inputs
    probs, experts, gates = output
    ctx.save_for_backward(probs, experts, gates)
    ctx.normalize_gates, ctx.logits_dtype = normalize_gates, logits.dtype


def _routing_backward(ctx, grad_probs, _grad_experts, grad_gates):
    probs, experts, gates = ctx.saved_tensors
    grad = moe_routing_backward_op(probs, experts, gates, grad_gates, grad_probs, ctx.normalize_gates)
    return grad.to(ctx.logits_dtype), None, None


moe_routing_op.register_autograd(_routing_backward, setup_context=_routing_setup_context)


# FlopCounterMode (tests, bench_train's step FLOPs) sees a custom op as one call: the experts' two
# matmuls per routed pair and each router's gate-weighted sum are counted here, 2 FLOPs per
# multiply-add; the backward's four matmuls (dx, dW for both layers) and the combine's two
# products are twice that.
def _experts_flops(num_pairs: int, dim: int, hidden: int, dim_out: int, slot_shape) -> int:
    routers, frames, k = slot_shape
    return 2 * num_pairs * (dim * hidden + hidden * dim_out) + 2 * routers * frames * k * dim_out


@register_flop_formula(torch.ops.ser_fast.moe_experts)
def _moe_experts_flops(x_shape, experts_shape, gates_shape, valid_shape, w1_shape, b1_shape, w2_shape, b2_shape,
                       activation, backend, *, out_shape=None, **kwargs) -> int:
    num_pairs = out_shape[1][0]
    return _experts_flops(num_pairs, x_shape[1], w1_shape[-1], w2_shape[-1], experts_shape)


@register_flop_formula(torch.ops.ser_fast.moe_experts_backward)
def _moe_experts_backward_flops(grad_y_shape, x_shape, gates_shape, w1_shape, w2_shape, state_shapes, activation,
                                backend, *, out_shape=None, **kwargs) -> int:
    num_pairs = state_shapes[0][0]
    return 2 * _experts_flops(num_pairs, x_shape[1], w1_shape[-1], w2_shape[-1], gates_shape)
