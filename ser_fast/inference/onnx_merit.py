"""Sparse MERIT's two exported graphs, on 16 kHz samples with their lengths:

- the SER graph (``task="ser"``): ``probabilities [B, C]``, the calibrated softmax of what
  :class:`~ser_fast.inference.EmotionRecognizer` classifies (``head(encode(wave, lengths))``); a model with a
  dimensional head (``ser_fast.models.targets``) gives its arousal, valence and dominance as a second output,
  ``dimensions [B, 3]`` on [0, 1] (the scale its targets were normalised to), and a dimensional model that output
  alone (:attr:`MeritGraph.output_names` names a graph's outputs in order);
- the SE graph (``task="se"``): ``enhanced [B, S]``, the model's :meth:`enhance` (the noisy phase, the input's length),
  zero past each item's samples.

Both hold the whole network. The model traces into ops every ONNX runtime has because its parts take their traceable
forms while ``torch.export`` runs: the log-Mel front-end as :class:`~ser_fast.frontend.graph.LogMelGraph` (centred
frames), the SSL transformer as Hugging Face's modules with the attention mask always on, the experts as the dense
reference of ``ser_fast::moe_experts``, the SE head's BLSTM as ``ser_fast::lstm_by_lengths`` (ONNX ``LSTM`` with
``sequence_lens``) and the inverse STFT as matrix products and overlap-add (``Spectrogram.inverse``)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from ser_fast.models.merit.se_head import enhance
from ser_fast.models.targets import has_dimensions, split_scores

TASKS = ("ser", "se")
# Each task's first output; the SER graph of a model with a dimensional head adds DIMENSIONS_OUTPUT.
OUTPUT_NAMES = {"ser": "probabilities", "se": "enhanced"}
DIMENSIONS_OUTPUT = "dimensions"
# Two seconds: any length past the SSL model's receptive field traces the same graph.
EXAMPLE_SAMPLES = 32000


class MeritGraph(nn.Module):
    """``forward(waveform [B, S], lengths [B] int64 samples)`` → the ``task``'s output, on a float32 eval-mode copy of
    ``model`` (a ``SparseMERIT`` or ``SEThenSER``). The network sees each item's length clamped to ``min_samples``..S
    (S must be at least ``min_samples``: a shorter item is classified and enhanced as if padded with zeros to it);
    the enhanced samples are zero past the length given. ``output_names``: the graph's outputs in order; with more
    than one (the SER graph of a model with classes and a dimensional head) ``forward`` returns them as a tuple."""

    def __init__(self, model: nn.Module, task: str, temperature: float = 1.0) -> None:
        super().__init__()
        if not isinstance(model, nn.Module) or not all(hasattr(model, a) for a in ("config", "encode", "spectrogram")):
            raise TypeError(f"model must be a Sparse MERIT network (SparseMERIT or SEThenSER), got "
                            f"{type(model).__name__}")
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 < temperature < 1e6:
            raise ValueError(f"temperature must be a positive number, got {temperature!r}")
        self.model = _inference_copy(model)
        self.task, self.temperature = task, temperature
        self.num_classes = int(self.model.num_classes)
        self.output_names = _output_names(task, self.num_classes, self.model.target)
        # The SSL model's receptive field, and the STFT's centring, which reflects n_fft/2 samples at each end.
        self.min_samples = max(int(_ssl_of(self.model).min_samples), self.model.spectrogram.n_fft // 2 + 1)

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        seen = torch.clamp(lengths, min=self.min_samples, max=waveform.shape[1])
        if self.task == "ser":
            scores, _ = self.model.head(self.model.encode(waveform, seen))
            logits, dimensions = split_scores(scores, self.num_classes)
            outputs = [] if logits is None else [torch.softmax(logits.float() / self.temperature, dim=1)]
            outputs += [] if dimensions is None else [dimensions.float()]
            return outputs[0] if len(outputs) == 1 else tuple(outputs)
        # The SER head's nodes feed no output of this graph; the exporter drops them.
        enhanced = enhance(waveform, self.model(waveform, seen).se_mask, self.model.spectrogram)
        valid = torch.arange(waveform.shape[1], device=waveform.device)[None, :] < lengths[:, None]
        return enhanced * valid


def _output_names(task: str, num_classes: int, target: str) -> tuple[str, ...]:
    """The graph's outputs: the SE graph's enhanced samples; the SER graph's probabilities (with classes), then the
    dimensions (with a dimensional head)."""
    if task == "se":
        return (OUTPUT_NAMES["se"],)
    names = (OUTPUT_NAMES["ser"],) if num_classes else ()
    return names + (DIMENSIONS_OUTPUT,) if has_dimensions(target) else names


def _inference_copy(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).float().cpu().eval()


def _ssl_of(model: nn.Module):
    """The SSL model whose receptive field bounds the input (the cascade's two have the same)."""
    return model.ssl if hasattr(model, "ssl") else model.se_ssl
