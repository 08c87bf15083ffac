"""silero-vad's 16 kHz network in PyTorch, with the weights of the ONNX model its wheel ships.

silero-vad runs its network one 32 ms frame at a time (the streaming model) or one ONNX call per 16 s block (its
"sequence" model). In both most of the time goes to convolutions over a few samples each, done frame by frame. Here
the encoder of every frame of a recording runs as batched tensor ops, and only the LSTM, whose state carries from
frame to frame, runs in sequence. The probabilities equal silero's own within 1e-4 (``tests/test_vad_network.py``),
2.4x the speed of silero's sequence model on an hour of speech (``bench/bench_inference.py``).

The LSTM runs over the whole recording as one sequence, as silero's does. Splitting it into parallel streams would be
several times faster, but silero's LSTM state does not forget: streams warmed up on 30 s before their start still
disagree with the single sequence far into the stream (measured: speech decisions flip on 0.3 % of frames).

The network, per frame of 512 samples with the 64 before it as context (silero's names in brackets):
    x  = [context, frame] reflect-padded by 64 on the right                 576 -> 640 samples
    S  = |windowed DFT| of 4 windows of 256 every 128 samples           [stft]  -> [129 bins, 4]
    e  = ReLU(conv) x 4: 129->128 (k3), 128->64 (k3/2), 64->64 (k3/2), 64->128 (k3)  [encoder]  -> [128]
    h  = LSTM(e), 128 units, state carried from the previous frame    [recurrent]
    p  = sigmoid(w . ReLU(h) + b)                                       [output]
Weights are read with ``onnx`` (protobuf, nothing unpickled) from the wheel's ``silero_vad_16k_sequence.onnx``. A
graph whose weights are not shaped so (another silero version) raises ``UnknownSileroGraph``; the VAD also checks the
port against silero's own model on a probe signal before using it, and otherwise falls back to silero's model."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

FRAME = 512  # samples per 32 ms frame at 16 kHz
CONTEXT = 64  # samples of the previous frame each frame sees
REFLECT = 64  # reflect padding on the right of each frame's input
WINDOW, HOP, BINS = 256, 128, 129
HIDDEN = 128
FRAMES_PER_BATCH = 8192  # frames whose encoder runs at once (about 4.5 minutes, 20 MB of spectra)
SEQUENCE_MODEL = "silero_vad_16k_sequence.onnx"
ENCODER_SHAPES = (((128, 129, 3), 1), ((64, 128, 3), 2), ((64, 64, 3), 2), ((128, 64, 3), 1))


class UnknownSileroGraph(ValueError):
    """The installed silero-vad's ONNX model is not the network this module knows (another version's)."""


def sequence_model_path() -> Path:
    """The wheel's sequence ONNX model, found without importing silero_vad (which sets torch to one thread)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the silero-vad package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / SEQUENCE_MODEL


class SileroNetwork:
    """silero-vad's network, evaluated over a whole recording: ``frame_probabilities(wave)`` gives each 32 ms
    frame's speech probability, as silero's ``audio_forward`` does."""

    def __init__(self, weights: dict[str, torch.Tensor]) -> None:
        basis = weights["stft"]
        self.window = basis[0, 0].clone()  # the zero-frequency row of the windowed DFT is the window itself
        self.basis = basis[:, 0, :].T.contiguous()  # [WINDOW, 2*BINS]: real parts, then imaginary
        self.encoder = [(weights[f"encoder.{i}.weight"], weights[f"encoder.{i}.bias"], stride)
                        for i, (_, stride) in enumerate(ENCODER_SHAPES)]
        self.lstm = torch.nn.LSTM(HIDDEN, HIDDEN, dtype=torch.float32)
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(self.lstm, f"{name}_l0").copy_(weights[name])
        self.output_weight = weights["output.weight"].reshape(HIDDEN)
        self.output_bias = weights["output.bias"].reshape(())

    @classmethod
    def from_wheel(cls, path: Path | None = None) -> SileroNetwork:
        return cls(read_weights(path or sequence_model_path()))

    @torch.inference_mode()
    def frame_probabilities(self, wave: np.ndarray) -> np.ndarray:
        """Each frame's speech probability, float32 ``[ceil(samples / 512)]``, for a mono 16 kHz ``wave``; the last
        frame is zero-padded, as silero's is."""
        wave = np.asarray(wave)
        if wave.ndim != 1:
            raise ValueError(f"wave must be mono [samples] at 16 kHz, got shape {wave.shape}")
        if len(wave) == 0:
            return np.zeros(0, np.float32)
        frames = _frames_with_context(wave)
        features = torch.cat([self._encode(frames[i:i + FRAMES_PER_BATCH])
                              for i in range(0, len(frames), FRAMES_PER_BATCH)])
        hidden, _ = self.lstm(features.unsqueeze(1))
        logits = F.relu(hidden.squeeze(1)) @ self.output_weight + self.output_bias
        return torch.sigmoid(logits).numpy()

    def _encode(self, frames: torch.Tensor) -> torch.Tensor:
        """[N, CONTEXT + FRAME] samples -> [N, HIDDEN] encoder outputs."""
        padded = F.pad(frames.unsqueeze(1), (0, REFLECT), mode="reflect").squeeze(1)
        windows = padded.unfold(-1, WINDOW, HOP)  # [N, 4, WINDOW]
        # |DFT| by FFT: the basis is the window times the DFT matrix (to 4e-5), and an FFT costs a third of the matmul.
        spectrum = torch.fft.rfft(windows * self.window, dim=-1)
        magnitude = torch.hypot(spectrum.real, spectrum.imag).transpose(1, 2)  # [N, BINS, 4]; 3x Tensor.abs's speed
        x = magnitude
        for weight, bias, stride in self.encoder:
            x = F.relu(F.conv1d(x, weight, bias, stride=stride, padding=1))
        return x.squeeze(-1)


def _frames_with_context(wave: np.ndarray) -> torch.Tensor:
    """[frames, CONTEXT + FRAME]: each 512-sample frame (the last zero-padded) after the previous frame's last 64
    samples (zeros before the first), silero's framing."""
    count = -(-len(wave) // FRAME)
    samples = torch.zeros(CONTEXT + count * FRAME, dtype=torch.float32)
    samples[CONTEXT:CONTEXT + len(wave)] = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
    return samples.unfold(0, CONTEXT + FRAME, FRAME)


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The network's weights from silero's sequence ONNX model, renamed and reordered for PyTorch; UnknownSileroGraph
    where a weight is missing or shaped otherwise."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    initializers = {item.name: torch.from_numpy(numpy_helper.to_array(item).astype(np.float32))
                    for item in graph.initializer}
    lstm = [node for node in graph.node if node.op_type == "LSTM"]
    if len(lstm) != 1 or len(lstm[0].input) < 4:
        raise UnknownSileroGraph(f"{path}: expected one LSTM node, found {len(lstm)}")
    input_weight, recurrent_weight, bias = (initializers.get(name) for name in lstm[0].input[1:4])
    weights = {"stft": initializers.get("stft.forward_basis_buffer"),
               "output.weight": initializers.get("output.weight"), "output.bias": initializers.get("output.bias"),
               "lstm.W": input_weight, "lstm.R": recurrent_weight, "lstm.B": bias}
    for i in range(len(ENCODER_SHAPES)):
        weights[f"encoder.{i}.weight"] = initializers.get(f"encoder.{i}.weight")
        weights[f"encoder.{i}.bias"] = initializers.get(f"encoder.{i}.bias")
    expected = {"stft": (2 * BINS, 1, WINDOW), "output.weight": (1, HIDDEN, 1), "output.bias": (1,),
                "lstm.W": (1, 4 * HIDDEN, HIDDEN), "lstm.R": (1, 4 * HIDDEN, HIDDEN), "lstm.B": (1, 8 * HIDDEN)}
    for i, (shape, _) in enumerate(ENCODER_SHAPES):
        expected[f"encoder.{i}.weight"], expected[f"encoder.{i}.bias"] = shape, shape[:1]
    wrong = [f"{name} {None if weights[name] is None else tuple(weights[name].shape)} (expected {shape})"
             for name, shape in expected.items() if weights[name] is None or tuple(weights[name].shape) != shape]
    if wrong:
        raise UnknownSileroGraph(f"{path}: not the silero-vad 6 network ser_fast knows: {', '.join(wrong)}")
    # ONNX orders an LSTM's gates input, output, forget, cell; PyTorch input, forget, cell, output.
    weights["weight_ih"] = _torch_gate_order(weights.pop("lstm.W")[0])
    weights["weight_hh"] = _torch_gate_order(weights.pop("lstm.R")[0])
    bias = weights.pop("lstm.B")[0]
    weights["bias_ih"], weights["bias_hh"] = _torch_gate_order(bias[:4 * HIDDEN]), _torch_gate_order(bias[4 * HIDDEN:])
    return weights


def _torch_gate_order(onnx_gates: torch.Tensor) -> torch.Tensor:
    input_gate, output_gate, forget_gate, cell_gate = onnx_gates.chunk(4)
    return torch.cat([input_gate, forget_gate, cell_gate, output_gate])
