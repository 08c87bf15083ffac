"""Sparse MERIT's emotion-recognition head: attentive statistics pooling over the SER expert features, then the released
MLP classifier."""

from __future__ import annotations

import torch
from torch import nn

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
    (D = hidden = 1024 at WavLM-Large scale, dropout 0.5)."""

    def __init__(self, dim: int, num_classes: int, hidden: int = 1024, dropout: float = 0.5):
        super().__init__()
        self.pool = AttentiveStatisticsPooling(dim)
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(2 * dim, hidden), nn.LayerNorm(hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``x [B, T, D]`` SER expert features, ``lengths [B]`` valid frames → logits ``[B, C]``."""
        return self.classifier(self.pool(x, lengths))


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
