"""DSNet's training objective (Section 3.3, eq. 10): ``L = L_t + α L_o + β L_r + γ L_c``. Every loss is returned in
float32 whatever its inputs' dtype (bf16 under autocast), so that the sum and the logged values keep their precision.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from ser_fast.ops import orthogonality_loss


class LossTerms:
    """What the models' loss dataclasses share: :meth:`scalars` for logging."""

    def scalars(self) -> dict[str, float]:
        """Every loss (each field but ``logits``, and each a model does not have: None) as a Python float: one device
        sync per value."""
        return {f.name: float(getattr(self, f.name).detach()) for f in fields(self)
                if f.name != "logits" and getattr(self, f.name) is not None}


@dataclass
class BaselineLosses(LossTerms):
    """The Baseline's objective: ``total`` = L_t, the cross-entropy, + L_d, the CCC loss of the dimensional head, and
    the logits; a head the model does not have (``ser_fast.models.targets``) has None for its term."""

    total: torch.Tensor
    l_t: torch.Tensor | None
    logits: torch.Tensor | None
    l_d: torch.Tensor | None = None


@dataclass
class DSNetLosses(LossTerms):
    """What :meth:`DSNet.training_losses` returns: float32 scalar losses and ``logits [B, num_classes]``. ``total`` is
    eq. 10 with L_t + L_d in place of L_t for a model with a dimensional head (L_d its CCC loss; None without one,
    as L_t and ``logits`` are for a dimensional model); a term turned off by an ablation switch is a constant 0 (no
    gradient), left out of ``total``."""

    total: torch.Tensor
    l_t: torch.Tensor | None
    l_o: torch.Tensor
    l_r: torch.Tensor
    l_c: torch.Tensor
    logits: torch.Tensor | None
    l_d: torch.Tensor | None = None


def classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """L_t (eq. 9): cross-entropy of ``logits [N, K]`` against integer ``labels [N]``, batch mean."""
    _check_matrix(logits, "logits")
    if not isinstance(labels, torch.Tensor) or labels.is_floating_point() or labels.dtype == torch.bool:
        raise TypeError(f"labels must be an integer tensor [N] of class indices, got {_describe(labels)}")
    if tuple(labels.shape) != (logits.shape[0],):
        raise ValueError(f"labels must have shape [N] = [{logits.shape[0]}] to match logits, got {tuple(labels.shape)}")
    num_classes = logits.shape[1]
    if bool(((labels < 0) | (labels >= num_classes)).any()):
        raise ValueError(f"labels must be class indices in 0..{num_classes - 1}, got values {labels.unique().tolist()}")
    return F.cross_entropy(logits.float(), labels)


def concordance_loss(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The CCC loss of dimensional emotion: 1 - the mean over dimensions of Lin's concordance correlation coefficient
    of ``predictions [N, D]`` against ``targets [N, D]`` over the batch (population moments, as the metric), in
    float32. It rewards correlation and agreement of mean and scale together, which mean squared error does not
    (Trigeorgis et al. 2016; audEERING's dimensional models train with it). N >= 2."""
    _check_matrix(predictions, "predictions")
    _check_matrix(targets, "targets")
    if predictions.shape != targets.shape:
        raise ValueError(f"predictions {tuple(predictions.shape)} and targets {tuple(targets.shape)} differ in shape")
    if predictions.shape[0] < 2:
        raise ValueError(f"the CCC loss needs a batch of at least 2 utterances, got {predictions.shape[0]}")
    x, y = targets.float(), predictions.float()
    mean_x, mean_y = x.mean(dim=0), y.mean(dim=0)
    covariance = ((x - mean_x) * (y - mean_y)).mean(dim=0)
    denominator = x.var(dim=0, unbiased=False) + y.var(dim=0, unbiased=False) + (mean_x - mean_y) ** 2
    # eps: a batch whose targets and predictions are all equal and constant has 0/0; it counts as agreement 0.
    return 1 - (2 * covariance / (denominator + 1e-8)).mean()


def orthogonality_penalty(z_er: torch.Tensor, z_ei: torch.Tensor) -> torch.Tensor:
    """L_o (eq. 4) as the mean squared correlation between the features of ``z_er`` and ``z_ei``.

    Eq. 4 is ``||Z_erᵀ Z_ei||_F²`` of the batch-z-scored ``[N, D]`` matrices. Each entry of ``Z_erᵀ Z_ei`` is N times a
    correlation, so the plain sum is N²·D² times the mean squared correlation: even for independent features
    (correlations ~ 1/√N) it is about N·D² ≈ 2·10⁶ at N = 32, D = 256, which at α = 1 would drown L_t (~1.4). Divided by
    N²·D² it lies in [0, 1], is ~1/N for independent features, and α = 1 weighs it on the scale of the other terms.
    """
    _check_matrix(z_er, "z_er")
    _check_matrix(z_ei, "z_ei")
    if z_er.shape[0] != z_ei.shape[0]:
        raise ValueError(f"z_er and z_ei must have the same batch size N, got shapes {tuple(z_er.shape)} "
                         f"and {tuple(z_ei.shape)}")
    if z_er.shape[0] < 2:
        raise ValueError(f"z_er and z_ei have N = {z_er.shape[0]} rows; the orthogonality loss z-scores over the "
                         "batch and needs N >= 2 utterances")
    return orthogonality_loss(z_er.float(), z_ei.float(), reduction="mean")


def reconstruction_loss(h: torch.Tensor, h_hat: torch.Tensor) -> torch.Tensor:
    """L_r (eq. 6) per feature: ``(1/(N·D)) Σ_i ||h_i − ĥ_i||²₂``, the mean squared error.

    Eq. 6 sums over the D = 256 features; that sum starts near ||h||² (a few hundred) and, at β = 1, drowns L_t for the
    first epochs while the encoder shrinks h to make it cheap (DSNet then learned far slower than the baseline on the
    synthetic corpus: L_t 1.40 → 0.85 in 10 epochs against the baseline's 1.21 → 0.13). Divided by D it weighs on the
    scale of L_t and DSNet learns as fast as the baseline (validation UAR 67 % vs 71 % at the same point)."""
    _check_matrix(h, "h")
    _check_matrix(h_hat, "h_hat")
    if h.shape != h_hat.shape:
        raise ValueError(f"h_hat must have h's shape {tuple(h.shape)}, got {tuple(h_hat.shape)}")
    return (h.float() - h_hat.float()).square().mean()


def calibration_loss(z_ei: torch.Tensor, h_neutral: torch.Tensor, *, standardize: bool = True) -> torch.Tensor:
    """L_c (eq. 8): ``½(KL(z_ei ‖ h_n) + KL(h_n ‖ z_ei))``, batch mean. KL needs distributions and the paper does not
    say how vectors become ones; each is turned into one by a softmax over its features (as log_softmax, which is
    stable), after standardising it over its features (zero mean, unit spread) with ``standardize``.

    Why standardise: a softmax of raw features is nearly uniform when their spread is small, and h's spread across
    its features is 0.17 at initialisation. A dead (all-zero) z_ei then costs L_c ≈ 0.01 against such an h_n, and the
    encoder can make that as small as it likes by shrinking h; standardised, a dead or constant z_ei costs ≈ 0.65 at
    any scale of h (down to a spread of 0.01 across its features), and only a z_ei that follows h_n's pattern scores 0
    (issue 17)."""
    _check_matrix(z_ei, "z_ei")
    _check_matrix(h_neutral, "h_neutral")
    if z_ei.shape != h_neutral.shape:
        raise ValueError(f"h_neutral must have z_ei's shape {tuple(z_ei.shape)}, got {tuple(h_neutral.shape)}")
    z_ei, h_neutral = z_ei.float(), h_neutral.float()
    if standardize:
        z_ei, h_neutral = _standardized(z_ei), _standardized(h_neutral)
    log_p = F.log_softmax(z_ei, dim=1)
    log_q = F.log_softmax(h_neutral, dim=1)
    # KL(p‖q) + KL(q‖p) = Σ (p − q)(log p − log q): one pass for both directions.
    symmetric = ((log_p.exp() - log_q.exp()) * (log_p - log_q)).sum(dim=1)
    return 0.5 * symmetric.mean()


CALIBRATIONS = ("standardized", "softmax")
STANDARDIZE_EPS = 1e-6  # keeps a constant vector finite (its gradient at most 1000x); 1% of a 0.01 spread


def check_calibration(calibration: object) -> str:
    """``calibration`` if it names an L_c form (``CALIBRATIONS``); a ValueError otherwise."""
    if calibration not in CALIBRATIONS:
        raise ValueError(f"calibration {calibration!r}: expected one of {CALIBRATIONS}")
    return calibration


def _standardized(v: torch.Tensor) -> torch.Tensor:
    """Each row at zero mean and unit spread over its features; a constant row becomes 0 (a uniform softmax)."""
    centred = v - v.mean(dim=1, keepdim=True)
    return centred * torch.rsqrt(centred.square().mean(dim=1, keepdim=True) + STANDARDIZE_EPS)


def weighted_total(l_t: torch.Tensor, l_o: torch.Tensor | None = None, l_r: torch.Tensor | None = None,
                   l_c: torch.Tensor | None = None, *, alpha: float = 1.0, beta: float = 1.0,
                   gamma: float = 1.0) -> torch.Tensor:
    """Eq. 10: ``L_t + α L_o + β L_r + γ L_c``; a term given as None (ablated) is left out."""
    for name, weight in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
        check_loss_weight(weight, name)
    total = l_t
    for term, weight in ((l_o, alpha), (l_r, beta), (l_c, gamma)):
        if term is not None:
            total = total + weight * term
    return total


def check_loss_weight(weight: object, name: str) -> float:
    """``weight`` as a float; raises naming ``name`` unless it is a finite number >= 0."""
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not math.isfinite(weight) or weight < 0:
        raise ValueError(f"{name} must be a finite loss weight >= 0, got {weight!r}")
    return float(weight)


def _check_matrix(t: object, name: str) -> None:
    if not isinstance(t, torch.Tensor) or not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point torch.Tensor [N, D], got {_describe(t)}")
    if t.ndim != 2 or 0 in t.shape:
        raise ValueError(f"{name} must be a non-empty [N, D] matrix, got shape {tuple(t.shape)}")


def _describe(t: object) -> str:
    return f"a tensor of dtype {t.dtype}" if isinstance(t, torch.Tensor) else type(t).__name__
