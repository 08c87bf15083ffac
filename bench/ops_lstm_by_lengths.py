"""lstm_by_lengths at Sparse MERIT's SE-head shape (2-layer BLSTM, 256 wide, padded batches of STFT frames): the
packed ``nn.LSTM`` the model runs eagerly (the reference), the op called eagerly (the same, through the custom op),
and the exported op in onnxruntime (one ONNX ``LSTM`` node per layer with ``sequence_lens``), forward only: it is an
inference op. On CUDA only the PyTorch paths are timed (onnxruntime's CPU provider is not a CUDA path)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import torch
from _report import cuda_times, interleaved_median
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ser_fast.ops.export import onnx_program
from ser_fast.ops.lstm_by_lengths import lstm_by_lengths

# (label, B, T, random lengths): 4 s training crops and a 16 s batch of a long recording, STFT frames every 10 ms.
SHAPES = (
    ("SE head B=8 T=401 (4 s), lengths 50-100 %", 8, 401, True),
    ("SE head B=4 T=1601 (16 s), full", 4, 1601, False),
)
WIDTH = 256


class _Op(torch.nn.Module):
    def __init__(self, lstm: torch.nn.LSTM) -> None:
        super().__init__()
        self.lstm = lstm

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return lstm_by_lengths(self.lstm, x, lengths)


def _packed(lstm: torch.nn.LSTM, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    return pad_packed_sequence(lstm(packed)[0], batch_first=True, total_length=x.shape[1])[0]


def _session(lstm: torch.nn.LSTM) -> ort.InferenceSession:
    dims = {"x": {0: torch.export.Dim("batch"), 1: torch.export.Dim("frames", min=2)},
            "lengths": {0: torch.export.Dim("batch")}}
    program = onnx_program(_Op(lstm).eval(), (torch.zeros(2, 16, WIDTH), torch.tensor([16, 9])), dynamic_shapes=dims,
                           input_names=["x", "lengths"], output_names=["y"], external_data=False, verbose=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    return ort.InferenceSession(program.model_proto.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _providers(lstm: torch.nn.LSTM, session: ort.InferenceSession | None, x: torch.Tensor,
               lengths: torch.Tensor) -> dict:
    providers = {"packed": lambda: _packed(lstm, x, lengths),
                 "op": lambda: lstm_by_lengths(lstm, x, lengths.to(x.device))}
    if session is not None:
        feeds = {"x": x.numpy(), "lengths": lengths.numpy().astype(np.int64)}
        providers["onnxruntime"] = lambda: session.run(None, feeds)
    return providers


def run(device: torch.device, rounds: int) -> str:
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(WIDTH, WIDTH, num_layers=2, batch_first=True, bidirectional=True).eval().to(device)
    with torch.no_grad():
        session = _session(lstm.cpu()) if device.type == "cpu" else None
        header = "| shape | nn.LSTM packed ms | op eager ms | onnxruntime ms | packed / onnxruntime |"
        rows = [header, "|---|---:|---:|---:|---:|"]
        for label, batch, frames, random_lengths in SHAPES:
            gen = torch.Generator().manual_seed(1)
            x = torch.randn(batch, frames, WIDTH, generator=gen).to(device)
            low = frames // 2 if random_lengths else frames
            lengths = torch.randint(low, frames + 1, (batch,), generator=gen)
            lengths[0] = frames
            providers = _providers(lstm, session, x, lengths)
            times = cuda_times(providers) if device.type == "cuda" else interleaved_median(providers, rounds)
            ort_ms = times.get("onnxruntime")
            rows.append(f"| {label} | {1e3 * times['packed']:.2f} | {1e3 * times['op']:.2f} | "
                        + (f"{1e3 * ort_ms:.2f} | {times['packed'] / ort_ms:.2f}× |" if ort_ms else "— | — |"))
    return "\n".join(rows) + "\n\nThe same outputs within 1e-6 (tests/test_lstm_by_lengths.py)."
