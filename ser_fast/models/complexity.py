"""Parameters and MACs of a model or of one of its paths, as in the paper's Table 3."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_complexity(model_or_callable: nn.Module | Callable[[torch.Tensor], object], input_shape: Sequence[int],
                     *, device: torch.device | str | None = None) -> tuple[int, int]:
    """``(params, macs)`` of one call, under ``torch.no_grad()``, on a random float32 input of ``input_shape``.

    ``macs`` is FlopCounterMode's FLOP count halved: it counts matmuls and convolutions at 2 FLOPs per
    multiply-accumulate and ignores elementwise ops, pooling and normalisation, as thop (Table 3's counter) does for its
    convolution and linear layers. ``params`` sums ``p.numel()`` over the modules the call actually ran, each parameter
    once: a module used twice (DSNet's Siamese encoder) counts once; one built but not run (DSNet's P_ei at inference)
    not at all. A parameter is seen only if the module owning it is called (not read through ``module.weight`` from
    elsewhere).

    Args:
        model_or_callable: an ``nn.Module`` (counted in eval mode, its mode restored after) or any callable taking the
            input tensor, e.g. ``lambda x: dsnet.training_forward(x, x)``; put its modules in eval mode yourself when
            the batch is 1 (BatchNorm1d).
        input_shape: e.g. ``(1, 3, 600, 80)``.
        device: where the input is made; None: the module's device (CPU for a callable). Models built under
            ``torch.device("meta")`` are counted with no arithmetic done at all.
    """
    if not callable(model_or_callable):
        raise TypeError(f"model_or_callable must be an nn.Module or a callable, got {type(model_or_callable).__name__}")
    if (isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence) or not input_shape
            or not all(isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 1 for n in input_shape)):
        raise ValueError(f"input_shape must be a non-empty sequence of positive ints, e.g. (1, 3, 600, 80), "
                         f"got {input_shape!r}")
    if device is None:
        first = next(model_or_callable.parameters(), None) if isinstance(model_or_callable, nn.Module) else None
        device = "cpu" if first is None else first.device
    x = torch.randn(tuple(int(n) for n in input_shape), device=torch.device(device))
    used: dict[int, nn.Parameter] = {}

    def record_parameters(module: nn.Module, _args: object) -> None:
        for p in module.parameters(recurse=False):
            used[id(p)] = p

    was_training = model_or_callable.training if isinstance(model_or_callable, nn.Module) else None
    if was_training is not None:
        model_or_callable.eval()
    hook = nn.modules.module.register_module_forward_pre_hook(record_parameters)
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            model_or_callable(x)
    finally:
        hook.remove()
        if was_training is not None:
            model_or_callable.train(was_training)
    params = sum(p.numel() for p in used.values())
    return params, counter.get_total_flops() // 2

