"""DSNet's CNN acoustic encoder E (Section 3.1, Table 1): ``X [B, 3, T, 80]`` → ``h [B, 256]``."""

from __future__ import annotations

import torch
from torch import nn

from ser_fast.frontend.constants import IN_CHANNELS, N_MELS
from ser_fast.models.checks import Lengths, as_lengths
from ser_fast.ops import attention_pool

CHANNELS = (32, 64, 128, 256)
EMBED_DIM = CHANNELS[-1]
# Four 2×2 max pools: an utterance needs 16 frames for one frame to reach the attention pool.
TIME_REDUCTION = 2 ** len(CHANNELS)


class ResidualConvBlock(nn.Module):
    """One row pair of Table 1: Conv2d 5×5 + BN + ReLU, MaxPool 2×2, with a residual connection.

    The paper says only "stacked with residual connection". Every block changes the channel count, so the shortcut is a
    projection; it is ResNet-D's (He et al., "Bag of Tricks", 2019): average pool 2×2, then 1×1 conv + BN, i.e.
    downsampled before the projection. A 1×1 conv at the full resolution would add 78 M MACs per utterance at 600×80 and
    put the Baseline at 2.04 G, 2.99% above Table 3's 1.98 G; at the pooled resolution it costs 20 M and the total is
    1.980 G.

        y = ReLU(MaxPool(BN(Conv5×5(x))) + BN(Conv1×1(AvgPool(x))))

    Without the shortcut this is exactly Table 1's Conv+BN+ReLU → MaxPool (ReLU and max commute). Convs have no bias:
    the BN right after each one would cancel it.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=5, padding=2, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.MaxPool2d(2),
        )
        self.shortcut = nn.Sequential(
            nn.AvgPool2d(2),
            nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.activation = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.main(x) + self.shortcut(x))


class TemporalAttentionPool(nn.Module):
    """Attention pooling over time ([31], Mirsamadi et al. 2017): one score per frame from a small scorer, softmax over
    the valid frames, weighted mean (``ser_fast.ops.attention_pool``).

    The paper does not give the scorer; ours is Linear(256→256) + tanh + Linear(256→1), the additive-attention form of
    [31] with a hidden layer. Its 66 k parameters bring the Baseline to 1.21 M against Table 3's 1.23 M (a bare score
    vector would leave it 7% short).
    """

    def __init__(self, dim: int = EMBED_DIM) -> None:
        super().__init__()
        self.scorer = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, 1))

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``frames [B, T, D]`` → ``[B, D]``; frames ``t >= lengths[b]`` get no weight."""
        scores = self.scorer(frames).squeeze(-1)
        # Under autocast the scorer's Linear may return another dtype than the frames it scored. The
        # lengths were checked once at the encoder's input (check_lengths): no second device sync here.
        return attention_pool(frames, scores.to(frames.dtype), lengths, check_values=False)


class AcousticEncoder(nn.Module):
    """E(·): four residual conv blocks (3→32→64→128→256 channels, T and F halved by each), average pooling over
    frequency, attention pooling over time → ``h ∈ R^256``.

    ``forward(x, lengths=None)``: ``x [B, 3, T, 80]`` (T >= 16; any memory format, channels_last included),
    ``lengths [B]`` valid frames per utterance of a padded batch. With lengths, frames past an utterance's end are
    zeroed before every block (the conv's own zero padding, as if the utterance were alone) and get no attention weight;
    the valid length after each 2×2 pool is ``max(floor(L / 2), 1)``, the frames a lone utterance of L frames keeps
    (Table 1: 600 → 37). So in eval mode a padded utterance's ``h`` equals its unpadded ``h``, whatever the padding
    holds. In train mode BatchNorm's batch statistics still see the (zeroed) padded frames.
    """

    def __init__(self) -> None:
        super().__init__()
        widths = (IN_CHANNELS, *CHANNELS)
        self.blocks = nn.ModuleList(ResidualConvBlock(c_in, c_out) for c_in, c_out in zip(widths[:-1], widths[1:]))
        self.temporal_pool = TemporalAttentionPool(EMBED_DIM)

    def forward(self, x: torch.Tensor, lengths: Lengths = None) -> torch.Tensor:
        frames, valid = self.trunk(x, self.checked_lengths(x, lengths))
        return self.temporal_pool(frames, valid)

    @staticmethod
    def checked_lengths(x: torch.Tensor, lengths: Lengths) -> torch.Tensor | None:
        """The input checks: ``x`` as :func:`check_features` wants it and ``lengths`` as an int64 ``[B]`` tensor in
        1..T, or None when nothing is padded (the masks are then skipped). The checks that read values, and the
        shortcut, run in eager calls only: a compiled graph masks always, which gives the same result."""
        check_features(x, "x")
        valid = check_lengths(lengths, x, "lengths")
        if valid is not None and not torch.compiler.is_compiling() and bool((valid == x.shape[2]).all()):
            return None
        return valid

    def trunk(self, x: torch.Tensor, valid: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The conv blocks with the padding masks between them and the frequency-wise average, no input checks and no
        data-dependent branch (what ``torch.compile`` can take as one graph):
        ``(x [B, 3, T, 80], valid [B] or None) -> (frames [B, T/16, 256], their valid counts or None)``."""
        for block in self.blocks:
            if valid is not None:
                x = zero_past_lengths(x, valid)
            x = block(x)
            if valid is not None:
                valid = torch.clamp(valid // 2, min=1)
        return x.mean(dim=3).transpose(1, 2), valid


class EncoderModel(nn.Module):
    """Base of the models on the acoustic encoder (``self.encoder``): :meth:`encode` is the first half of their
    inference graph, ``head(h)`` the second."""

    def encode(self, x: torch.Tensor, lengths: Lengths = None) -> torch.Tensor:
        """``h = E(x)`` ``[B, 256]``, the utterance vector the head reads."""
        return self.encoder(x, lengths)


def zero_past_lengths(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Frames ``t >= lengths[b]`` of ``x [B, C, T, F]`` set to 0. ``where`` rather than a product, so NaN or inf padding
    does not leak (0·inf = NaN); it also keeps channels_last."""
    keep = torch.arange(x.shape[2], device=x.device)[None, :] < lengths.to(x.device)[:, None]
    return torch.where(keep[:, None, :, None], x, 0.0)


def check_features(x: object, argument: str) -> None:
    """Raises TypeError/ValueError naming ``argument`` unless it is a float ``[B, 3, T >= 16, 80]`` tensor."""
    expected = f"[B, {IN_CHANNELS}, T, {N_MELS}] (log-Mel, Δ, ΔΔ; T >= {TIME_REDUCTION} frames)"
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{argument} must be a torch.Tensor of shape {expected}, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{argument} must be a floating-point tensor, got dtype {x.dtype}")
    if x.ndim != 4:
        raise ValueError(f"{argument} must be 4-D {expected}, got {x.ndim}-D shape {tuple(x.shape)}")
    batch, channels, frames, mels = x.shape
    if channels != IN_CHANNELS:
        raise ValueError(f"{argument} must have {IN_CHANNELS} channels {expected}, got shape {tuple(x.shape)}")
    if mels != N_MELS:
        raise ValueError(f"{argument} must have {N_MELS} mel bins {expected}, got shape {tuple(x.shape)}")
    if frames < TIME_REDUCTION:
        raise ValueError(f"{argument} has T = {frames} frames; expected {expected}")
    if batch < 1:
        raise ValueError(f"{argument} has an empty batch, shape {tuple(x.shape)}; expected B >= 1")


def check_lengths(lengths: object, x: torch.Tensor, argument: str) -> torch.Tensor | None:
    """``lengths`` as an int64 ``[B]`` tensor on x's device, each in 1..T, or None; raises naming ``argument``."""
    return as_lengths(lengths, x.shape[0], x.shape[2], argument, unit="frames", symbol="T", device=x.device)
