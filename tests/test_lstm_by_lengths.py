"""``ser_fast::lstm_by_lengths``: eagerly the packed ``nn.LSTM``; in onnxruntime (ONNX ``LSTM`` with
``sequence_lens``) the same, at other batch sizes and lengths than the traced ones."""

from __future__ import annotations

import onnxruntime as ort
import pytest
import torch
from helpers import assert_close
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ser_fast.ops.export import onnx_program
from ser_fast.ops.lstm_by_lengths import lstm_by_lengths

ATOL = 1e-6


def packed_reference(lstm: torch.nn.LSTM, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    return pad_packed_sequence(lstm(packed)[0], batch_first=True, total_length=x.shape[1])[0]


def make_lstm(layers: int, bidirectional: bool, seed: int = 0) -> torch.nn.LSTM:
    torch.manual_seed(seed)
    return torch.nn.LSTM(7, 5, num_layers=layers, batch_first=True, bidirectional=bidirectional).eval()


class _Wrapped(torch.nn.Module):
    def __init__(self, lstm: torch.nn.LSTM) -> None:
        super().__init__()
        self.lstm = lstm

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return lstm_by_lengths(self.lstm, x, lengths)


@pytest.mark.parametrize("layers, bidirectional", [(1, False), (2, True), (3, True)],
                         ids=["1-layer-forward", "2-layer-bidirectional", "3-layer-bidirectional"])
@pytest.mark.parametrize("lengths", [(11, 4, 7), (1,), (13, 13)], ids=["odd-lengths", "one-frame", "unpadded"])
def test_eager_equals_the_packed_lstm(layers, bidirectional, lengths):
    lstm = make_lstm(layers, bidirectional)
    x = torch.randn(len(lengths), max(lengths), 7)
    n = torch.tensor(lengths)
    with torch.no_grad():
        got = lstm_by_lengths(lstm, x, n)
        assert_close(got, packed_reference(lstm, x, n), atol=ATOL)
    for i, count in enumerate(lengths):
        assert not got[i, count:].any(), "outputs past an item's length are zero"


@pytest.mark.parametrize("bidirectional", [False, True], ids=["forward", "bidirectional"])
def test_onnxruntime_keeps_each_items_reverse_direction(bidirectional):
    lstm = make_lstm(2, bidirectional, seed=1)
    batch, frames = torch.export.Dim("batch", min=1), torch.export.Dim("frames", min=2)
    with torch.no_grad():
        program = onnx_program(_Wrapped(lstm).eval(), (torch.randn(3, 11, 7), torch.tensor([11, 4, 7])),
                               dynamic_shapes={"x": {0: batch, 1: frames}, "lengths": {0: batch}},
                               input_names=["x", "lengths"], output_names=["y"], external_data=False, verbose=False)
    session = ort.InferenceSession(program.model_proto.SerializeToString(), providers=["CPUExecutionProvider"])
    assert [node.op_type for node in program.model_proto.graph.node].count("LSTM") == 2
    x, n = torch.randn(4, 19, 7), torch.tensor([19, 1, 8, 13])
    got = session.run(None, {"x": x.numpy(), "lengths": n.numpy()})[0]
    with torch.no_grad():
        assert_close(torch.from_numpy(got), packed_reference(lstm, x, n), atol=ATOL)


def test_training_through_it_is_refused():
    with pytest.raises(ValueError, match="inference op"):
        lstm_by_lengths(make_lstm(1, True), torch.zeros(1, 2, 7), torch.tensor([2]))


@pytest.mark.parametrize("call, match", [
    pytest.param(lambda lstm: lstm_by_lengths(torch.nn.GRU(7, 5, batch_first=True), torch.zeros(1, 2, 7),
                                              torch.tensor([2])), "nn.LSTM with batch_first", id="not-an-lstm"),
    pytest.param(lambda lstm: lstm_by_lengths(torch.nn.LSTM(7, 5), torch.zeros(1, 2, 7), torch.tensor([2])),
                 "batch_first=True", id="time-major"),
    pytest.param(lambda lstm: lstm_by_lengths(lstm, torch.zeros(1, 2, 6), torch.tensor([2])), r"D=7", id="width"),
    pytest.param(lambda lstm: lstm_by_lengths(lstm, torch.zeros(2, 7), torch.tensor([2])), r"\[B, T, D", id="2-d"),
    pytest.param(lambda lstm: lstm_by_lengths(lstm, torch.zeros(1, 2, 7), torch.tensor([2.0])), "int64",
                 id="float-lengths"),
    pytest.param(lambda lstm: lstm_by_lengths(lstm, torch.zeros(2, 2, 7), torch.tensor([2])), r"\[B=2\]",
                 id="lengths-shape"),
    pytest.param(lambda lstm: lstm_by_lengths(lstm, torch.zeros(2, 3, 7), torch.tensor([3, 0])), r"1\.\.T=3",
                 id="zero-length"),
    pytest.param(lambda lstm: lstm_by_lengths(lstm, torch.zeros(1, 3, 7), torch.tensor([4])), r"1\.\.T=3",
                 id="past-the-end"),
])
def test_bad_arguments_are_explained(call, match):
    with pytest.raises(ValueError, match=match):
        call(make_lstm(1, True))
