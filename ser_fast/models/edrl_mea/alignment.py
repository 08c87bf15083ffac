"""MEA's pieces besides :class:`~ser_fast.models.MBPLS` itself: the input representation Y that the joint subspace is
aligned with, and the linear softmax classifier fitted on the aligned embeddings."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ser_fast.models.encoder import check_features, check_lengths

INPUT_STATISTICS = ("mean", "std", "skewness", "lag1_autocorrelation")
# A Y column whose spread over the training set is below this (relative to its own magnitude, at
# least 1) is round-off, not signal: standardising it would give noise the weight of a real column.
CONSTANT_COLUMN_SPREAD = 1e-4
READOUT_L2 = 1e-2
READOUT_MAX_ITER = 200
_VARIANCE_FLOOR = 1e-8


def input_statistics(x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """The utterance-level pooled input: per mel bin of the static log-Mel channel ``x[:, 0]``, over the valid frames,
    its mean, standard deviation, skewness and lag-1 autocorrelation: ``[B, 4 * 80]`` float64, in the order of
    ``INPUT_STATISTICS`` (all means, then all stds, ...), from ``x [B, 3, T, 80]`` and ``lengths [B]`` as for the
    encoder. An utterance of one valid frame has skewness and autocorrelation 0."""
    check_features(x, "x")
    valid = check_lengths(lengths, x, "lengths")
    static = x[:, 0].double()  # [B, T, 80]
    frames = static.shape[1]
    if valid is None:
        valid = torch.full((static.shape[0],), frames, dtype=torch.int64, device=x.device)
    mask = (torch.arange(frames, device=x.device)[None, :] < valid[:, None]).double()[:, :, None]
    count = valid.double()[:, None]
    mean = (static * mask).sum(dim=1) / count
    centred = (static - mean[:, None, :]) * mask
    variance = centred.square().sum(dim=1) / count
    spread = variance.clamp_min(_VARIANCE_FLOOR)
    skewness = centred.pow(3).sum(dim=1) / count / spread.pow(1.5)
    # Pairs (t, t + 1) with both frames valid: the masked centred product is 0 past the end.
    lagged = (centred[:, 1:] * centred[:, :-1]).sum(dim=1) / (count - 1).clamp_min(1)
    autocorrelation = lagged / spread
    return torch.cat([mean, variance.sqrt(), skewness, autocorrelation], dim=1)


def varying_columns(y: torch.Tensor) -> torch.Tensor:
    """Boolean ``[q]`` mask of the columns of ``y [N, q]`` that vary over the rows by more than round-off: standard
    deviation > ``CONSTANT_COLUMN_SPREAD * max(1, |mean|)``."""
    return y.std(dim=0, correction=0) > CONSTANT_COLUMN_SPREAD * y.mean(dim=0).abs().clamp_min(1.0)


def fit_softmax_classifier(features: torch.Tensor, labels: torch.Tensor, num_classes: int, *,
                           l2: float = READOUT_L2, max_iter: int = READOUT_MAX_ITER
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression by full-batch L-BFGS (strong Wolfe line search) from zero weights, in float64:
    deterministic for given data. Minimises the mean cross-entropy plus ``l2 / 2 * ||W||²`` (the bias is not penalised).
    Returns ``weight [num_classes, D]`` and ``bias [num_classes]`` as float32."""
    if not isinstance(features, torch.Tensor) or features.ndim != 2 or not features.is_floating_point():
        raise TypeError(f"features must be a floating-point [N, D] tensor, got {features!r:.80}")
    if not isinstance(labels, torch.Tensor) or tuple(labels.shape) != (features.shape[0],):
        raise ValueError(f"labels must be a [N] = [{features.shape[0]}] tensor of class indices")
    data = features.detach().double()
    weight = torch.zeros(num_classes, data.shape[1], dtype=torch.float64, device=data.device, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, device=data.device, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, tolerance_grad=1e-9,
                                  tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")

    def objective() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(data @ weight.T + bias, labels) + 0.5 * l2 * weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(objective)
    return weight.detach().float(), bias.detach().float()
