"""Frame-wise top-k mixture of experts with task-specific routers sharing one pool of experts.

The reference is ``naive.moe_ref``; the torch path (``cpu.moe_torch``) and the Triton path
(``ser_fast.kernels.moe.moe_triton``) route with torch ops or the ``ser_fast::moe_routing`` op and run the experts
through the custom op ``ser_fast::moe_experts`` (``op.py``).
"""

from __future__ import annotations

import torch

from ser_fast.ops._backend import check_flag, outside_autocast, reads_values, resolve_backend
from ser_fast.ops.moe.activations import ACTIVATIONS
from ser_fast.ops.moe.op import moe_experts_backward_op, moe_experts_op, moe_routing_backward_op, moe_routing_op
from ser_fast.ops.moe.routing import MoEAux

__all__ = ["MoEAux", "moe", "moe_experts_backward_op", "moe_experts_op", "moe_routing_backward_op",
           "moe_routing_op"]


@outside_autocast
def moe(x: torch.Tensor, router_logits: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor,
        b2: torch.Tensor, *, k: int = 1, activation: str = "relu", mask: torch.Tensor | None = None,
        normalize_gates: bool = False, backend: str = "auto",
        check_values: bool = True) -> tuple[torch.Tensor, MoEAux]:
    """Sparse top-k mixture of experts over frames: only the chosen experts run on each frame.

    Args:
        x: ``[N, D]`` frames (a batch's frames flattened).
        router_logits: ``[N, E]``, or ``[R, N, E]`` for R task-specific routers (Sparse MERIT has one for emotion
            recognition and one for speech enhancement) sharing the experts.
        w1: ``[E, D, H]``, b1: ``[E, H]``, w2: ``[E, H, D_out]``, b2: ``[E, D_out]``: expert e is
            ``act(x @ w1[e] + b1[e]) @ w2[e] + b2[e]``.
        k: experts per frame and router, 1..E. Ties between router logits go to the lower index.
        activation: the experts' hidden activation, one of "relu", "gelu", "silu".
        mask: optional bool ``[N]``, True for padding frames: they are never routed, their output is 0 and they count in
            no statistic.
        normalize_gates: divide each frame's k gate values by their sum (otherwise the gates are the router's softmax
            probabilities of the chosen experts, so the router learns through them).
        backend: "auto" (Triton for CUDA tensors, the torch path otherwise), "triton", "torch" or "reference".
        check_values: check that the router logits are finite, the one check that reads values (see
            :func:`~ser_fast.ops._backend.reads_values`: on CUDA one device wait per call); a caller that checked them
            already passes False. Unchecked NaN or infinite logits give undefined outputs, never an expert index outside
            0..E-1.

    Returns:
        ``y [N, D_out]`` (``[R, N, D_out]`` for R routers), ``y[r, n] = Σ_{e ∈ topk_r(n)} g_r[n, e] · expert_e(x[n])``,
        in x's dtype; and a :class:`MoEAux` with the load-balancing loss, the router z-loss and the per-expert frame
        counts of each router. A (frame, expert) pair that several routers chose is computed once. Gradients reach x,
        the router logits (through the gates and the aux losses) and every expert weight.
    """
    check_flag(check_values, "check_values", op="moe")
    _check_inputs(x, router_logits, w1, b1, w2, b2, k, activation, mask, check_values)
    chosen = resolve_backend(backend, x, op="moe")
    options = dict(k=k, activation=activation, mask=mask, normalize_gates=normalize_gates)
    if chosen == "reference":
        from ser_fast.ops.moe.naive import moe_ref

        return moe_ref(x, router_logits, w1, b1, w2, b2, **options)
    if chosen == "triton":
        from ser_fast.kernels.moe import moe_triton as run
    else:
        from ser_fast.ops.moe.cpu import moe_torch as run
    y, aux = run(x, router_logits, w1, b1, w2, b2, **options)
    if router_logits.dim() == 2:
        return y[0], MoEAux(aux.load_balancing_loss[0], aux.router_z_loss[0], aux.expert_counts[0])
    return y, aux


def _check_inputs(x, router_logits, w1, b1, w2, b2, k, activation, mask, check_values) -> None:
    tensors = {"x": x, "router_logits": router_logits, "w1": w1, "b1": b1, "w2": w2, "b2": b2}
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"moe: {name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"moe: {name} must be a floating-point tensor, got {t.dtype}")
        if t.device != x.device:
            raise ValueError(f"moe: {name} is on {t.device} but x is on {x.device}; put every input on one device")
    for name in ("w1", "b1", "w2", "b2"):
        if tensors[name].dtype != x.dtype:
            raise TypeError(f"moe: {name} has dtype {tensors[name].dtype} but x has {x.dtype}; expected the same")
    if x.dim() != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"moe: x must be [N, D] with N, D >= 1 (flatten batch and time), got {tuple(x.shape)}")
    frames, dim = x.shape
    if w1.dim() != 3 or w1.shape[1] != dim or w1.shape[0] == 0 or w1.shape[2] == 0:
        raise ValueError(f"moe: w1 must be [E, D={dim}, H] with E, H >= 1, got {tuple(w1.shape)}")
    experts, hidden = w1.shape[0], w1.shape[2]
    if w2.dim() != 3 or w2.shape[:2] != (experts, hidden) or w2.shape[2] == 0:
        raise ValueError(f"moe: w2 must be [E={experts}, H={hidden}, D_out] with D_out >= 1, got {tuple(w2.shape)}")
    if tuple(b1.shape) != (experts, hidden):
        raise ValueError(f"moe: b1 must be [E={experts}, H={hidden}], got {tuple(b1.shape)}")
    if tuple(b2.shape) != (experts, w2.shape[2]):
        raise ValueError(f"moe: b2 must be [E={experts}, D_out={w2.shape[2]}], got {tuple(b2.shape)}")
    if router_logits.dim() not in (2, 3) or tuple(router_logits.shape[-2:]) != (frames, experts):
        raise ValueError(f"moe: router_logits must be [N={frames}, E={experts}] or [R, N={frames}, E={experts}], "
                         f"got {tuple(router_logits.shape)}")
    if router_logits.dim() == 3 and router_logits.shape[0] == 0:
        raise ValueError("moe: router_logits has R = 0 routers; expected at least one")
    if reads_values(check_values, router_logits) and not bool(torch.isfinite(router_logits).all()):
        raise ValueError("moe: router_logits contain NaN or infinity; expected finite logits")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= experts:
        raise ValueError(f"moe: k must be an int in 1..E={experts}, got {k!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"moe: unknown activation {activation!r}; expected one of {ACTIVATIONS}")
    if mask is not None:
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or tuple(mask.shape) != (frames,):
            shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise ValueError(f"moe: mask must be a bool tensor [N={frames}] (True = padding frame), got {shape}")
        if mask.device != x.device:
            raise ValueError(f"moe: mask is on {mask.device} but x is on {x.device}")
