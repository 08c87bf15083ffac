"""Training one fold: seeded and deterministic, a checkpoint per epoch (resumable to the same final
weights), metrics per epoch in JSONL, the best epoch on validation UAR kept as the fold's model.
EDRL-MEA then fits its alignment (MB-PLS + classifier) on the fold's clean training utterances with
the best epoch's weights, and that aligned model is the fold's model. Under ``torchrun`` the processes
train each fold together, to the one-process weights (``ser_fast.training.distributed``)."""

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
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from ser_fast.data.protocols import NeutralReferences
from ser_fast.evaluation.metrics import ClassificationScores
from ser_fast.inference.model_files import read_model_files, write_model_files
from ser_fast.models import EDRLMEA, Baseline, DSNet
from ser_fast.models.dsnet import DSNetOutputs
from ser_fast.models.edrl_mea.model import MBPLS_PREFIX
from ser_fast.models.losses import classification_loss
from ser_fast.training.checkpoint import atomic_write_text, resume_checkpoint, save_checkpoint
from ser_fast.training.config import TrainConfig
from ser_fast.training.distributed import (
    RowShare,
    World,
    barrier,
    batch_rows,
    broadcast_from_main,
    convert_for_data_parallel,
    gather_rows,
    join_world,
    row_share,
)
from ser_fast.training.features import FeatureTable
from ser_fast.training.finite import check_losses, check_weights

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


def autocast_for(enabled: bool, device_type: str = "cpu"):
    return torch.autocast(device_type, dtype=torch.bfloat16) if enabled else contextlib.nullcontext()


def prepare_input(x: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if config.channels_last else x


def evaluate_rows(model, table: FeatureTable, rows: list[int], config: TrainConfig) -> tuple[float, np.ndarray]:
    """Mean cross-entropy and the predicted class of each row (eval mode, no gradients, on the model's device)."""
    model.eval()
    device = next(model.parameters()).device
    losses, predictions = [], []
    with torch.no_grad(), autocast_for(use_bf16(config), device.type):
        for start in range(0, len(rows), EVAL_BATCH):
            chunk = rows[start:start + EVAL_BATCH]
            x, frames = table.batch(chunk, config.max_frames)
            logits = model(prepare_input(x.to(device), config), frames.to(device)).float().cpu()
            losses.append(float(classification_loss(logits, table.labels[chunk])) * len(chunk))
            predictions.append(logits.argmax(1).numpy())
    return sum(losses) / max(len(rows), 1), np.concatenate(predictions) if predictions else np.zeros(0, np.int64)


def _step_inputs(data: FoldData, rows: list[int], config: TrainConfig, device: torch.device):
    """``(x, frames, x_neutral, neutral_frames)`` of ``rows`` on ``device``; the neutral pair (DSNet's
    references of the rows' speakers) is ``(None, None)`` for the other models."""
    x, frames = data.table.batch(rows, config.max_frames)
    x_n = frames_n = None
    if config.model == "dsnet":
        neutral_rows = [data.neutral_row[data.table.utterances[i].speaker] for i in rows]
        x_n, frames_n = data.table.batch(neutral_rows, config.max_frames)
        x_n, frames_n = prepare_input(x_n.to(device), config), frames_n.to(device)
    return prepare_input(x.to(device), config), frames.to(device), x_n, frames_n


def _train_step(model, optimizer, data: FoldData, batch: list[int], config: TrainConfig,
                device: torch.device) -> dict[str, float]:
    x, frames, x_n, frames_n = _step_inputs(data, batch, config, device)
    labels = data.table.labels[batch].to(device)
    with autocast_for(use_bf16(config), device.type):
        if config.model == "dsnet":
            losses = model.training_losses(x, labels, x_n, frames, frames_n)
            loss, scalars = losses.total, losses.scalars()
        elif config.model == "edrl-mea":
            losses = model.training_losses(x, labels, frames)
            loss, scalars = losses.total, losses.scalars()
        else:
            loss = classification_loss(model(x, frames).float(), labels)
            scalars = {"total": float(loss.detach()), "l_t": float(loss.detach())}
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return scalars


class _BatchObjective(torch.nn.Module):
    """The loss of the whole batch from one process's rows, as a module for DDP (whose forward must run
    for its gradient hooks to fire). The network runs on the process's rows; the per-row outputs are
    gathered from every process and the model's own objective is taken on the whole batch, so every
    process computes the same loss L. The gather's backward gives each process's rows W·∂L/∂rows and
    DDP's average divides by W: the one-process gradient, however unevenly the rows are split. (EDRL's
    encoders, run on the gathered ``h.detach()``, get the full ∂L/∂θ on every process; the average
    keeps it.)"""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, share: RowShare, labels: torch.Tensor, x: torch.Tensor, frames: torch.Tensor,
                x_n: torch.Tensor | None = None, frames_n: torch.Tensor | None = None):
        model = self.model
        with batch_rows(model, share):
            if isinstance(model, DSNet):
                out = model.training_forward(x, x_n, frames, frames_n)
                whole = DSNetOutputs(*(None if t is None else gather_rows(t, share) for t in out))
                return model.objective(whole, labels)
            if isinstance(model, EDRLMEA):
                h, logits = model.training_forward(x, frames)
                return model.objective(gather_rows(h, share), gather_rows(logits, share), labels)
            return classification_loss(gather_rows(model(x, frames), share).float(), labels)


def _every_parameter_trained(config: TrainConfig) -> bool:
    """Whether each step's loss reaches every parameter: not EDRL-MEA's (its readout is fitted after
    training, an intra-class encoder idles when its class is absent), nor an ablated DSNet's."""
    if config.model == "edrl-mea":
        return False
    return config.model == "baseline" or (config.use_orthogonality and config.use_reconstruction
                                          and config.use_calibration)


def _wrap_for_data_parallel(model: torch.nn.Module, config: TrainConfig, world: World) -> DistributedDataParallel:
    """``model`` (converted in place: whole-batch BatchNorm and dropout) inside DDP. Buffers are not
    broadcast: the BatchNorm running statistics come from all-reduced moments, the same everywhere."""
    convert_for_data_parallel(model)
    device_ids = [world.device] if world.device.type == "cuda" else None
    return DistributedDataParallel(_BatchObjective(model), device_ids=device_ids, forward_sync_buffers=False,
                                   find_unused_parameters=not _every_parameter_trained(config))


def _train_step_sharded(objective: DistributedDataParallel, optimizer, data: FoldData, batch: list[int],
                        config: TrainConfig, world: World) -> dict[str, float]:
    """One optimizer step on ``batch`` (the rows one process would train on), this process running its
    share of them; the losses logged are the whole batch's."""
    share = row_share(len(batch), world)
    x, frames, x_n, frames_n = _step_inputs(data, batch[share.start:share.stop], config, world.device)
    labels = data.table.labels[batch].to(world.device)
    with autocast_for(use_bf16(config), world.device.type):
        losses = objective(share, labels, x, frames, x_n, frames_n)
    if config.model == "baseline":
        loss, scalars = losses, {"total": float(losses.detach()), "l_t": float(losses.detach())}
    else:
        loss, scalars = losses.total, losses.scalars()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return scalars


def train_fold(data: FoldData, config: TrainConfig, run_dir: Path, *, classes: tuple[str, ...], resume: bool = False,
               progress: bool = False, desc: str = "train", on_epoch_end: Callable[[dict], None] | None = None,
               device: str | torch.device = "cpu") -> dict:
    """Train, writing ``run_dir/{metrics.jsonl, checkpoint-*, latest.json, model.safetensors,
    config.json}``; returns the best epoch's validation scores. ``on_epoch_end`` gets each epoch's
    metrics once its checkpoint is on disk (an exception there stops the run, resumable).

    EDRL-MEA: after the last epoch, the best epoch's weights are aligned on the clean training rows
    (:meth:`EDRLMEA.fit_alignment`), saved over ``model.safetensors``, and ``alignment.json`` records
    the validation UAR before and after; the result gains ``aligned_uar``. A run killed during the
    alignment redoes it on resume (it is deterministic).

    ``device``: "cpu" or "cuda". Under ``torchrun`` with several processes (each on ``cuda:LOCAL_RANK``
    for "cuda"), they train with DDP on the batches one process would, each running a share of every
    batch's rows, to the one-process weights up to float rounding (see
    :mod:`ser_fast.training.distributed`). Rank 0 alone validates (and broadcasts the scores, so every
    process takes the same decisions), writes the files, shows progress and fits EDRL-MEA's alignment;
    ``on_epoch_end`` runs in every process. Every process reads the checkpoint to resume, so the run
    folder must be one that all of them see."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if config.model == "dsnet":
        missing = sorted({data.table.utterances[i].speaker for i in data.train} - set(data.neutral_row))
        if missing:
            raise ValueError(f"DSNet needs a neutral reference for every training speaker; none for {missing}")
    if len(data.train) < 2 or not data.validation:
        raise ValueError(f"a fold needs at least 2 training and 1 validation utterance, got {len(data.train)} and "
                         f"{len(data.validation)}")
    world = join_world(device)
    _check_batches_split(len(data.train), config.batch_size, world)
    return _train_fold(data, config, run_dir, classes, world, resume=resume, progress=progress, desc=desc,
                       on_epoch_end=on_epoch_end)


def _epoch_batches(rows: list[int], batch_size: int) -> list[list[int]]:
    """An epoch's batches of its shuffled ``rows``; a last batch of one row is skipped (BatchNorm and
    L_o need two utterances)."""
    batches = [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
    return [b for b in batches if len(b) >= 2]


def _check_batches_split(rows: int, batch_size: int, world: World) -> None:
    """Every batch must give each process a row."""
    smallest = min((len(b) for b in _epoch_batches(list(range(rows)), batch_size)), default=world.size)
    if smallest < world.size:
        raise ValueError(f"{rows} training utterances in batches of {batch_size} leave a batch of {smallest}, too few "
                         f"for {world.size} processes (each needs a row): choose another batch size or fewer processes")


def _train_fold(data: FoldData, config: TrainConfig, run_dir: Path, classes: tuple[str, ...], world: World, *,
                resume: bool, progress: bool, desc: str, on_epoch_end: Callable[[dict], None] | None) -> dict:
    torch.manual_seed(config.seed)
    model = build_model(config, len(classes)).to(world.device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=config.lr_factor,
                                                           patience=config.lr_patience)
    state = {"best_uar": -1.0, "best_epoch": 0}
    start_epoch = 1
    saved = resume_checkpoint(run_dir, config.to_dict(), model=model, optimizer=optimizer, scheduler=scheduler,
                              writes=world.is_main) if resume else None
    if saved is not None:
        state, start_epoch = _restore_device_rng(saved["trainer"], world.device), saved["epoch"] + 1
    # Building DDP is collective: no process goes on (and rank 0 writes nothing) before all have read the checkpoint.
    objective = _wrap_for_data_parallel(model, config, world) if world.enabled else None
    if start_epoch == 1 and world.is_main:
        (run_dir / "metrics.jsonl").write_text("")
    bar = tqdm(range(start_epoch, config.epochs + 1), desc=desc, disable=not (progress and world.is_main),
               unit="epoch", initial=start_epoch - 1, total=config.epochs)
    for epoch in bar:
        (model if objective is None else objective).train()
        order = np.random.default_rng([config.seed, epoch]).permutation(len(data.train))
        rows = [data.train[i] for i in order]
        sums: dict[str, float] = {}
        started = time.perf_counter()
        batches = _epoch_batches(rows, config.batch_size)
        for step, batch in enumerate(batches, start=1):
            if objective is None:
                scalars = _train_step(model, optimizer, data, batch, config, world.device)
            else:
                scalars = _train_step_sharded(objective, optimizer, data, batch, config, world)
            check_losses(scalars, epoch, step)
            for key, value in scalars.items():
                sums[key] = sums.get(key, 0.0) + value
        check_weights(model, epoch)
        val_loss, val_uar, val_wa = _validate(model, data, config, classes, world)
        scheduler.step(val_loss)
        record = {"epoch": epoch, **{f"train_{k}": v / max(len(batches), 1) for k, v in sums.items()},
                  "val_loss": val_loss, "val_uar": val_uar, "val_wa": val_wa, "lr": optimizer.param_groups[0]["lr"],
                  "seconds": time.perf_counter() - started}
        if val_uar > state["best_uar"]:
            state = {"best_uar": val_uar, "best_epoch": epoch}
            if world.is_main:
                _save_model(run_dir, model, config, classes)
        if world.is_main:
            with open(run_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            save_checkpoint(run_dir, epoch, model=model, optimizer=optimizer, scheduler=scheduler,
                            config=config.to_dict(), trainer_state={**state, **_device_rng(world.device)})
        barrier(world)  # on every process, on_epoch_end (and whatever stops the run) comes after the checkpoint
        bar.set_postfix(loss=f"{record['train_total']:.3f}", val_uar=f"{100 * val_uar:.1f}")
        if on_epoch_end is not None:
            on_epoch_end(record)
    if isinstance(model, EDRLMEA):
        aligned = _align(model, data, config, run_dir, classes, state) if world.is_main else 0.0
        return {**state, "aligned_uar": broadcast_from_main([aligned], world)[0]}
    return state


def _validate(model, data: FoldData, config: TrainConfig, classes: tuple[str, ...], world: World) -> list[float]:
    """Validation loss, UAR and WA: computed by rank 0 and broadcast, so that every process steps the
    learning-rate schedule and picks the best epoch alike."""
    values = [0.0, 0.0, 0.0]
    if world.is_main:
        loss, predictions = evaluate_rows(model, data.table, data.validation, config)
        val = ClassificationScores.from_predictions(data.table.labels[data.validation].numpy(), predictions, classes)
        values = [loss, val.uar, val.wa]
    return broadcast_from_main(values, world)


CUDA_RNG = "cuda_rng"


def _device_rng(device: torch.device) -> dict:
    """The CUDA generator's state for the checkpoint's trainer state (the checkpoint keeps the CPU
    one): dropout on a GPU draws from it, so a resumed run needs it to continue as if uninterrupted."""
    return {CUDA_RNG: torch.cuda.get_rng_state(device).tolist()} if device.type == "cuda" else {}


def _restore_device_rng(trainer_state: dict, device: torch.device) -> dict:
    state = dict(trainer_state)
    saved = state.pop(CUDA_RNG, None)
    if saved is not None and device.type == "cuda":
        torch.cuda.set_rng_state(torch.tensor(saved, dtype=torch.uint8), device)
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
    device = next(model.parameters()).device

    def batches():
        for start in range(0, len(data.train), EVAL_BATCH):
            chunk = data.train[start:start + EVAL_BATCH]
            x, frames = data.table.batch(chunk, config.max_frames)
            yield prepare_input(x.to(device), config), data.table.labels[chunk].to(device), frames.to(device)

    with autocast_for(use_bf16(config), device.type):
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
    """``model.safetensors``'s tensors and ``config.json``'s values (classes, settings, alignment),
    read by :func:`~ser_fast.inference.model_files.read_model_files` without the checksum: this is the
    trainer re-reading its own fold, where a kill between the two writes leaves them mismatched and
    the alignment is fitted again anyway. Loaders for use (``load_fold_model``) verify it."""
    saved = read_model_files(run_dir, verify_checksum=False)
    return saved.tensors, saved.values


def load_saved_model(model: torch.nn.Module, tensors: dict[str, torch.Tensor], values: dict) -> None:
    """Load what ``_save_model`` wrote into ``model``, the model's extra state (EDRL-MEA's MB-PLS) included."""
    if isinstance(model, EDRLMEA):
        model.load_saved(tensors, values.get("alignment"))
    else:
        model.load_state_dict(tensors)


def _save_model(run_dir: Path, model: torch.nn.Module, config: TrainConfig, classes: tuple[str, ...]) -> None:
    """``model.safetensors`` + ``config.json`` through :func:`~ser_fast.inference.model_files.write_model_files`
    (classes, settings and, for EDRL-MEA, ``alignment``)."""
    tensors, extra = model.to_saved() if isinstance(model, EDRLMEA) else (model.state_dict(), None)
    write_model_files(run_dir, tensors, kind=config.model, classes=classes, settings=config.to_dict(),
                      extra=None if extra is None else {"alignment": extra})
