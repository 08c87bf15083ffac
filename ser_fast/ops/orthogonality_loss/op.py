"""``ser_fast::orthogonality_loss`` and ``ser_fast::orthogonality_loss_backward``: the torch path
and the Triton kernels as ``torch.library`` custom ops, so torch.compile and torch.export see one
node with a declared output (``register_fake``) and gradient (``register_autograd``).

As for ``ser_fast::attention_pool``, the backend is an argument of the op (one node, one export
rule, one opcheck for both) and each backend's saved state is the op's five other outputs, which
only that backend's backward reads (five tensors, not a list: a list output costs the autograd
wrapper a pytree pass on every call). Each backend is a module with ``forward``,
``backward`` and ``fake_state``: ``ser_fast.ops.orthogonality_loss.cpu`` for "torch",
``ser_fast.kernels.orthogonality_loss`` for "triton". The reduction is passed by name, not as a
scale: under torch.compile with a dynamic batch the scale 1/(N²·D1·D2) would be symbolic.

The inputs are assumed checked: :func:`ser_fast.ops.orthogonality_loss` checks them.
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
        from ser_fast.ops.orthogonality_loss import cpu

        return cpu
    if backend == "triton":
        from ser_fast.kernels import orthogonality_loss

        return orthogonality_loss
    raise ValueError(f"ser_fast::orthogonality_loss: backend must be one of {OP_BACKENDS}, got {backend!r}")


@torch.library.custom_op("ser_fast::orthogonality_loss", mutates_args=())
def orthogonality_loss_op(
    z1: Tensor, z2: Tensor, reduction: str, eps: float, backend: str
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``(loss [G], *state)``: ``||Z1ᵀ Z2||_F²`` of each pair of ``z1 [G, N, D1]`` and ``z2 [G, N, D2]``
    (N >= 2, same dtype), divided by N²·D1·D2 when ``reduction`` is "mean", in the input dtype."""
    with autocast_disabled(z1.device.type):
        return backend_module(backend).forward(z1, z2, reduction, eps)


@orthogonality_loss_op.register_fake
def _orthogonality_loss_fake(z1, z2, reduction, eps, backend):
    return z1.new_empty(z1.shape[0]), *backend_module(backend).fake_state(z1, z2)


@torch.library.custom_op("ser_fast::orthogonality_loss_backward", mutates_args=())
def orthogonality_loss_backward_op(
    grad_loss: Tensor, z1: Tensor, z2: Tensor, state: list[Tensor], reduction: str, backend: str, need_dz1: bool,
    need_dz2: bool,
) -> tuple[Tensor, Tensor]:
    """``(dz1, dz2)`` in the input dtype; one not needed is an empty ``[0]`` tensor."""
    with autocast_disabled(z1.device.type):
        dz1, dz2 = backend_module(backend).backward(grad_loss, z1, z2, state, reduction, need_dz1, need_dz2)
    return (z1.new_empty(0) if dz1 is None else dz1), (z2.new_empty(0) if dz2 is None else dz2)


@orthogonality_loss_backward_op.register_fake
def _orthogonality_loss_backward_fake(grad_loss, z1, z2, state, reduction, backend, need_dz1, need_dz2):
    return z1.new_empty(z1.shape if need_dz1 else (0,)), z2.new_empty(z2.shape if need_dz2 else (0,))


def _setup_context(ctx, inputs, output) -> None:
    z1, z2, reduction, eps, backend = inputs
    state = output[1:]
    ctx.mark_non_differentiable(*state)
    ctx.save_for_backward(z1, z2, *state)
    ctx.options = (reduction, backend)


def _backward(ctx, grad_loss, *_grad_state):
    z1, z2, *state = ctx.saved_tensors
    need_dz1, need_dz2 = ctx.needs_input_grad[:2]
    dz1, dz2 = orthogonality_loss_backward_op(grad_loss, z1, z2, state, *ctx.options, need_dz1, need_dz2)
    return (dz1 if need_dz1 else None), (dz2 if need_dz2 else None), None, None, None


orthogonality_loss_op.register_autograd(_backward, setup_context=_setup_context)


def _uses_gram(backend: str, n: int, d1: int, d2: int) -> bool:
    if backend != "torch":
        return False
    from ser_fast.ops.orthogonality_loss.cpu import prefer_gram

    return prefer_gram(n, d1, d2)


# FlopCounterMode sees a custom op as one call: its matrix products are counted here, 2 FLOPs per
# multiply-add. The forward forms the N×N Gram matrices or C = Z1ᵀ Z2 (the kernels always form C);
# the backward projects each needed input once.
@register_flop_formula(torch.ops.ser_fast.orthogonality_loss)
def _orthogonality_loss_flops(z1_shape, z2_shape, reduction, eps, backend, *, out_shape=None, **kwargs) -> int:
    g, n, d1 = z1_shape
    d2 = z2_shape[2]
    return 2 * g * n * n * (d1 + d2) if _uses_gram(backend, n, d1, d2) else 2 * g * n * d1 * d2


@register_flop_formula(torch.ops.ser_fast.orthogonality_loss_backward)
def _orthogonality_loss_backward_flops(grad_shape, z1_shape, z2_shape, state_shapes, reduction, backend, need_dz1,
                                       need_dz2, *, out_shape=None, **kwargs) -> int:
    g, n, d1 = z1_shape
    d2 = z2_shape[2]
    if _uses_gram(backend, n, d1, d2):
        return 2 * g * n * n * (d1 * int(need_dz1) + d2 * int(need_dz2))
    return 2 * g * n * d1 * d2 * (int(need_dz1) + int(need_dz2))
