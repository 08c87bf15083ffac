"""The one resumable epoch loop of every model kind. A kind's trainer task (``cnn_task``,
``merit_task``) brings its step and its validation; the loop does the rest, the same for all:

- resume from the latest checkpoint (model, optimizer, schedule, torch's and the CUDA generator's
  state), so a resumed run ends with the weights an uninterrupted one ends with, bit for bit;
- ``metrics.jsonl``: one line per epoch (the task's training sums and validation scores, seconds);
- the best epoch by the task's selection score, saved as the fold's model (safetensors + JSON);
- an atomic checkpoint per epoch, written after the metrics line; a non-finite weight stops the run
  before it writes anything of that epoch;
- under ``torchrun``, rank 0 alone writes files and shows progress, and every process waits for
  the checkpoint before ``on_epoch_end`` (whatever stops the run comes after it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm.auto import tqdm

from ser_fast.runs.checkpoint import resume_checkpoint, save_checkpoint
from ser_fast.runs.layout import append_metrics, start_metrics
from ser_fast.training.distributed import World, barrier
from ser_fast.training.finite import check_weights

CUDA_RNG = "cuda_rng"


class TrainerTask(Protocol):
    """What a model kind brings to :func:`run_epochs`.

    ``best``: state key → record key, the first pair being the selection (e.g. ``{"best_uar":
    "val_uar"}``); the state returned holds them and ``best_epoch``."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    settings: dict
    epochs: int
    best: dict[str, str]

    # Static: prepare(corpus, config, world, *, progress, table, bank) -> what the folds share, and
    # train(fold, shared, config, fold_dir, classes, *, resume, progress, device) -> the fold's state.
    def after_resume(self) -> None: ...
    def train_epoch(self, epoch: int) -> tuple[dict[str, float], int]: ...
    def validate(self, epoch: int) -> dict[str, float]: ...
    def save_model(self) -> None: ...
    def finish(self, state: dict) -> dict: ...


def run_epochs(task: TrainerTask, fold_dir: Path, world: World, *, resume: bool = False, progress: bool = False,
               desc: str = "train", on_epoch_end: Callable[[dict], None] | None = None) -> dict:
    """Train ``task`` for its epochs in ``fold_dir``; returns the best epoch's state (after
    ``task.finish``). ``on_epoch_end`` gets each epoch's record once its checkpoint is on disk."""
    selection, selected = next(iter(task.best.items()))
    state: dict[str, Any] = {selection: -1.0, "best_epoch": 0}
    start_epoch = 1
    saved = resume_checkpoint(fold_dir, task.settings, model=task.model, optimizer=task.optimizer,
                              scheduler=task.scheduler, writes=world.is_main) if resume else None
    if saved is not None:
        state, start_epoch = _restore_device_rng(saved["trainer"], world.device), saved["epoch"] + 1
    task.after_resume()
    if start_epoch == 1 and world.is_main:
        start_metrics(fold_dir)
    bar = tqdm(range(start_epoch, task.epochs + 1), desc=desc, disable=not (progress and world.is_main),
               unit="epoch", initial=start_epoch - 1, total=task.epochs)
    for epoch in bar:
        started = time.perf_counter()
        sums, batches = task.train_epoch(epoch)
        check_weights(task.model, epoch)
        record = {"epoch": epoch, **{f"train_{k}": v / max(batches, 1) for k, v in sums.items()},
                  **task.validate(epoch), "seconds": time.perf_counter() - started}
        if record[selected] > state[selection]:
            state = {**{key: record[field] for key, field in task.best.items()}, "best_epoch": epoch}
            if world.is_main:
                task.save_model()
        if world.is_main:
            append_metrics(fold_dir, record)
            save_checkpoint(fold_dir, epoch, model=task.model, optimizer=task.optimizer, scheduler=task.scheduler,
                            config=task.settings, trainer_state={**state, **_device_rng(world.device)})
        barrier(world)
        bar.set_postfix(loss=f"{record['train_total']:.3f}",
                        **{selected.replace("macro_", ""): f"{100 * record[selected]:.1f}"})
        if on_epoch_end is not None:
            on_epoch_end(record)
    return task.finish(state)


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
