"""Calibrated confidence: one temperature per trained model (Guo et al., 2017, "On Calibration of Modern Neural
Networks"), fitted on the validation fold after the best epoch and saved in its config.json, so that a probability of
0.8 is right about 80 % of the time and a user can threshold it.

Temperature scaling divides the logits by one scalar T > 0 before the softmax: it changes no prediction (the argmax is
the same), only how sure the model says it is. T is the minimiser of the validation negative log-likelihood, found by
scipy's bounded scalar search over log T. The expected calibration error (ECE) is the standard binned one, computed here
with numpy: torchmetrics has it, but importing its functional package pulls in its whole audio and image stack (and
librosa where installed) on the training path; the suite checks ours against torchmetrics'
``multiclass_calibration_error``."""

from __future__ import annotations

import logging
import math
import os
from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

from ser_fast.runs.model_files import ModelFileError, SavedModel, write_config_state

logger = logging.getLogger(__name__)

CALIBRATION_KEY = "calibration"  # config.json's key for the saved Calibration
ECE_BINS = 15  # Guo et al.'s bins; equal-width bins of the top-1 confidence
MIN_UTTERANCES = 10  # fewer validation utterances fit T to noise; the model is then left uncalibrated (T = 1)
LOG_T_BOUNDS = (math.log(0.05), math.log(20.0))  # beyond these a model is degenerate, not miscalibrated


@dataclass(frozen=True)
class Calibration:
    """A fitted (or, with ``fitted=False``, skipped) temperature and what it did on the validation utterances: NLL
    (nats per utterance) and ECE (%, ``ECE_BINS`` bins) before and after. ``note`` says why a fit was skipped."""

    temperature: float
    fitted: bool
    utterances: int
    nll_before: float | None = None
    nll_after: float | None = None
    ece_before: float | None = None
    ece_after: float | None = None
    method: str = "temperature scaling (NLL on the validation fold, after the best epoch)"
    note: str = ""

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: object) -> Calibration:
        """A Calibration read from config.json; ValueError for anything that is not one."""
        if not isinstance(values, dict):
            raise ValueError(f"a calibration must be a JSON object, got {type(values).__name__}")
        unknown = sorted(set(values) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"a calibration has unknown fields {unknown}")
        temperature = values.get("temperature")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not (
                0 < temperature < math.inf):
            raise ValueError(f"a calibration's temperature must be a positive finite number, got {temperature!r}")
        return cls(**{**values, "temperature": float(temperature)})


UNCALIBRATED = Calibration(1.0, False, 0, note="no calibration fitted (saved before ser_fast fitted one, or never "
                                                "calibrated)")


def saved_calibration(saved: SavedModel) -> Calibration:
    """The calibration a saved model folder holds; :data:`UNCALIBRATED` (T = 1) for one saved before calibration
    existed; ModelFileError naming config.json for a damaged entry."""
    values = saved.values.get(CALIBRATION_KEY)
    if values is None:
        return UNCALIBRATED
    try:
        return Calibration.from_dict(values)
    except (TypeError, ValueError) as error:
        raise ModelFileError(f"{saved.config_path}: its {CALIBRATION_KEY!r} entry is not valid ({error}); restore the "
                             "file, or retrain.") from None


def write_calibration(folder: str | os.PathLike, calibration: Calibration) -> None:
    """Save ``calibration`` in a saved model folder's config.json, beside the weights it was fitted for."""
    write_config_state(folder, CALIBRATION_KEY, calibration.as_dict())


def check_scores(logits: object, labels: object, name: str = "logits") -> tuple[np.ndarray, np.ndarray]:
    """``logits [N, C]`` (or probabilities) float and ``labels [N]`` in 0..C-1 as float64 / int64 numpy; ValueError
    saying what is wrong."""
    logits = logits.detach().float().cpu().numpy() if isinstance(logits, torch.Tensor) else np.asarray(logits)
    labels = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if logits.ndim != 2 or logits.shape[1] < 2 or logits.dtype.kind != "f":
        raise ValueError(f"{name} must be a float [N, C] array with C >= 2, got {logits.dtype} {logits.shape}")
    if not np.isfinite(logits).all():
        raise ValueError(f"{name} hold NaN or infinite values")
    if labels.shape != (logits.shape[0],) or labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be integer [N={logits.shape[0]}], got {labels.dtype} {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= logits.shape[1]):
        raise ValueError(f"labels must lie in 0..{logits.shape[1] - 1}")
    return logits.astype(np.float64), labels.astype(np.int64)


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean NLL in nats of the tempered softmax."""
    return float(-log_softmax(logits / temperature, axis=1)[np.arange(labels.size), labels].mean())


def expected_calibration_error(probabilities: object, labels: object, *, bins: int = ECE_BINS) -> float:
    """ECE in % of class probabilities ``[N, C]`` against ``labels [N]``: the mean over equal-width bins of the top-1
    confidence (``(lo, hi]``, the first bin closed) of |accuracy − mean confidence|, weighted by the bin's share of
    utterances (the L1 ECE, as torchmetrics' ``multiclass_calibration_error``)."""
    probabilities, labels = check_scores(probabilities, labels, "probabilities")
    if labels.size == 0:
        raise ValueError("expected_calibration_error needs at least one utterance")
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be a positive int, got {bins!r}")
    confidence = probabilities.max(axis=1)
    correct = (probabilities.argmax(axis=1) == labels).astype(np.float64)
    which = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    gap = np.abs(np.bincount(which, weights=correct, minlength=bins) - np.bincount(which, weights=confidence,
                                                                                   minlength=bins))
    return 100.0 * float(gap.sum() / counts.sum())


def fit_temperature(logits: object, labels: object) -> Calibration:
    """The temperature that minimises the NLL of ``labels [N]`` under ``softmax(logits [N, C] / T)``, with NLL and ECE
    before and after; with fewer than ``MIN_UTTERANCES`` utterances, T = 1 and ``fitted=False``."""
    logits, labels = check_scores(logits, labels)
    if labels.size < MIN_UTTERANCES:
        note = f"{labels.size} validation utterances: too few to fit a temperature (at least {MIN_UTTERANCES})"
        logger.warning("not calibrated: %s", note)
        return Calibration(1.0, False, int(labels.size), note=note)
    result = minimize_scalar(lambda log_t: negative_log_likelihood(logits, labels, math.exp(log_t)),
                             bounds=LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-4})
    temperature = math.exp(float(result.x))
    before, after = softmax(logits, axis=1), softmax(logits / temperature, axis=1)
    return Calibration(temperature, True, int(labels.size),
                       nll_before=negative_log_likelihood(logits, labels),
                       nll_after=negative_log_likelihood(logits, labels, temperature),
                       ece_before=expected_calibration_error(before, labels),
                       ece_after=expected_calibration_error(after, labels))
