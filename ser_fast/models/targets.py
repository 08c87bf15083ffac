"""What a model is trained to output, its ``target``: emotion classes (``"categorical"``), arousal, valence and
dominance (``"dimensional"``), or both from one embedding (``"both"``).

Every model gives its outputs as one ``scores [B, C + D]`` tensor: the C class logits (C = 0 for a dimensional model),
then the D = 3 dimension values ŝ ∈ [0, 1] (D = 0 for a categorical one), in the order of
``ser_fast.data.dimensions.DIMENSIONS``. The regressor's values are on the [0, 1] scale its training targets were
normalised to; the model's config keeps the corpus' own scale, to which predictions are restored. One tensor keeps the
inference graphs (compiled, exported to ONNX) single-output as before, and :func:`split_scores` is the one place that
takes it apart."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ser_fast.models.losses import classification_loss, concordance_loss

TARGETS = ("categorical", "dimensional", "both")
NUM_DIMENSIONS = 3  # arousal, valence, dominance
REGRESSOR_DIM = 64


def check_target(target: object) -> str:
    """``target`` if it names one of ``TARGETS``; a ValueError otherwise."""
    if target not in TARGETS:
        raise ValueError(f"target {target!r}: expected one of {TARGETS} (class labels, arousal/valence/dominance, "
                         "or both)")
    return target


def has_classes(target: str) -> bool:
    return check_target(target) != "dimensional"


def has_dimensions(target: str) -> bool:
    return check_target(target) != "categorical"


class DimensionalHead(nn.Module):
    """The regressor R_d: Linear(dim, 64) + ReLU + Linear(64, 3) + sigmoid → ŝ ∈ [0, 1]³, one value per dimension.
    The sigmoid keeps every prediction on the normalised scale, so a restored prediction never leaves the corpus'
    range (a rating of 0 on a 1-5 scale means nothing)."""

    def __init__(self, dim: int, hidden: int = REGRESSOR_DIM) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, NUM_DIMENSIONS), nn.Sigmoid())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class Targets(NamedTuple):
    """A batch's training targets for a model whose target is not categorical alone: integer ``labels [B]`` (None for
    a dimensional model) and ``dimensions [B, 3]`` normalised to [0, 1]."""

    labels: torch.Tensor | None
    dimensions: torch.Tensor


def target_scores(z: torch.Tensor, classifier: nn.Module | None, regressor: nn.Module | None) -> torch.Tensor:
    """``scores [B, C + D]`` of the heads a model has, on the utterance vector ``z`` each reads."""
    parts = [head(z) for head in (classifier, regressor) if head is not None]
    return parts[0] if len(parts) == 1 else torch.cat([p.to(parts[0].dtype) for p in parts], dim=1)


def split_scores(scores: torch.Tensor, num_classes: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``(logits [B, C] or None, dimensions [B, D] or None)`` of a model's ``scores``."""
    logits = scores[:, :num_classes] if num_classes else None
    dimensions = scores[:, num_classes:] if scores.shape[1] > num_classes else None
    return logits, dimensions


def target_losses(scores: torch.Tensor, targets: torch.Tensor | Targets,
                  num_classes: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``(L_t, L_d)``: the cross-entropy of the logits against the labels and the CCC loss (1 - mean CCC over the
    dimensions; :func:`~ser_fast.models.losses.concordance_loss`) of the dimension values, each None where the model
    has no such head. ``targets``: the labels ``[B]`` of a categorical model, :class:`Targets` otherwise."""
    logits, dimensions = split_scores(scores, num_classes)
    if dimensions is None:
        labels = targets.labels if isinstance(targets, Targets) else targets
        return classification_loss(logits, labels), None
    if not isinstance(targets, Targets):
        raise TypeError("a model with a dimensional head trains on Targets(labels, dimensions), got "
                        f"{type(targets).__name__}")
    l_d = concordance_loss(dimensions.float(), targets.dimensions.to(dimensions.device))
    l_t = None if logits is None else classification_loss(logits, targets.labels)
    return l_t, l_d


def joint_loss(l_t: torch.Tensor | None, l_d: torch.Tensor | None) -> torch.Tensor:
    """``L_t + L_d`` of the heads a model has: with both, the two weigh alike (each is about 1 at the start)."""
    terms = [t for t in (l_t, l_d) if t is not None]
    return terms[0] if len(terms) == 1 else terms[0] + terms[1]
