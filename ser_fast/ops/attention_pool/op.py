"""``ser_fast::attention_pool`` and its backward: the torch path and the Triton kernels as one
:class:`~ser_fast.ops._backend.FusedOp`.

The backend is an argument of the op, not a separate op per backend: a traced graph names the maths once, whatever ran
it, so ``ser_fast.ops.export`` maps one op to the reference and one opcheck covers both backends. What each backend
keeps for its backward differs in layout (the torch path: the weights or the softmax's max and sum, and mu, m2, sigma;
the kernels: the softmax's max and sum per channel block, and the float32 mean and variance), so it travels as the op's
last two outputs, ``softmax_state`` and ``moments``, which only that backend's backward reads (backends:
:func:`~ser_fast.ops._backend.backend_module`).

The inputs are assumed checked: :func:`ser_fast.ops.attention_pool` checks them once per call.
"""

from __future__ import annotations

from torch import Tensor

from ser_fast.ops._backend import FusedOp, backend_module, call_without_autocast


def _forward(
    x: Tensor, scores: Tensor, lengths: Tensor | None, return_std: bool, eps: float, backend: str
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(mu [B, D], sigma [B, D] or None without return_std, softmax_state, moments)``, mu and sigma in x's dtype, from
    ``x [B, T, D]``, ``scores [B, T]`` or ``[B, T, D]`` of x's dtype, ``lengths [B]`` integer in 1..T or None,
    ``eps > 0``, ``backend`` "torch" or "triton".
    """
    return call_without_autocast(x.device.type, backend_module("attention_pool", backend).forward, x, scores, lengths,
                                 return_std, eps)


def _backward(
    g_mu: Tensor, g_sigma: Tensor, x: Tensor, scores: Tensor, lengths: Tensor | None, softmax_state: Tensor,
    moments: Tensor, return_std: bool, eps: float, backend: str, need_dx: bool, need_ds: bool,
) -> tuple[Tensor, Tensor]:
    """``(dx, dscores)`` in x's dtype; one not needed is an empty ``[0]`` tensor (an op cannot return None)."""
    dx, ds = call_without_autocast(x.device.type, backend_module("attention_pool", backend).backward,
                                   g_mu, g_sigma, x, scores, lengths, softmax_state, moments, return_std, eps, need_dx,
                                   need_ds)
    return (dx if need_dx else x.new_empty(0)), (ds if need_ds else x.new_empty(0))


def _setup_context(ctx, inputs, output) -> None:
    x, scores, lengths, return_std, eps, backend = inputs
    _, _, softmax_state, moments = output
    ctx.save_for_backward(x, scores, lengths, softmax_state, moments)
    ctx.options = (return_std, eps, backend)


def _grads(ctx, backward, g_mu, g_sigma, _g_softmax_state, _g_moments):
    x, scores, lengths, softmax_state, moments = ctx.saved_tensors
    need_dx, need_ds = ctx.needs_input_grad[:2]
    dx, ds = backward(g_mu, g_sigma, x, scores, lengths, softmax_state, moments, *ctx.options, need_dx, need_ds)
    return (dx if need_dx else None), (ds if need_ds else None), None, None, None, None


fused_attention_pool = FusedOp("attention_pool", _forward, _backward, _setup_context, _grads, differentiable=2)
attention_pool_op = fused_attention_pool.op
attention_pool_backward_op = fused_attention_pool.backward_op


@attention_pool_op.register_fake
def _attention_pool_fake(x, scores, lengths, return_std, eps, backend):
    B, _, D = x.shape
    sigma = x.new_empty((B, D) if return_std else (0,))
    return x.new_empty(B, D), sigma, *backend_module("attention_pool", backend).fake_state(x, scores, return_std)


@attention_pool_backward_op.register_fake
def _attention_pool_backward_fake(g_mu, g_sigma, x, scores, lengths, softmax_state, moments, return_std, eps,
                                  backend, need_dx, need_ds):
    return x.new_empty(x.shape if need_dx else (0,)), x.new_empty(scores.shape if need_ds else (0,))
