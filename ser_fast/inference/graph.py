""":class:`InferenceGraph`: a CNN model (Baseline, DSNet, EDRL-MEA) for inference, fast or the plain reference."""

from __future__ import annotations

import copy
import logging

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from ser_fast.models.encoder import (
    TIME_REDUCTION,
    AcousticEncoder,
)
from ser_fast.runs.precision import PRECISIONS, use_bf16
from ser_fast.runs.registry import FEATURES, kind_of_model

logger = logging.getLogger(__name__)

MODES = ("fast", "plain")
MIN_COMPILED_BATCH = 2
MIN_COMPILED_FRAMES = 2 * TIME_REDUCTION


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in eval mode with each BatchNorm that directly follows a Conv2d or a Linear in an
    ``nn.Sequential`` folded into that layer (``torch.nn.utils.fusion``) and replaced by ``nn.Identity``: the same
    function up to float rounding, one pass over the activations less."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    folded = copy.deepcopy(model).eval()
    pairs = 0
    for sequence in [m for m in folded.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(sequence) - 1):
            layer, norm = sequence[i], sequence[i + 1]
            if not (isinstance(norm, (nn.BatchNorm1d, nn.BatchNorm2d)) and norm.track_running_stats):
                continue
            if isinstance(layer, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                sequence[i] = fuse_conv_bn_eval(layer, norm)
            elif isinstance(layer, nn.Linear) and isinstance(norm, nn.BatchNorm1d):
                sequence[i] = fuse_linear_bn_eval(layer, norm)
            else:
                continue
            sequence[i + 1] = nn.Identity()
            pairs += 1
    logger.debug("folded %d BatchNorm layers of %s", pairs, type(model).__name__)
    return folded


class ConvTrunk(nn.Module):
    """:meth:`AcousticEncoder.trunk <ser_fast.models.encoder.AcousticEncoder.trunk>` as a module of its own: the
    encoder's work between its input checks and its attention pooling, with no data-dependent branch, so that
    ``torch.compile`` takes it as one graph. ``valid=None`` (nothing padded) skips the masks."""

    def __init__(self, encoder: AcousticEncoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.encoder.trunk(x, valid)


class LogitsAndEmbedding(nn.Module):
    """``forward(x, lengths) -> (logits [B, C], embedding [B, D])``: the model's ``encode`` step by step (its checks,
    :class:`ConvTrunk` in ``self.trunk``, which compile replaces, its attention pooling), then its ``head(h)``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        _check_features_model(model)
        self.model = model
        self.trunk = ConvTrunk(model.encoder)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.head(self.encode(x, lengths))

    def encode(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """``h = model.encoder(x, lengths)``, through ``self.trunk``."""
        encoder = self.model.encoder
        frames, valid = self.trunk(x, encoder.checked_lengths(x, lengths))
        return encoder.temporal_pool(frames, valid)


def _check_features_model(model: object) -> None:
    try:
        on_features = kind_of_model(model).input == FEATURES
    except TypeError:
        on_features = False
    if not on_features:
        raise TypeError(f"model must be a Baseline, DSNet or EDRLMEA, got {type(model).__name__}")


class InferenceGraph:
    """A CNN model prepared for prediction: ``graph(x, lengths) -> (logits, embedding)``, both float32, from float
    features ``x [B, 3, T, 80]`` (T >= 16) and ``lengths [B]`` valid frames or None.

    Args:
        model: a trained Baseline, DSNet or EDRLMEA (left untouched: the graph works on a copy).
        mode: ``"fast"`` (BatchNorm folded, channels_last, bf16 where fast, optional compile) or ``"plain"`` (the model
            as trained: fp32, contiguous, eager; ``precision`` must be "auto" or "fp32" and ``compile`` False).
        precision: ``"auto"`` (bf16 autocast where :func:`~ser_fast.runs.precision.use_bf16` finds it fast, else fp32),
            ``"fp32"`` or ``"bf16"`` (forced, even where it is slow).
        compile: ``torch.compile`` the encoder's conv trunk, where nearly all the time goes (:class:`CompiledTrunk`);
            the rest stays eager. The first batches pay the compilation.
        device: where the graph runs."""

    def __init__(self, model: nn.Module, *, mode: str = "fast", precision: str = "auto", compile: bool = False,
                 device: str | torch.device = "cpu") -> None:
        if mode not in MODES:
            raise ValueError(f"mode {mode!r}: expected one of {MODES}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r}: expected one of {PRECISIONS}")
        if not isinstance(compile, bool):
            raise TypeError(f"compile must be a bool, got {type(compile).__name__}")
        if mode == "plain" and (precision == "bf16" or compile):
            raise ValueError("mode='plain' is the fp32 eager reference: use precision 'auto' or 'fp32' and "
                             "compile=False with it, or mode='fast'")
        _check_features_model(model)
        self.device = torch.device(device)
        self.mode = mode
        self.bf16 = mode == "fast" and use_bf16(precision, self.device)
        self.channels_last = mode == "fast"
        self.compiled = compile
        if mode == "plain":
            net = copy.deepcopy(model).eval().to(self.device, memory_format=torch.contiguous_format)
        else:
            net = fold_batchnorm(model).to(self.device, memory_format=torch.channels_last)
        self.module = LogitsAndEmbedding(net)
        if compile:
            logger.info("compiling the encoder's conv trunk with torch.compile (dynamic shapes): the first batches "
                        "pay for it")
            self.module.trunk = CompiledTrunk(self.module.trunk)
        logger.info("inference graph: %s, %s%s%s on %s", type(model).__name__, mode,
                    ", bf16 autocast" if self.bf16 else ", fp32", ", channels_last" if self.channels_last else "",
                    self.device)

    def __call__(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor [B, 3, T, 80], got {type(x).__name__}")
        layout = torch.channels_last if self.channels_last else torch.contiguous_format
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            x = x.to(self.device, torch.float32).contiguous(memory_format=layout)
            if lengths is not None:
                lengths = torch.as_tensor(lengths, dtype=torch.int64, device=self.device)
            logits, embedding = self.module(x, lengths)
        return logits.float(), embedding.float()


class CompiledTrunk(nn.Module):
    """:class:`ConvTrunk` through ``torch.compile``, fed so that two graphs serve every batch.

    Dynamic shapes let new batch sizes and lengths reuse a graph, but Dynamo still specialises on a few facts about
    them, and each specialisation is a compilation of tens of seconds on a small CPU (and past eight, it gives up and
    runs eager). So the trunk always gets a lengths tensor (not None when nothing is padded: one graph, not two), at
    least 2 items (a batch of 1 would be its own graph) and at least 32 frames (below that, the last block's single
    output frame has strides Inductor guards on); the added items and frames are padding the masks zero and the output
    drops. What remains is oneDNN's convolution choice for batches under and over 16: two graphs.

    Inductor's ``freezing`` (weights as constants, prepacked for oneDNN) was measured and left out: no faster here
    (within 2 % on DSNet's trunk, 1 and 2 threads), and slower to compile."""

    def __init__(self, trunk: ConvTrunk) -> None:
        super().__init__()
        if not hasattr(torch, "compile"):
            raise RuntimeError(f"compile=True needs torch.compile, which torch {torch.__version__} lacks")
        self.compiled = torch.compile(trunk, dynamic=True)

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, frames = x.shape[0], x.shape[2]
        extra_items, extra_frames = max(0, MIN_COMPILED_BATCH - batch), max(0, MIN_COMPILED_FRAMES - frames)
        with torch.inference_mode():
            lengths = torch.full((batch,), frames, dtype=torch.int64, device=x.device) if valid is None else valid
            if extra_items or extra_frames:
                x = F.pad(x, (0, 0, 0, extra_frames, 0, 0, 0, extra_items)).contiguous(memory_format=_layout(x))
                lengths = F.pad(lengths, (0, extra_items), value=1)
            # Dynamo also guards on whether a tensor was made under inference_mode (where the graph runs): a
            # caller's tensor made outside it would be a third graph, so it is copied in (lengths: B ints; x:
            # only when the caller's x already had the graph's dtype and layout).
            if not x.is_inference():
                x = x.clone(memory_format=_layout(x))
            if not lengths.is_inference():
                lengths = lengths.clone()
            out, out_lengths = self.compiled(x, lengths)
        if valid is None and not extra_frames:
            return out[:batch], None
        return out[:batch], out_lengths[:batch]


def _layout(x: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
