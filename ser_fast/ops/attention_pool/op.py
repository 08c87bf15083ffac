"""``ser_fast::attention_pool`` and ``ser_fast::attention_pool_backward``: the torch path and the
Triton kernels as ``torch.library`` custom ops, so torch.compile and torch.export see one node with
a declared output (``register_fake``) and a declared gradient (``register_autograd``), and never
trace into the host-side work of a backend (the torch path reads ``lengths`` on the CPU).

The backend is an argument of the op, not a separate op per backend: a traced graph names the
maths once, whatever ran it, so ``ser_fast.ops.export`` maps one op to the reference and one
opcheck covers both backends. What each backend keeps for its backward differs in layout (the
torch path: the weights or the softmax's max and sum, and mu, m2, sigma; the kernels: the
softmax's max and sum per channel block, and the float32 mean and variance), so it travels as the
op's last two outputs, ``softmax_state`` and ``moments``, which only that backend's backward reads.
They are two tensors rather than a list: a list output costs the autograd wrapper a pytree pass
on every call. Each backend is a module with ``forward``, ``backward`` and ``fake_state``:
``ser_fast.ops.attention_pool.cpu`` for "torch", ``ser_fast.kernels.attention_pool`` for "triton".

The inputs are assumed checked: :func:`ser_fast.ops.attention_pool` checks them once per call.
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
        from ser_fast.ops.attention_pool import cpu

        return cpu
    if backend == "triton":
        from ser_fast.kernels import attention_pool

        return attention_pool
    raise ValueError(f"ser_fast::attention_pool: backend must be one of {OP_BACKENDS}, got {backend!r}")


@torch.library.custom_op("ser_fast::attention_pool", mutates_args=())
def attention_pool_op(
    x: Tensor, scores: Tensor, lengths: Tensor | None, return_std: bool, eps: float, backend: str
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(mu [B, D], sigma [B, D] or [0] without return_std, softmax_state, moments)``, mu and sigma
    in x's dtype.

    ``x [B, T, D]``, ``scores [B, T]`` or ``[B, T, D]`` of x's dtype, ``lengths [B]`` integer in
    1..T or None, ``eps > 0``, ``backend`` "torch" or "triton".
    """
    with autocast_disabled(x.device.type):
        return backend_module(backend).forward(x, scores, lengths, return_std, eps)


@attention_pool_op.register_fake
def _attention_pool_fake(x, scores, lengths, return_std, eps, backend):
    B, _, D = x.shape
    sigma = x.new_empty((B, D) if return_std else (0,))
    return x.new_empty(B, D), sigma, *backend_module(backend).fake_state(x, scores, return_std)


@torch.library.custom_op("ser_fast::attention_pool_backward", mutates_args=())
def attention_pool_backward_op(
    g_mu: Tensor, g_sigma: Tensor, x: Tensor, scores: Tensor, lengths: Tensor | None, softmax_state: Tensor,
    moments: Tensor, return_std: bool, eps: float, backend: str, need_dx: bool, need_ds: bool,
) -> tuple[Tensor, Tensor]:
    """``(dx, dscores)`` in x's dtype; one not needed is an empty ``[0]`` tensor (an op cannot
    return None)."""
    with autocast_disabled(x.device.type):
        dx, ds = backend_module(backend).backward(
            g_mu, g_sigma, x, scores, lengths, softmax_state, moments, return_std, eps, need_dx, need_ds
        )
    return _or_empty(dx if need_dx else None, x), _or_empty(ds if need_ds else None, x)


@attention_pool_backward_op.register_fake
def _attention_pool_backward_fake(g_mu, g_sigma, x, scores, lengths, softmax_state, moments, return_std, eps,
                                  backend, need_dx, need_ds):
    dx = x.new_empty(x.shape if need_dx else (0,))
    ds = x.new_empty(scores.shape if need_ds else (0,))
    return dx, ds


def _or_empty(grad: Tensor | None, like: Tensor) -> Tensor:
    return like.new_empty(0) if grad is None else grad


def _setup_context(ctx, inputs, output) -> None:
    x, scores, lengths, return_std, eps, backend = inputs
    _, _, softmax_state, moments = output
    ctx.mark_non_differentiable(softmax_state, moments)
    ctx.save_for_backward(x, scores, lengths, softmax_state, moments)
    ctx.options = (return_std, eps, backend)


def _backward(ctx, g_mu, g_sigma, _g_softmax_state, _g_moments):
    x, scores, lengths, softmax_state, moments = ctx.saved_tensors
    need_dx, need_ds = ctx.needs_input_grad[:2]
    dx, ds = attention_pool_backward_op(g_mu, g_sigma, x, scores, lengths, softmax_state, moments, *ctx.options,
                                        need_dx, need_ds)
    return (dx if need_dx else None), (ds if need_ds else None), None, None, None, None


attention_pool_op.register_autograd(_backward, setup_context=_setup_context)


# FlopCounterMode (and so ser_fast.models.count_complexity) sees a custom op as one call, not the
# torch ops inside it. Each weighted sum over time, sum_t w_t x_t and sum_t w_t x_t^2, is counted as
# a matrix-vector product, 2 FLOPs per multiply-add, and so is each pass of the backward over x
# for dx and for dscores.
@register_flop_formula(torch.ops.ser_fast.attention_pool)
def _attention_pool_flops(x_shape, scores_shape, lengths_shape, return_std, eps, backend, *, out_shape=None,
                          **kwargs) -> int:
    B, T, D = x_shape
    return 2 * B * T * D * (2 if return_std else 1)


@register_flop_formula(torch.ops.ser_fast.attention_pool_backward)
def _attention_pool_backward_flops(g_mu_shape, g_sigma_shape, x_shape, scores_shape, lengths_shape,
                                   softmax_state_shape, moments_shape, return_std, eps, backend, need_dx, need_ds, *,
                                   out_shape=None, **kwargs) -> int:
    B, T, D = x_shape
    return 2 * B * T * D * (2 if return_std else 1) * (int(need_dx) + int(need_ds))
