"""How the fused ops leave PyTorch: the one place that says what each ``ser_fast`` custom op becomes in an exported
graph.

ONNX (and any runtime without our kernels) gets each op's reference in plain torch ops, through a decomposition table
for ``torch.export``: ``ser_fast::attention_pool`` and ``ser_fast::orthogonality_loss`` become their references
(``naive.py``), ``ser_fast::moe_experts`` the dense design (every expert on every frame, weighted by the gates: the same
outputs, with fixed shapes, where the sparse dispatch's size depends on the routing's values) and
``ser_fast::moe_routing`` the torch routing. The backward ops have no entry: an exported inference graph holds none.
``ser_fast::lstm_by_lengths`` (``ser_fast.ops.lstm_by_lengths``) stays one node through ``torch.export`` and becomes
ONNX ``LSTM`` nodes through a custom translation.

The models call the public ops (``ser_fast.ops.attention_pool`` and the others), which under torch.export skip the
checks that read values and put the op's node in the graph; :func:`export_program` then swaps each node for its
reference. To export to ONNX::

    from ser_fast.ops.export import onnx_program
    program = onnx_program(module, args, dynamic_shapes=..., input_names=..., output_names=...)
    program.save("model.onnx")  # or program.model_proto
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from ser_fast.ops._backend import backend_module

# Importing the ops' modules registers the ops under torch.ops.ser_fast.
from ser_fast.ops.attention_pool.naive import attention_pool_ref
from ser_fast.ops.lstm_by_lengths import onnx_translation as lstm_translation
from ser_fast.ops.moe.naive import dense_experts, dense_gates
from ser_fast.ops.moe.op import fake_outputs
from ser_fast.ops.moe.routing import gate_values, top_k_experts
from ser_fast.ops.orthogonality_loss.naive import orthogonality_loss_ref

__all__ = ["decompositions", "export_program", "onnx_program"]


def decompositions() -> dict[torch._ops.OpOverload, Callable]:
    """``{custom op: its reference}`` for every forward op of ``ser_fast``, for ``ExportedProgram.run_decompositions``.
    Each reference returns what the op returns; the state a backend keeps for its backward comes back as empty tensors,
    which nothing in an exported graph reads (they are dropped as dead code)."""
    ops = torch.ops.ser_fast
    return {
        ops.attention_pool.default: _attention_pool,
        ops.orthogonality_loss.default: _orthogonality_loss,
        ops.moe_experts.default: _moe_experts,
        ops.moe_routing.default: _moe_routing,
    }


def export_program(
    model: torch.nn.Module,
    args: Sequence[Any],
    kwargs: Mapping[str, Any] | None = None,
    *,
    dynamic_shapes: Any = None,
    **export_options: Any,
) -> torch.export.ExportedProgram:
    """``torch.export.export(model, args, kwargs, dynamic_shapes=..., **export_options)`` with every fused ``ser_fast``
    op replaced by its reference (:func:`decompositions`); other ops, ``ser_fast::lstm_by_lengths`` among them, stay
    as exported."""
    program = torch.export.export(model, tuple(args), dict(kwargs or {}), dynamic_shapes=dynamic_shapes,
                                  **export_options)
    return program.run_decompositions(decompositions())


def onnx_program(
    model: torch.nn.Module,
    args: Sequence[Any],
    kwargs: Mapping[str, Any] | None = None,
    *,
    dynamic_shapes: Any = None,
    **options: Any,
) -> torch.onnx.ONNXProgram:
    """``torch.onnx.export(..., dynamo=True)`` of ``model`` with the ``ser_fast`` ops as their references. ``options``
    go to ``torch.onnx.export`` (``input_names``, ``output_names``, ``opset_version``, ``external_data``, ``verbose``,
    ...). Needs onnx and onnxscript. The module is captured as torch.onnx.export captures one (non-strict; sizes that
    may be 0 or 1 reasoned about obliviously; guards on dynamic sizes deferred to runtime asserts, which the exporter
    drops), so what exports with torch.onnx.export exports here, e.g. DSNet with frames from 16 on, whose encoder
    leaves a single frame to a Linear.
    """
    with torch.fx.experimental._config.patch(backed_size_oblivious=True):
        program = export_program(model, args, kwargs, dynamic_shapes=dynamic_shapes, strict=False,
                                 prefer_deferred_runtime_asserts_over_guards=True)
    return torch.onnx.export(program, tuple(args), kwargs=dict(kwargs or {}), dynamo=True,
                             custom_translation_table=lstm_translation(), **options)


def _attention_pool(x, scores, lengths, return_std, eps, backend):
    pooled = attention_pool_ref(x, scores, lengths, return_std=return_std, eps=eps)
    mu, sigma = pooled if return_std else (pooled, x.new_empty(0))
    return mu, sigma, *backend_module("attention_pool", backend).fake_state(x, scores, return_std)


def _orthogonality_loss(z1, z2, reduction, eps, backend):
    loss = orthogonality_loss_ref(z1, z2, reduction=reduction, eps=eps)
    return loss, *backend_module("orthogonality_loss", backend).fake_state(z1, z2)


def _moe_experts(x, experts, gates, valid, w1, b1, w2, b2, activation, backend):
    y = dense_experts(x, dense_gates(experts, gates, valid, w1.shape[0]), w1, b1, w2, b2, activation)
    return y, *fake_outputs(x, experts, w1, w2, 0)[1:]


def _moe_routing(logits, k, normalize_gates):
    probs = torch.softmax(logits.float(), dim=-1)
    experts = top_k_experts(logits, k)
    return probs, experts, gate_values(probs, experts, normalize_gates)
