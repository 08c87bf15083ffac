"""Running a trained model over many utterances in batches, as validation and evaluation both do: eval mode, no
gradients, at the precision the config asks for."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ser_fast.data.corpus import Utterance
from ser_fast.data.features import FeatureTable
from ser_fast.data.noise import NoiseBank
from ser_fast.data.noisy_pairs import WaveBatch, make_batch
from ser_fast.models.losses import classification_loss
from ser_fast.models.targets import split_scores
from ser_fast.runs.config import TrainConfig
from ser_fast.runs.metrics import concordance
from ser_fast.runs.precision import autocast_for, use_bf16

EVAL_BATCH = 64
WAVEFORM_EVAL_BATCH = 8


def prepare_input(x: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if config.channels_last else x


def run_rows(model: torch.nn.Module, table: FeatureTable, rows: Sequence[int], config: TrainConfig,
             forward: Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]) -> list[torch.Tensor]:
    """``forward(model, x, frames)`` of each batch of ``rows`` (cut or cyclically repeated to ``max_frames`` as in
    training; eval mode, no gradients, on the model's device, under the config's precision), as float32 CPU tensors."""
    model.eval()
    device = next(model.parameters()).device
    outputs = []
    with torch.no_grad(), autocast_for(use_bf16(config.precision), device.type):
        for start in range(0, len(rows), EVAL_BATCH):
            x, frames = table.batch(list(rows[start:start + EVAL_BATCH]), config.max_frames)
            outputs.append(forward(model, prepare_input(x.to(device), config), frames.to(device)).float().cpu())
    return outputs


def embed_rows(model: torch.nn.Module, table: FeatureTable, rows: Sequence[int],
               config: TrainConfig) -> dict[str, np.ndarray]:
    """``{"h": [N, 256]}`` (the encoder output), and for DSNet ``{"h", "z_er", "z_ei"}``."""
    if hasattr(model, "embed"):
        names, forward = ("h", "z_er", "z_ei"), lambda m, x, n: torch.cat(tuple(m.embed(x, n)), 1)
    else:
        names, forward = ("h",), lambda m, x, n: m.encode(x, n)
    stacked = torch.cat(run_rows(model, table, rows, config, forward)).numpy()
    return dict(zip(names, np.split(stacked, len(names), axis=1)))


@dataclass(frozen=True)
class RowScores:
    """What :func:`evaluate_rows` gives: ``loss``, the validation objective of the model's heads (the mean
    cross-entropy, plus 1 - the mean CCC over the dimensions of all the rows at once for a dimensional head: the CCC
    is a statistic of the set, not of a row); the predicted class of each row (empty for a dimensional model) and the
    predicted dimensions ``[N, 3]`` on [0, 1] (None for a categorical one)."""

    loss: float
    predictions: np.ndarray
    dimensions: np.ndarray | None = None


def evaluate_rows(model, table: FeatureTable, rows: list[int], config: TrainConfig,
                  dimensions: np.ndarray | None = None) -> RowScores:
    """Score ``rows``: ``dimensions`` are their targets ``[N, 3]`` on [0, 1] for a model with a dimensional head."""
    scores = run_rows(model, table, rows, config, lambda m, x, n: m(x, n))
    chunks = [split_scores(chunk, model.num_classes) for chunk in scores]
    loss, predictions = 0.0, np.zeros(0, np.int64)
    if chunks and chunks[0][0] is not None:
        losses = [float(classification_loss(logits, table.labels[rows[k * EVAL_BATCH:(k + 1) * EVAL_BATCH]]))
                  * len(logits) for k, (logits, _) in enumerate(chunks)]
        loss = sum(losses) / max(len(rows), 1)
        predictions = np.concatenate([logits.argmax(1).numpy() for logits, _ in chunks])
    predicted = None
    if chunks and chunks[0][1] is not None:
        if dimensions is None:
            raise ValueError("the model has a dimensional head: give the rows' dimension targets")
        predicted = torch.cat([values for _, values in chunks]).numpy()
        loss += 1 - float(np.nan_to_num(concordance(dimensions, predicted)).mean())
    return RowScores(loss, predictions, predicted)


@dataclass
class SERPredictions:
    """What a pass over a set gives: labels, predictions, the logits ``[N, C]`` float32 and the routers' frame counts
    per task; for a model with a dimensional head the predicted arousal, valence and dominance ``dimensions [N, 3]``
    float32 on [0, 1] (the scale its targets were normalised to; None for a categorical model). A model without
    classes (a dimensional one) has None for ``labels``, ``predictions`` and ``logits``."""

    labels: np.ndarray | None
    predictions: np.ndarray | None
    expert_counts: np.ndarray | None
    batches: list[tuple[WaveBatch, torch.Tensor]] = field(default_factory=list)
    logits: np.ndarray | None = None
    dimensions: np.ndarray | None = None


def predict_waveforms(model: torch.nn.Module, utterances: Sequence[Utterance], classes: Sequence[str],
                      bank: NoiseBank | None, kinds: Sequence[str], snr_db: float | None, *, seed: Sequence[int],
                      keep_enhanced: bool = False, batch_size: int = WAVEFORM_EVAL_BATCH) -> SERPredictions:
    """Classify and/or rate (and optionally enhance) every utterance, whole, mixed as ``make_batch`` mixes.
    ``classes``: the model's (none for a dimensional model)."""
    model.eval()
    with_classes = bool(model.num_classes)
    labels, logits, dimensions, counts, kept = [], [], [], None, []
    with torch.no_grad():
        for start in range(0, len(utterances), batch_size):
            batch = make_batch(utterances[start:start + batch_size], classes if with_classes else (), bank, kinds, snr_db,
                               seed=[*seed, start])
            out = model(batch.noisy, batch.lengths)
            if with_classes:
                labels.append(batch.labels.numpy())
                logits.append(out.logits.float().numpy())
            if out.dimensions is not None:
                dimensions.append(out.dimensions.float().numpy())
            if out.aux is not None:
                batch_counts = out.aux.expert_counts.numpy()
                counts = batch_counts if counts is None else counts + batch_counts
            if keep_enhanced:
                spec = model.spectrogram(batch.noisy)
                enhanced = model.spectrogram.inverse(torch.expm1(out.enhanced_log_mag), spec, batch.noisy.shape[-1])
                kept.append((batch, enhanced))
    logits = np.concatenate(logits) if with_classes else None
    return SERPredictions(np.concatenate(labels) if with_classes else None,
                          None if logits is None else logits.argmax(1), counts, kept, logits,
                          np.concatenate(dimensions) if dimensions else None)
