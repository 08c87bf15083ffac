"""The one resumable epoch loop of every model kind. A kind's trainer task (``cnn_task``,
``merit_task``) brings its steps and its validation; the loop does the rest, the same for all:

- resume from the latest checkpoint (model, optimizer, schedule, torch's and the CUDA generator's state), so a resumed
  run ends with the weights an uninterrupted one ends with, bit for bit;
- ``metrics.jsonl``: one line per epoch (the mean of each training loss term, the validation scores, seconds);
- the best epoch by the task's selection score, saved as the fold's model (safetensors + JSON), and after the last
  epoch its temperature, fitted on the validation utterances (``ser_fast.runs.calibration``);
- an atomic checkpoint per epoch, after the metrics line; a non-finite loss term or weight raises
  :class:`NonFiniteTrainingError` before anything of that epoch is written, so the last checkpoint is finite;
- under ``torchrun``, rank 0 alone writes files and shows progress, and every process waits for the checkpoint before
  ``on_epoch_end`` (whatever stops the run comes after it)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ser_fast.data.dimensions import DIMENSIONS, dimension_targets
from ser_fast.models.targets import has_classes, has_dimensions
from ser_fast.runs.calibration import Calibration, fit_temperature, write_calibration
from ser_fast.runs.checkpoint import resume_checkpoint, save_checkpoint
from ser_fast.runs.layout import append_metrics, start_metrics
from ser_fast.runs.metrics import DimensionalScores
from ser_fast.runs.saved import load_model, save_model
from ser_fast.runs.warm_start import warm_start
from ser_fast.training.distributed import World, barrier

CUDA_RNG = "cuda_rng"


class NonFiniteTrainingError(ValueError):
    """A loss term or a weight became NaN or infinite; usually the learning rate is too high."""


def check_losses(scalars: Mapping[str, float], epoch: int, step: int) -> None:
    """Raise :class:`NonFiniteTrainingError` naming the first non-finite loss term of a step (the
    weighted sum ``total`` only when no term of its own is to blame)."""
    for term, value in sorted(scalars.items(), key=lambda item: item[0] == "total"):
        if not math.isfinite(value):
            raise NonFiniteTrainingError(
                f"training diverged: loss term {term} is {value} at epoch {epoch}, step {step}; nothing of epoch "
                f"{epoch} was saved, and the run folder keeps the last finite checkpoint. Lower the learning rate "
                "and train again (or resume).")


def check_weights(model: torch.nn.Module, epoch: int) -> None:
    """Raise :class:`NonFiniteTrainingError` naming the first parameter or buffer that is not finite."""
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise NonFiniteTrainingError(
                f"training diverged: weight {name} holds NaN or infinite values after epoch {epoch} (every loss term "
                f"was finite); epoch {epoch} was not saved, and the run folder keeps the last finite checkpoint. "
                "Lower the learning rate and train again (or resume).")


class TrainerTask:
    """What a model kind brings to :func:`run_epochs`; the defaults add nothing after resuming or after the last epoch.
    A task holds one fold's ``model``, ``optimizer``, optional learning-rate ``scheduler``, its ``config``, its
    ``settings`` (the config as a dict, checked on resume through the config class' ``from_dict``) and ``epochs``, and
    ``best``: state key → record key, the first pair being the selection (e.g. ``{"best_uar": "val_uar"}``); the
    state returned holds them and ``best_epoch``. It defines
    ``train_epoch(epoch)``, which runs the epoch's optimizer steps and yields each step's loss terms as floats, and
    ``validate(epoch)``, the epoch's validation scores. Static: ``prepare(corpus, config, world, *, progress, table,
    bank)`` -> what the folds of a run share, and ``train(fold, shared, config, fold_dir, classes, *, resume, progress,
    device)`` -> the fold's state. ``one_process``: never trained under torchrun."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any = None
    config: Any
    classes: tuple[str, ...]
    settings: dict
    epochs: int
    best: dict[str, str]
    one_process = False

    def start_fresh(self) -> None:
        """Runs when the fold starts at epoch 1 (no checkpoint resumed), before :meth:`after_resume`: a warm start
        copies the ``init`` model's weights in here, so a fold resumed from its checkpoint never needs its source
        again (a fold that had not started does)."""
        init = getattr(self.config, "init", "")
        if init:
            warm_start(self.model, init, self.classes)

    def after_resume(self) -> None:
        """Runs once the checkpoint (if any) is read, before the first epoch."""

    def save_model(self) -> None:
        save_model(self.fold_dir, self.model, self.config, self.classes)

    def finish(self, state: dict) -> dict:
        """The fold's result from the best epoch's state, after the last epoch."""
        return state

    def validation_logits(self, model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits [N, C], labels [N])`` of ``model`` on the validation utterances, as validation scores them."""
        raise NotImplementedError

    def calibrate(self) -> Calibration | None:
        """Fit the temperature of the saved model (the best epoch's, as :meth:`finish` left it) on the validation
        utterances and save it in its config.json (``ser_fast.runs.calibration``); None for a model without classes
        (a dimensional one: nothing to calibrate)."""
        if not self.classes:
            return None
        model, _, _ = load_model(self.fold_dir)
        logits, labels = self.validation_logits(model.to(next(self.model.parameters()).device))
        calibration = fit_temperature(logits, labels)
        write_calibration(self.fold_dir, calibration)
        return calibration


def selection(target: str, categorical: dict[str, str]) -> dict[str, str]:
    """A task's ``best`` for a model of ``target``: its ``categorical`` rule (e.g. ``{"best_uar": "val_uar"}``), or
    the validation mean CCC over arousal, valence and dominance for a model without classes; with both heads the
    mean CCC is kept at the epoch the categorical rule picks."""
    if not has_classes(target):
        return {"best_ccc": "val_ccc"}
    return {**categorical, "best_ccc": "val_ccc"} if has_dimensions(target) else dict(categorical)


def rated_targets(utterances, config, *, validation: int) -> np.ndarray | None:
    """The utterances' arousal/valence/dominance targets ``[N, 3]`` on [0, 1] by the config's scale for a model with a
    dimensional head (None otherwise), read before training so that a missing rating or scale fails now, not after an
    epoch; ``validation``: how many validation utterances the fold has (the CCC that picks the best epoch needs 2)."""
    if not has_dimensions(config.target):
        return None
    if config.scale is None:
        raise ValueError(f"target {config.target!r} needs dimension_scale, the corpus' rating scale (train_run sets "
                         "it from the corpus)")
    if validation < 2:
        raise ValueError(f"target {config.target!r}: the fold has {validation} validation utterance(s); the validation "
                         "CCC that picks the best epoch needs at least 2")
    return dimension_targets(utterances, config.scale)


def dimension_record(targets: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """``val_ccc`` (the mean over the dimensions) and ``val_ccc_<dimension>`` of ``predicted`` against ``targets``
    (``[N, 3]``, one scale)."""
    scores = DimensionalScores.from_predictions(targets, predicted, DIMENSIONS)
    return {"val_ccc": scores.mean_ccc, **{f"val_ccc_{name}": float(value) for name, value in zip(DIMENSIONS,
                                                                                                 scores.ccc)}}


def check_fold_size(train: int, validation: int) -> None:
    if train < 2 or not validation:
        raise ValueError(f"a fold needs at least 2 training and 1 validation utterance, got {train} and {validation}")


def epoch_batches(size: int, batch_size: int, seed: list[int]) -> list[np.ndarray]:
    """An epoch's batches of the indices ``0..size-1``, shuffled by ``seed``; a last batch of one is
    skipped (BatchNorm and the losses that compare utterances need two)."""
    order = np.random.default_rng(seed).permutation(size)
    batches = [order[i:i + batch_size] for i in range(0, size, batch_size)]
    return [b for b in batches if len(b) >= 2]


def run_epochs(task: TrainerTask, fold_dir: Path, world: World, *, resume: bool = False, progress: bool = False,
               desc: str = "train", on_epoch_end: Callable[[dict], None] | None = None) -> dict:
    """Train ``task`` for its epochs in ``fold_dir``; returns the best epoch's state (after
    ``task.finish``). ``on_epoch_end`` gets each epoch's record once its checkpoint is on disk."""
    selection, selected = next(iter(task.best.items()))
    state: dict[str, Any] = {selection: -1.0, "best_epoch": 0}
    start_epoch = 1
    trained = {"model": task.model, "optimizer": task.optimizer, "scheduler": task.scheduler}
    saved = resume_checkpoint(fold_dir, task.settings, **trained, writes=world.is_main,
                              read_settings=type(task.config).from_dict) if resume else None
    if saved is not None:
        state, start_epoch = _restore_device_rng(saved["trainer"], world.device), saved["epoch"] + 1
    else:
        task.start_fresh()
    task.after_resume()
    if start_epoch == 1 and world.is_main:
        start_metrics(fold_dir)
    bar = tqdm(range(start_epoch, task.epochs + 1), desc=desc, disable=not (progress and world.is_main),
               unit="epoch", initial=start_epoch - 1, total=task.epochs)
    for epoch in bar:
        started = time.perf_counter()
        sums: dict[str, float] = {}
        steps = 0
        for steps, scalars in enumerate(task.train_epoch(epoch), start=1):
            check_losses(scalars, epoch, steps)
            for key, value in scalars.items():
                sums[key] = sums.get(key, 0.0) + value
        check_weights(task.model, epoch)
        record = {"epoch": epoch, **{f"train_{k}": v / max(steps, 1) for k, v in sums.items()},
                  **task.validate(epoch), "seconds": time.perf_counter() - started}
        if state["best_epoch"] == 0 or record[selected] > state[selection]:
            state = {**{key: record[field] for key, field in task.best.items()}, "best_epoch": epoch}
            if world.is_main:
                task.save_model()
        if world.is_main:
            append_metrics(fold_dir, record)
            save_checkpoint(fold_dir, epoch, **trained, config=task.settings,
                            trainer_state={**state, **_device_rng(world.device)})
        barrier(world)
        shown = f"{record[selected]:.3f}" if selected == "val_ccc" else f"{100 * record[selected]:.1f}"
        bar.set_postfix(loss=f"{record['train_total']:.3f}", **{selected.replace("macro_", ""): shown})
        if on_epoch_end is not None:
            on_epoch_end(record)
    state = task.finish(state)
    calibration = task.calibrate() if world.is_main else None
    if calibration is not None:
        state["temperature"] = calibration.temperature
    return state


def _device_rng(device: torch.device) -> dict:
    """The CUDA generator's state for the checkpoint (which keeps the CPU one): dropout on a GPU draws from it."""
    return {CUDA_RNG: torch.cuda.get_rng_state(device).tolist()} if device.type == "cuda" else {}


def _restore_device_rng(trainer_state: dict, device: torch.device) -> dict:
    state = dict(trainer_state)
    saved = state.pop(CUDA_RNG, None)
    if saved is not None and device.type == "cuda":
        torch.cuda.set_rng_state(torch.tensor(saved, dtype=torch.uint8), device)
    return state
