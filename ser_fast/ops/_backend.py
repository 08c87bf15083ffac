"""What the fused ops share: backend choice, value checks, autocast handling and registration (:class:`FusedOp`).

``backend="auto"`` picks the Triton kernels for CUDA tensors (when Triton is installed) and the torch path otherwise. A
backend asked for by name never falls back to another one: it runs or raises.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
import os
from collections.abc import Callable
from types import ModuleType

import torch

BACKENDS = ("auto", "triton", "torch", "reference")
OP_BACKENDS = ("torch", "triton")
TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

logger = logging.getLogger(__name__)


# Graph constants for torch.compile (it cannot trace an import lookup or os.environ), fixed for the life of the process.
@torch.compiler.assume_constant_result
def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


@torch.compiler.assume_constant_result
def triton_interpreted() -> bool:
    """Whether Triton runs kernels through its CPU interpreter. Triton reads the variable when a kernel module is
    imported, so it has to be set before the first ``ser_fast.kernels`` import."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def resolve_backend(backend: str, reference_tensor: torch.Tensor, *, op: str) -> str:
    """The backend that will run ``op`` on tensors like ``reference_tensor`` (its device and dtype: the kernels take
    float32, float16 and bfloat16; "auto" runs other dtypes on the torch path)."""
    if backend not in BACKENDS:
        raise ValueError(f"{op}: unknown backend {backend!r}; expected one of {', '.join(map(repr, BACKENDS))}")
    if backend == "auto":
        if reference_tensor.is_cuda and triton_available() and reference_tensor.dtype in TRITON_DTYPES:
            return "triton"
        if reference_tensor.is_cuda and not torch.compiler.is_compiling():
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


def check_flag(value: object, name: str, *, op: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{op}: {name} must be a bool, got {type(value).__name__}")
    return value


def reads_values(check_values: bool, tensor: torch.Tensor) -> bool:
    """Whether a public op reads the contents of its inputs to check them (a tensor's values, not its shape, dtype or
    device): when ``check_values`` asks for it, the call runs eagerly, and the tensor has values at all (not on the meta
    device).

    Under torch.compile and torch.export the inputs are traced, not read: a check there would end the graph (a
    data-dependent branch) and, on CUDA, wait for the device at every call; the eager call of the same code checks them.
    On CUDA an eager check waits for the device once per public call, never inside a backend or the backward.
    """
    return check_values and not torch.compiler.is_compiling() and tensor.device.type != "meta"


def call_without_autocast(device_type: str, fn: Callable, *args, **kwargs):
    """``fn(*args, **kwargs)`` with autocast off on ``device_type`` (where autocast exists: not on meta).

    Where it is off already (every call of a fused op inside its public function) this is a plain call: entering even
    a no-op context inside an autograd Function costs a few microseconds, a tenth of DSNet's attention pool."""
    if torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type):
        with torch.autocast(device_type, enabled=False):
            return fn(*args, **kwargs)
    return fn(*args, **kwargs)


def outside_autocast(op):
    """Run a fused op with autocast off: it computes at its inputs' dtype (accumulating in float32) whatever the
    caller's autocast says. Under autocast, the torch ops inside its forward would run and be saved in bf16 while its
    hand-written backward, which runs after autocast has exited, mixes them with float32. The custom ops'
    implementations turn it off themselves too (:func:`call_without_autocast`): autocast falls through a custom op to
    the torch ops inside it, and a backward runs under whatever autocast surrounds ``loss.backward()``."""

    @functools.wraps(op)
    def wrapper(*args, **kwargs):
        tensors = (a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor))
        device_type = next((t.device.type for t in tensors), "cpu")
        return call_without_autocast(device_type, op, *args, **kwargs)

    return wrapper


@functools.cache
def backend_module(op: str, backend: str) -> ModuleType:
    """The module that implements ``op`` (``forward``, ``backward``, and ``fake_state`` where the state's layout differs
    by backend): ``ser_fast.ops.<op>.cpu`` for "torch", ``ser_fast.kernels.<op>`` for "triton"."""
    if backend not in OP_BACKENDS:
        raise ValueError(f"ser_fast::{op}: backend must be one of {OP_BACKENDS}, got {backend!r}")
    return importlib.import_module(f"ser_fast.ops.{op}.cpu" if backend == "torch" else f"ser_fast.kernels.{op}")


class FusedOp:
    """A fused op with a hand-written backward, one implementation called two ways.

    Under torch.compile and torch.export it is the custom op ``ser_fast::<name>`` (``.op``) with its backward
    ``ser_fast::<name>_backward`` (``.backward_op``): one node each, with a declared output (``register_fake``) and
    gradient, which the compiler never traces into (the torch path reads ``lengths`` on the CPU; the kernels launch
    Triton). Eagerly it is a plain ``torch.autograd.Function`` over the same two functions, or with grad mode off the
    forward alone: a custom op's dispatch (its autograd wrapper's pytree passes and aliasing checks) costs tens of
    microseconds per call on the CPU, more than the whole forward of DSNet's attention pool.

    ``forward`` and ``backward`` are typed for torch.library's schema. ``setup_context(ctx, inputs, output)`` saves what
    the backward needs; ``grads(ctx, backward, *grad_outputs)`` returns the inputs' gradients, computed with
    ``backward`` (the op, or the plain function when eager). The op's first ``differentiable`` outputs carry gradients;
    the rest is state for the backward.

    ``forward`` may return None for an output a call does not make, and outputs that share memory with its inputs or
    with each other (e.g. mu as a view of the saved moments): the eager call returns them as they are, and only the
    custom op, whose outputs may not alias, pays for empty tensors and copies (:func:`fit_op_outputs`). At DSNet's
    shapes those copies cost a third of attention pooling's forward.
    """

    def __init__(self, name: str, forward: Callable, backward: Callable, setup_context: Callable, grads: Callable,
                 *, differentiable: int) -> None:
        def op_forward(*inputs):
            return fit_op_outputs(forward(*inputs), inputs)

        self.op = torch.library.custom_op(f"ser_fast::{name}", op_forward, mutates_args=(),
                                          schema=torch.library.infer_schema(forward, mutates_args=()))
        self.backward_op = torch.library.custom_op(f"ser_fast::{name}_backward", backward, mutates_args=())

        def op_setup_context(ctx, inputs, output):
            ctx.mark_non_differentiable(*output[differentiable:])
            setup_context(ctx, inputs, output)

        self.op.register_autograd(lambda ctx, *grad_outputs: grads(ctx, self.backward_op, *grad_outputs),
                                  setup_context=op_setup_context)
        self.forward, self.differentiable = forward, differentiable

        # forward(ctx, ...): Function.apply binds a ctx-less forward's arguments with inspect.signature on every call,
        # which costs more than the op. The state for the backward stays on ctx instead of being returned: fewer
        # outputs for autograd to wrap, and no zero gradients to fill in for them.
        def eager_forward(ctx, *inputs):
            output = forward(*inputs)
            setup_context(ctx, inputs, output)
            ctx.num_state = len(output) - differentiable
            return output[:differentiable]

        def eager_backward(ctx, *grad_outputs):
            return grads(ctx, backward, *grad_outputs, *[None] * ctx.num_state)

        self.eager = type(name, (torch.autograd.Function,), {
            "forward": staticmethod(eager_forward),
            "backward": staticmethod(eager_backward),
        })

    def __call__(self, *args) -> tuple[torch.Tensor | None, ...]:
        """The op's first ``differentiable`` outputs (the state for its backward is not returned); an output the call
        does not make is None eagerly and an empty tensor under torch.compile."""
        if torch.compiler.is_compiling():
            return self.op(*args)[:self.differentiable]
        if torch.is_grad_enabled():
            return self.eager.apply(*args)
        return self.forward(*args)[:self.differentiable]


def fit_op_outputs(outputs: tuple[torch.Tensor | None, ...], inputs: tuple) -> tuple[torch.Tensor, ...]:
    """``outputs`` as a custom op may return them: None as an empty tensor of the first input tensor's dtype, and a copy
    of every output that shares memory with an input or a later output. Later ones are kept whole: they are the state
    (e.g. the moments), larger than the outputs that are views of it (mu, sigma)."""
    tensors = [t for t in inputs if isinstance(t, torch.Tensor)]
    taken = {t.untyped_storage().data_ptr() for t in tensors if t.untyped_storage().nbytes()}

    def fit(output: torch.Tensor | None) -> torch.Tensor:
        if output is None:
            return tensors[0].new_empty(0)
        storage = output.untyped_storage()
        if not storage.nbytes():
            return output.new_empty(output.shape)
        if storage.data_ptr() in taken:
            return output.clone()
        taken.add(storage.data_ptr())
        return output

    return tuple(reversed([fit(output) for output in reversed(outputs)]))
