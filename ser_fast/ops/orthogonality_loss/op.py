"""``ser_fast::orthogonality_loss`` and its backward: the torch path and the Triton kernels as one
:class:`~ser_fast.ops._backend.FusedOp`.

As for ``ser_fast::attention_pool``, the backend is an argument of the op (one node, one export rule, one opcheck for
both) and each backend's saved state is the op's six other outputs, which only that backend's backward reads (the
torch path's last two are two Gram matrices, or the correlation matrix and None; the kernels' last is None). The
reduction is passed by name, not as a scale: under torch.compile with a dynamic batch the scale 1/(N²·D1·D2) would be
symbolic.

The inputs are assumed checked: :func:`ser_fast.ops.orthogonality_loss` checks them.
"""

from __future__ import annotations

from torch import Tensor

from ser_fast.ops._backend import FusedOp, backend_module, call_without_autocast


def _forward(
    z1: Tensor, z2: Tensor, reduction: str, eps: float, backend: str
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``(loss [G], *state)``: ``||Z1ᵀ Z2||_F²`` of each pair of ``z1 [G, N, D1]`` and ``z2 [G, N, D2]`` (N >= 2, same
    dtype), divided by N²·D1·D2 when ``reduction`` is "mean", in the input dtype."""
    return call_without_autocast(z1.device.type, backend_module("orthogonality_loss", backend).forward, z1, z2,
                                 reduction, eps)


def _backward(
    grad_loss: Tensor, z1: Tensor, z2: Tensor, state: list[Tensor], reduction: str, backend: str, need_dz1: bool,
    need_dz2: bool,
) -> tuple[Tensor, Tensor]:
    """``(dz1, dz2)`` in the input dtype; one not needed is an empty ``[0]`` tensor."""
    dz1, dz2 = call_without_autocast(z1.device.type, backend_module("orthogonality_loss", backend).backward,
                                     grad_loss, z1, z2, state, reduction, need_dz1, need_dz2)
    return (z1.new_empty(0) if dz1 is None else dz1), (z2.new_empty(0) if dz2 is None else dz2)


def _setup_context(ctx, inputs, output) -> None:
    z1, z2, reduction, eps, backend = inputs
    ctx.save_for_backward(z1, z2, *output[1:])
    ctx.options = (reduction, backend)


def _grads(ctx, backward, grad_loss, *_grad_state):
    z1, z2, *state = ctx.saved_tensors
    need_dz1, need_dz2 = ctx.needs_input_grad[:2]
    dz1, dz2 = backward(grad_loss, z1, z2, state, *ctx.options, need_dz1, need_dz2)
    return (dz1 if need_dz1 else None), (dz2 if need_dz2 else None), None, None, None


fused_orthogonality_loss = FusedOp("orthogonality_loss", _forward, _backward, _setup_context, _grads,
                                   differentiable=1)
orthogonality_loss_op = fused_orthogonality_loss.op
orthogonality_loss_backward_op = fused_orthogonality_loss.backward_op


@orthogonality_loss_op.register_fake
def _orthogonality_loss_fake(z1, z2, reduction, eps, backend):
    return z1.new_empty(z1.shape[0]), *backend_module("orthogonality_loss", backend).fake_state(z1, z2)


@orthogonality_loss_backward_op.register_fake
def _orthogonality_loss_backward_fake(grad_loss, z1, z2, state, reduction, backend, need_dz1, need_dz2):
    return z1.new_empty(z1.shape if need_dz1 else (0,)), z2.new_empty(z2.shape if need_dz2 else (0,))
