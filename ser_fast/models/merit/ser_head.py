"""Sparse MERIT's emotion-recognition head: attentive statistics pooling over the SER expert features, then the released
MLP classifier and/or the arousal/valence/dominance regressor R_d, by the model's ``target``
(``ser_fast.models.targets``)."""

from __future__ import annotations

import torch
from torch import nn

from ser_fast.models.targets import DimensionalHead, has_classes, has_dimensions, target_scores
from ser_fast.ops import attention_pool


class AttentiveStatisticsPooling(nn.Module):
    """Per-channel attention weights ``s = W₂ tanh(W₁ x)`` (one score per frame and channel), then the weighted mean and
    standard deviation over time via :func:`ser_fast.ops.attention_pool`: ``[B, T, D] → [B, 2D]``."""

    def __init__(self, dim: int, attention_dim: int = 128):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, attention_dim), nn.Tanh(), nn.Linear(attention_dim, dim))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        # The lengths are the SSL frames' valid counts, computed by the model: nothing to check on the device.
        mu, sigma = attention_pool(x, self.score(x), lengths, return_std=True, check_values=False)
        return torch.cat([mu, sigma], dim=-1)


class SERHead(nn.Module):
    """Pooling → Dropout → Linear(2D→hidden) + LayerNorm + ReLU + Dropout → Linear(hidden→C), as released
    (D = hidden = 1024 at WavLM-Large scale, dropout 0.5). With ``target`` "dimensional" or "both" the regressor R_d
    (``regressor``) reads the same pooled vector h, and the head gives the scores ``[B, C + 3]`` of
    ``ser_fast.models.targets``; a dimensional head has no ``classifier`` (``num_classes`` is then ignored), so a
    categorical model's state dict is the released one."""

    def __init__(self, dim: int, num_classes: int, hidden: int = 1024, dropout: float = 0.5,
                 target: str = "categorical"):
        super().__init__()
        self.target = target
        self.num_classes = num_classes if has_classes(target) else 0
        self.pool = AttentiveStatisticsPooling(dim)
        if has_classes(target):
            self.classifier = nn.Sequential(
                nn.Dropout(dropout), nn.Linear(2 * dim, hidden), nn.LayerNorm(hidden), nn.ReLU(), nn.Dropout(dropout),
                nn.Linear(hidden, num_classes))
        else:
            self.classifier = None
        self.regressor = DimensionalHead(2 * dim) if has_dimensions(target) else None

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``x [B, T, D]`` SER expert features, ``lengths [B]`` valid frames → scores ``[B, C + D]`` (the logits of a
        categorical head)."""
        return self.scores(self.pool(x, lengths))

    def scores(self, h: torch.Tensor) -> torch.Tensor:
        """The heads' outputs on the pooled statistics ``h [B, 2D]``: the logits, then R_d's values on [0, 1]."""
        return target_scores(h, self.classifier, self.regressor)


def class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The released class weights ``w_c = N / (C · n_c)`` of the training labels (a class that does not occur gets
    weight 0, since it contributes no term)."""
    if labels.dim() != 1 or labels.numel() == 0:
        raise ValueError(f"class_weights: labels must be a non-empty 1-D tensor, got shape {tuple(labels.shape)}")
    counts = torch.bincount(labels, minlength=num_classes).double()
    if counts.numel() > num_classes:
        raise ValueError(f"class_weights: labels go up to {counts.numel() - 1}, expected < {num_classes}")
    weights = torch.where(counts > 0, labels.numel() / (num_classes * counts.clamp(min=1)), torch.zeros_like(counts))
    return weights.float()
