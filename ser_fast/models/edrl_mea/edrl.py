"""EDRL, emotion-disentangled representation learning: one inter-class encoder shared by every emotion class and one
intra-class encoder per class, all reading the backbone's ``h [B, 256]``.

    z_inter = E_inter(h), ĥ_inter = D_inter(z_inter)      shared: reconstruction + SupCon on z_inter
    z_c = E_c(h), ĥ_c = D_c(z_c), c = 1..C                class c's autoencoder, trained on class c only
"""

from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F
from torch import nn

from ser_fast.models.encoder import EMBED_DIM

CODE_DIM = 64
INTER_HIDDEN = 128
# SupCon's temperature; Khosla et al. (2020) use 0.07–0.1, and 0.1 is gentler on batches of a few utterances.
SUPCON_TEMPERATURE = 0.1


class InterClassEncoder(nn.Module):
    """The shared encoder: ``h`` → ``z_inter [B, code_dim]`` (256 → 128 → 64, tanh-bounded) and back to ``ĥ [B, 256]``
    through a mirrored decoder."""

    def __init__(self, dim: int = EMBED_DIM, hidden: int = INTER_HIDDEN, code_dim: int = CODE_DIM) -> None:
        super().__init__()
        self.encode = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, code_dim), nn.Tanh())
        self.decode = nn.Sequential(nn.Linear(code_dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """``z_inter [B, code_dim]``."""
        return self.encode(h)

    def losses(self, h: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(reconstruction MSE of h, supervised contrastive loss of z_inter)``, float32 scalars."""
        z = self.encode(h)
        reconstruction = (self.decode(z).float() - h.float()).square().mean()
        return reconstruction, supervised_contrastive_loss(z, labels)


class ClassAutoencoder(nn.Module):
    """One intra-class encoder: ``h`` → ``z_c = tanh(W h + b) [B, code_dim]`` → ``ĥ_c [B, 256]``."""

    def __init__(self, dim: int = EMBED_DIM, code_dim: int = CODE_DIM) -> None:
        super().__init__()
        self.encode = nn.Sequential(nn.Linear(dim, code_dim), nn.Tanh())
        self.decode = nn.Linear(code_dim, dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.encode(h)


class IntraClassEncoders(nn.Module):
    """C class autoencoders. At inference every one encodes every utterance (its class is unknown), giving C blocks; in
    training autoencoder c sees only the rows of class c."""

    def __init__(self, num_classes: int, dim: int = EMBED_DIM, code_dim: int = CODE_DIM) -> None:
        super().__init__()
        self.autoencoders = nn.ModuleList(ClassAutoencoder(dim, code_dim) for _ in range(num_classes))

    def forward(self, h: torch.Tensor) -> list[torch.Tensor]:
        """The C codes ``[B, code_dim]``, class 0 first."""
        return [autoencoder(h) for autoencoder in self.autoencoders]

    def losses(self, h: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``[C]`` reconstruction MSEs, entry c over the rows of class c only (0, with no graph, when the batch has
        none). The rows are selected before autoencoder c runs, so no other class's utterance enters its graph: its
        gradient is exactly that of its own class's rows."""
        per_class = []
        for c, autoencoder in enumerate(self.autoencoders):
            rows = h[labels == c]
            if rows.shape[0] == 0:
                per_class.append(torch.zeros((), dtype=torch.float32, device=h.device))
                continue
            restored = autoencoder.decode(autoencoder.encode(rows))
            per_class.append((restored.float() - rows.float()).square().mean())
        return torch.stack(per_class)


def supervised_contrastive_loss(z: torch.Tensor, labels: torch.Tensor,
                                temperature: float = SUPCON_TEMPERATURE) -> torch.Tensor:
    """SupCon (Khosla et al., NeurIPS 2020, L_out) on ``z [N, D]``: for each anchor with at least one other utterance of
    its class, minus the mean log-probability of those positives among all other utterances, with cosine similarities
    over ``temperature``; averaged over such anchors. 0 (still connected to z, with zero gradient) when no anchor has a
    positive. Float32 scalar."""
    if not isinstance(z, torch.Tensor) or not z.is_floating_point() or z.ndim != 2:
        raise TypeError(f"z must be a floating-point [N, D] tensor, got {z!r:.80}")
    if not isinstance(labels, torch.Tensor) or tuple(labels.shape) != (z.shape[0],):
        raise ValueError(f"labels must be a [N] = [{z.shape[0]}] tensor of class indices")
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) or not temperature > 0:
        raise ValueError(f"temperature must be a number > 0, got {temperature!r}")
    unit = F.normalize(z.float(), dim=1)
    n = unit.shape[0]
    itself = torch.eye(n, dtype=torch.bool, device=z.device)
    similarity = (unit @ unit.T / temperature).masked_fill(itself, float("-inf"))
    positives = (labels[:, None] == labels[None, :]) & ~itself
    counts = positives.sum(dim=1)
    anchors = counts > 0
    if not bool(anchors.any()):
        return unit.sum() * 0.0
    log_probability = similarity - torch.logsumexp(similarity, dim=1, keepdim=True)
    positive_sum = log_probability.masked_fill(~positives, 0.0).sum(dim=1)
    return -(positive_sum[anchors] / counts[anchors]).mean()
