"""A (bidirectional, multi-layer) ``nn.LSTM`` over a padded batch with each item's length, as one op that an exported
graph keeps whole: ``ser_fast::lstm_by_lengths``.

Why an op: ``aten::lstm`` is a composite that ``torch.export`` unrolls over time, which fixes the number of frames in
the graph, and packed sequences do not trace at all. ONNX's ``LSTM`` takes ``sequence_lens``, so the op becomes one
``LSTM`` node per layer (:func:`onnx_translation`), with the reverse direction starting at each item's own last frame,
as a packed sequence does. Eagerly, the op runs ``nn.LSTM`` on the packed batch. It is an inference op (no backward):
models call it only while ``torch.export`` traces them (Sparse MERIT's SE head).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

__all__ = ["lstm_by_lengths", "onnx_translation"]

# PyTorch orders an LSTM's four gate blocks (input, forget, cell, output); ONNX orders them (input, output, forget,
# cell).
_ONNX_GATE_ORDER = (0, 3, 1, 2)


@torch.library.custom_op("ser_fast::lstm_by_lengths", mutates_args=())
def _lstm_op(x: torch.Tensor, lengths: torch.Tensor, weights: list[torch.Tensor], hidden: int, num_layers: int,
             bidirectional: bool) -> torch.Tensor:
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    directions = 2 if bidirectional else 1
    zeros = x.new_zeros(num_layers * directions, x.shape[0], hidden)
    # hx is in the sorted order of the packed batch; zeros are the same in any order.
    data, _, _ = torch.ops.aten.lstm.data(packed.data, packed.batch_sizes, [zeros, zeros], weights, True, num_layers,
                                          0.0, False, bidirectional)
    out = torch.nn.utils.rnn.PackedSequence(data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices)
    return pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0]


@_lstm_op.register_fake
def _(x, lengths, weights, hidden, num_layers, bidirectional):
    return x.new_empty(x.shape[0], x.shape[1], (2 if bidirectional else 1) * hidden)


def lstm_by_lengths(lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``lstm``'s output ``[B, T, directions · H]`` on ``x [B, T, D]`` whose item ``b`` has ``lengths[b]`` (int64,
    1..T) valid frames; 0 past them. ``lstm`` must be batch-first with biases and no projection; dropout is not applied
    (eval)."""
    if not isinstance(lstm, nn.LSTM) or not lstm.batch_first or not lstm.bias or lstm.proj_size:
        raise ValueError("lstm_by_lengths: lstm must be an nn.LSTM with batch_first=True, bias=True and no projection")
    if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[2] != lstm.input_size:
        raise ValueError(f"lstm_by_lengths: x must be [B, T, D={lstm.input_size}], got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    if not isinstance(lengths, torch.Tensor) or lengths.dtype != torch.int64 or tuple(lengths.shape) != (x.shape[0],):
        raise ValueError(f"lstm_by_lengths: lengths must be an int64 tensor [B={x.shape[0]}]")
    if not torch.compiler.is_compiling():
        if bool(((lengths < 1) | (lengths > x.shape[1])).any()):
            raise ValueError(f"lstm_by_lengths: lengths must lie in 1..T={x.shape[1]}, got {lengths.tolist()}")
        if torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in lstm.parameters())):
            raise ValueError("lstm_by_lengths is an inference op (no backward): call it under torch.no_grad(), or "
                             "train through nn.LSTM on packed sequences")
    weights = [w for layer in lstm.all_weights for w in layer]
    return _lstm_op(x, lengths, weights, lstm.hidden_size, lstm.num_layers, lstm.bidirectional)


def onnx_translation() -> dict:
    """``{ser_fast::lstm_by_lengths: its ONNX form}`` for ``torch.onnx.export(custom_translation_table=...)``: per layer
    one ``LSTM`` node (gates reordered, biases concatenated, ``sequence_lens`` from the lengths), time-major inside."""
    from onnxscript import opset18 as op

    def reorder(weight):
        blocks = op.Split(weight, num_outputs=4, axis=0)
        return op.Concat(*(blocks[i] for i in _ONNX_GATE_ORDER), axis=0)

    def stacked(parts):
        return op.Concat(*(op.Unsqueeze(part, [0]) for part in parts), axis=0)

    def lstm_by_lengths_onnx(x, lengths, weights, hidden: int, num_layers: int, bidirectional: bool):
        directions = 2 if bidirectional else 1
        sequence_lens = op.Cast(lengths, to=6)  # int32, as ONNX's LSTM takes it
        y = op.Transpose(x, perm=[1, 0, 2])  # [T, B, D]
        for layer in range(num_layers):
            groups = [weights[4 * (layer * directions + d):4 * (layer * directions + d + 1)] for d in range(directions)]
            w = stacked([reorder(g[0]) for g in groups])
            r = stacked([reorder(g[1]) for g in groups])
            b = stacked([op.Concat(reorder(g[2]), reorder(g[3]), axis=0) for g in groups])
            out, _, _ = op.LSTM(y, w, r, b, sequence_lens, hidden_size=hidden,
                                direction="bidirectional" if bidirectional else "forward")
            # [T, directions, B, H] -> [T, B, directions · H]: the directions side by side, as nn.LSTM gives them.
            y = op.Reshape(op.Transpose(out, perm=[0, 2, 1, 3]), op.Constant(value_ints=[0, 0, -1]))
        return op.Transpose(y, perm=[1, 0, 2])

    return {torch.ops.ser_fast.lstm_by_lengths.default: lstm_by_lengths_onnx}
