"""Training one fold: seeded and deterministic, a checkpoint per epoch (resumable to the same final
weights), metrics per epoch in JSONL, the best epoch on validation UAR kept as the fold's model.
EDRL-MEA then fits its alignment (MB-PLS + classifier) on the fold's clean training utterances with
the best epoch's weights, and that aligned model is the fold's model."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from tqdm.auto import tqdm

from ser_fast.data.protocols import NeutralReferences
from ser_fast.evaluation.metrics import ClassificationScores
from ser_fast.models import EDRLMEA, Baseline, DSNet
from ser_fast.models.edrl_mea.model import MBPLS_PREFIX
from ser_fast.models.losses import classification_loss
from ser_fast.training.checkpoint import (
    atomic_save_safetensors,
    atomic_write_text,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from ser_fast.training.config import TrainConfig
from ser_fast.training.features import FeatureTable

logger = logging.getLogger(__name__)

EVAL_BATCH = 64


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """AMX or AVX512-BF16, where oneDNN's bf16 kernels beat float32 (checked, never assumed)."""
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def use_bf16(config: TrainConfig) -> bool:
    return config.precision == "bf16" or (config.precision == "auto" and cpu_has_fast_bf16())


def build_model(config: TrainConfig, num_classes: int) -> torch.nn.Module:
    if config.model == "baseline":
        return Baseline(num_classes)
    if config.model == "edrl-mea":
        return EDRLMEA(num_classes, variant=config.variant, n_components=config.n_components)
    return DSNet(num_classes, alpha=config.alpha, beta=config.beta, gamma=config.gamma,
                 use_orthogonality=config.use_orthogonality, use_reconstruction=config.use_reconstruction,
                 use_calibration=config.use_calibration)


@dataclass(frozen=True)
class FoldData:
    """A fold's features: train/validation rows of ``table`` and, for DSNet, the neutral reference
    row of each training speaker (kept out of the training rows)."""

    table: FeatureTable
    train: list[int]
    validation: list[int]
    neutral_row: dict[str, int]

    @classmethod
    def build(cls, table: FeatureTable, train, validation, references: NeutralReferences | None) -> FoldData:
        row_of = {u.path: i for i, u in enumerate(table.utterances)}
        train_rows = [row_of[u.path] for u in train if u.path in row_of]
        neutral = {}
        if references is not None:
            excluded = {u.path for u in references.by_speaker.values()}
            train_rows = [i for i in train_rows if table.utterances[i].path not in excluded]
            neutral = {s: row_of[u.path] for s, u in references.by_speaker.items() if u.path in row_of}
        return cls(table, train_rows, [row_of[u.path] for u in validation if u.path in row_of], neutral)


def autocast_for(enabled: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16) if enabled else contextlib.nullcontext()


def prepare_input(x: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if config.channels_last else x


def evaluate_rows(model, table: FeatureTable, rows: list[int], config: TrainConfig) -> tuple[float, np.ndarray]:
    """Mean cross-entropy and the predicted class of each row (eval mode, no gradients)."""
    model.eval()
    losses, predictions = [], []
    with torch.no_grad(), autocast_for(use_bf16(config)):
        for start in range(0, len(rows), EVAL_BATCH):
            chunk = rows[start:start + EVAL_BATCH]
            x, frames = table.batch(chunk, config.max_frames)
            logits = model(prepare_input(x, config), frames).float()
            losses.append(float(classification_loss(logits, table.labels[chunk])) * len(chunk))
            predictions.append(logits.argmax(1).numpy())
    return sum(losses) / max(len(rows), 1), np.concatenate(predictions) if predictions else np.zeros(0, np.int64)


def _train_step(model, optimizer, data: FoldData, batch: list[int], config: TrainConfig) -> dict[str, float]:
    x, frames = data.table.batch(batch, config.max_frames)
    labels = data.table.labels[batch]
    with autocast_for(use_bf16(config)):
        if config.model == "dsnet":
            speakers = [data.table.utterances[i].speaker for i in batch]
            neutral_rows = [data.neutral_row[s] for s in speakers]
            x_n, frames_n = data.table.batch(neutral_rows, config.max_frames)
            losses = model.training_losses(prepare_input(x, config), labels, prepare_input(x_n, config), frames,
                                           frames_n)
            loss, scalars = losses.total, losses.scalars()
        elif config.model == "edrl-mea":
            losses = model.training_losses(prepare_input(x, config), labels, frames)
            loss, scalars = losses.total, losses.scalars()
        else:
            loss = classification_loss(model(prepare_input(x, config), frames).float(), labels)
            scalars = {"total": float(loss.detach()), "l_t": float(loss.detach())}
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return scalars


def train_fold(data: FoldData, config: TrainConfig, run_dir: Path, *, classes: tuple[str, ...], resume: bool = False,
               progress: bool = False, desc: str = "train",
               on_epoch_end: Callable[[dict], None] | None = None) -> dict:
    """Train, writing ``run_dir/{metrics.jsonl, checkpoint-*, latest.json, model.safetensors,
    config.json}``; returns the best epoch's validation scores. ``on_epoch_end`` gets each epoch's
    metrics once its checkpoint is on disk (an exception there stops the run, resumable).

    EDRL-MEA: after the last epoch, the best epoch's weights are aligned on the clean training rows
    (:meth:`EDRLMEA.fit_alignment`), saved over ``model.safetensors``, and ``alignment.json`` records
    the validation UAR before and after; the result gains ``aligned_uar``. A run killed during the
    alignment redoes it on resume (it is deterministic)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if config.model == "dsnet":
        missing = sorted({data.table.utterances[i].speaker for i in data.train} - set(data.neutral_row))
        if missing:
            raise ValueError(f"DSNet needs a neutral reference for every training speaker; none for {missing}")
    if len(data.train) < 2 or not data.validation:
        raise ValueError(f"a fold needs at least 2 training and 1 validation utterance, got {len(data.train)} and "
                         f"{len(data.validation)}")
    torch.manual_seed(config.seed)
    model = build_model(config, len(classes))
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=config.lr_factor,
                                                           patience=config.lr_patience)
    state = {"best_uar": -1.0, "best_epoch": 0}
    start_epoch = 1
    checkpoint = latest_checkpoint(run_dir) if resume else None
    if checkpoint is not None:
        saved = load_checkpoint(checkpoint, model=model, optimizer=optimizer, scheduler=scheduler)
        if TrainConfig.from_dict(saved["config"]) != config:
            raise ValueError(f"{run_dir} was started with other settings; resume it with the same ones")
        state, start_epoch = saved["trainer"], saved["epoch"] + 1
        logger.info("resuming %s after epoch %d", run_dir, saved["epoch"])
    elif resume:
        logger.debug("nothing to resume in %s; starting afresh", run_dir)
    if start_epoch == 1:
        (run_dir / "metrics.jsonl").write_text("")
    bar = tqdm(range(start_epoch, config.epochs + 1), desc=desc, disable=not progress, unit="epoch",
               initial=start_epoch - 1, total=config.epochs)
    for epoch in bar:
        model.train()
        order = np.random.default_rng([config.seed, epoch]).permutation(len(data.train))
        rows = [data.train[i] for i in order]
        sums: dict[str, float] = {}
        started = time.perf_counter()
        batches = [rows[i:i + config.batch_size] for i in range(0, len(rows), config.batch_size)]
        batches = [b for b in batches if len(b) >= 2]  # BatchNorm and L_o need two utterances
        for batch in batches:
            for key, value in _train_step(model, optimizer, data, batch, config).items():
                sums[key] = sums.get(key, 0.0) + value
        val_loss, predictions = evaluate_rows(model, data.table, data.validation, config)
        val = ClassificationScores.from_predictions(data.table.labels[data.validation].numpy(), predictions, classes)
        scheduler.step(val_loss)
        record = {"epoch": epoch, **{f"train_{k}": v / max(len(batches), 1) for k, v in sums.items()},
                  "val_loss": val_loss, "val_uar": val.uar, "val_wa": val.wa, "lr": optimizer.param_groups[0]["lr"],
                  "seconds": time.perf_counter() - started}
        if val.uar > state["best_uar"]:
            state = {"best_uar": val.uar, "best_epoch": epoch}
            _save_model(run_dir, model, config, classes)
        with open(run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        save_checkpoint(run_dir, epoch, model=model, optimizer=optimizer, scheduler=scheduler,
                        config=config.to_dict(), trainer_state=state)
        bar.set_postfix(loss=f"{record['train_total']:.3f}", val_uar=f"{100 * val.uar:.1f}")
        if on_epoch_end is not None:
            on_epoch_end(record)
    if isinstance(model, EDRLMEA):
        return {**state, "aligned_uar": _align(model, data, config, run_dir, classes, state)}
    return state


def _align(model: EDRLMEA, data: FoldData, config: TrainConfig, run_dir: Path, classes: tuple[str, ...],
           state: dict) -> float:
    """Fit the best epoch's alignment on the clean training rows, save it, return its validation UAR."""
    tensors, _ = read_saved_model(run_dir)
    # The best epoch's weights only: whatever alignment was saved with them (even one torn by a kill
    # between writing model.safetensors and config.json) is fitted again.
    model.load_state_dict({k: v for k, v in tensors.items() if not k.startswith(MBPLS_PREFIX)})
    model.clear_alignment()
    started = time.perf_counter()

    def batches():
        for start in range(0, len(data.train), EVAL_BATCH):
            chunk = data.train[start:start + EVAL_BATCH]
            x, frames = data.table.batch(chunk, config.max_frames)
            yield prepare_input(x, config), data.table.labels[chunk], frames

    with autocast_for(use_bf16(config)):
        model.fit_alignment(batches())
    _, predictions = evaluate_rows(model, data.table, data.validation, config)
    aligned = ClassificationScores.from_predictions(data.table.labels[data.validation].numpy(), predictions, classes)
    _save_model(run_dir, model, config, classes)
    atomic_write_text(run_dir / "alignment.json", json.dumps({
        "variant": config.variant, "best_epoch": state["best_epoch"], "head_val_uar": state["best_uar"],
        "aligned_val_uar": aligned.uar, "aligned_val_wa": aligned.wa, "train_utterances": len(data.train),
        "seconds": time.perf_counter() - started}, indent=1))
    return aligned.uar


def read_saved_model(run_dir: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """``model.safetensors``'s tensors and ``config.json``'s values (classes and settings included)."""
    tensors = load_file(str(Path(run_dir) / "model.safetensors"))
    return tensors, json.loads((Path(run_dir) / "config.json").read_text())


def load_saved_model(model: torch.nn.Module, tensors: dict[str, torch.Tensor], values: dict) -> None:
    """Load what ``_save_model`` wrote into ``model``, the model's extra state (EDRL-MEA's MB-PLS) included."""
    if isinstance(model, EDRLMEA):
        model.load_saved(tensors, values.get("alignment"))
    else:
        model.load_state_dict(tensors)


def _save_model(run_dir: Path, model: torch.nn.Module, config: TrainConfig, classes: tuple[str, ...]) -> None:
    """``model.safetensors`` + ``config.json`` (classes, settings and, for EDRL-MEA, ``alignment``)."""
    tensors, extra = model.to_saved() if isinstance(model, EDRLMEA) else (model.state_dict(), None)
    values = {"classes": list(classes), **config.to_dict()}
    if extra is not None:
        values["alignment"] = extra
    atomic_save_safetensors(run_dir / "model.safetensors", tensors)
    atomic_write_text(run_dir / "config.json", json.dumps(values, indent=1))
