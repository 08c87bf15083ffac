"""Which implementation of a fused op runs: ``backend="auto" | "triton" | "torch" | "reference"``.

"auto" picks the Triton kernels for CUDA tensors (when Triton is installed) and the torch path
otherwise. A backend asked for by name never falls back to another one: it runs or raises.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import os

import torch

BACKENDS = ("auto", "triton", "torch", "reference")
TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

logger = logging.getLogger(__name__)


def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def triton_interpreted() -> bool:
    """Whether Triton runs kernels through its CPU interpreter. Triton reads the variable when a
    kernel module is imported, so it has to be set before the first ``ser_fast.kernels`` import."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def resolve_backend(backend: str, reference_tensor: torch.Tensor, *, op: str) -> str:
    """The backend that will run ``op`` on tensors like ``reference_tensor`` (its device and dtype:
    the kernels take float32, float16 and bfloat16; "auto" runs other dtypes on the torch path)."""
    if backend not in BACKENDS:
        raise ValueError(f"{op}: unknown backend {backend!r}; expected one of {', '.join(map(repr, BACKENDS))}")
    if backend == "auto":
        if reference_tensor.is_cuda and triton_available() and reference_tensor.dtype in TRITON_DTYPES:
            return "triton"
        if reference_tensor.is_cuda:
            logger.info("%s: Triton is not installed; running the torch path on CUDA", op)
        return "torch"
    if backend == "triton":
        if reference_tensor.dtype not in TRITON_DTYPES:
            raise TypeError(f"{op}: backend='triton' supports float32, float16 and bfloat16 inputs, got "
                            f"{reference_tensor.dtype}; pick backend='torch' for {reference_tensor.dtype}")
        if not triton_available():
            raise RuntimeError(
                f"{op}: backend='triton' needs the triton package; install it with "
                "`pip install 'ser_fast[triton]'`, or pick backend='torch'"
            )
        if not reference_tensor.is_cuda and not triton_interpreted():
            raise RuntimeError(
                f"{op}: backend='triton' needs CUDA tensors (got {reference_tensor.device}); to run the "
                "kernels on CPU through Triton's interpreter, set TRITON_INTERPRET=1 before importing "
                "ser_fast, or pick backend='torch' for the CPU path"
            )
    return backend


def autocast_disabled(device_type: str) -> contextlib.AbstractContextManager:
    """A context with autocast off on ``device_type``; a plain no-op (no cost on the op's hot path)
    where autocast is off already or does not exist (e.g. meta)."""
    if torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def outside_autocast(op):
    """Run a fused op with autocast off: it computes at its inputs' dtype (accumulating in float32)
    whatever the caller's autocast says. Under autocast, the torch ops inside its forward would run
    and be saved in bf16 while its hand-written backward, which runs after autocast has exited,
    mixes them with float32."""

    @functools.wraps(op)
    def wrapper(*args, **kwargs):
        tensors = (a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor))
        device_type = next((t.device.type for t in tensors), "cpu")
        with autocast_disabled(device_type):
            return op(*args, **kwargs)

    return wrapper


def backward_outside_autocast(backward):
    """For ``autograd.Function.backward``: a backward runs under whatever autocast surrounds the
    ``loss.backward()`` call; the hand-written ones compute at their saved tensors' dtypes."""

    @functools.wraps(backward)
    def wrapper(ctx, *grads):
        device_type = next((g.device.type for g in grads if isinstance(g, torch.Tensor)), "cpu")
        with autocast_disabled(device_type):
            return backward(ctx, *grads)

    return wrapper
