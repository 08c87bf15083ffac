"""Checkpoints that survive a kill: weights and optimizer tensors in safetensors, the rest in JSON, written to a fresh
folder renamed into place, then ``latest.json`` (replaced atomically) points at it. Nothing is ever unpickled. A
checkpoint is trusted no more than a model file: ``state.json`` records the SHA-256 of both tensor files and
``latest.json`` that of ``state.json``. Anything wrong (a missing, truncated, pickled or modified file, a path out of
the run) is a :class:`CheckpointError` naming the file, never a silent fresh start."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from ser_fast.runs.atomic import atomic_write_text
from ser_fast.runs.model_files import WEIGHTS_FILE, ModelFileError, file_sha256, load_safetensors
from ser_fast.runs.names import LATEST, METRICS

logger = logging.getLogger(__name__)

TENSOR_FILES = (WEIGHTS_FILE, "state.safetensors")
_CHECKPOINT_NAME = re.compile(r"checkpoint-(\d{4,})")


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from; the message names the file and what to do."""


def _split_tensors(tree: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace every tensor in a nested dict/list by a reference and collect it (for safetensors)."""
    if isinstance(tree, torch.Tensor):
        key = prefix.rstrip(".")
        tensors[key] = tree.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(tree, dict):
        return {str(k): _split_tensors(v, f"{prefix}{k}.", tensors) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_split_tensors(v, f"{prefix}{i}.", tensors) for i, v in enumerate(tree)]
    return tree


def _join_tensors(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(tree, dict):
        if set(tree) == {"__tensor__"}:
            return tensors[tree["__tensor__"]]
        return {k: _join_tensors(v, tensors) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_join_tensors(v, tensors) for v in tree]
    return tree


def save_checkpoint(run_dir: Path, epoch: int, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, config: dict, trainer_state: dict) -> Path:
    """Write epoch ``epoch``'s checkpoint and point ``latest.json`` at it; older ones are removed."""
    run_dir = Path(run_dir)
    final = run_dir / f"checkpoint-{epoch:04d}"
    tmp = run_dir / f".checkpoint-{epoch:04d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp / WEIGHTS_FILE))
    tensors: dict[str, torch.Tensor] = {"rng.torch": torch.get_rng_state()}
    optimizer_tree = _split_tensors(optimizer.state_dict(), "optimizer.", tensors)
    save_file(tensors, str(tmp / "state.safetensors"))
    state = {"epoch": epoch, "config": config, "optimizer": optimizer_tree,
             "scheduler": None if scheduler is None else scheduler.state_dict(), "trainer": trainer_state,
             "sha256": {name: file_sha256(tmp / name) for name in TENSOR_FILES}}
    (tmp / "state.json").write_text(json.dumps(state, indent=1))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    try:
        previous = latest_checkpoint(run_dir)  # removed once replaced
    except CheckpointError:
        previous = None
    atomic_write_text(run_dir / LATEST, json.dumps({"checkpoint": final.name, "epoch": epoch,
                                                    "state_sha256": file_sha256(final / "state.json")}))
    if previous is not None and previous != final:
        shutil.rmtree(previous, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint folder ``latest.json`` names; None when the run has no ``latest.json`` yet. An unreadable pointer,
    or one naming anything but an existing ``checkpoint-NNNN`` folder of this run, is a :class:`CheckpointError`."""
    pointer = Path(run_dir) / LATEST
    if not pointer.is_file():
        return None
    values = _read_json(pointer)
    name = values.get("checkpoint")
    if not isinstance(name, str) or not _CHECKPOINT_NAME.fullmatch(name):
        raise CheckpointError(f"{pointer}: 'checkpoint' must name a folder checkpoint-NNNN of this run, got {name!r}; "
                              f"the file was edited. Remove {pointer} to train the run afresh.")
    path = Path(run_dir) / name
    if not path.is_dir():
        raise CheckpointError(f"{pointer} points at {path}, which does not exist (deleted, or only part of the run "
                              f"folder was copied). Restore it, or remove {pointer} to train the run afresh.")
    return path


def load_checkpoint(path: Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any) -> dict:
    """Check the checkpoint (see the module docstring), then restore model, optimizer, scheduler (None: the run has
    none) and torch's RNG; return the JSON state (epoch, trainer)."""
    path = Path(path)
    name = _CHECKPOINT_NAME.fullmatch(path.name)
    if name is None:
        raise CheckpointError(f"{path}: not a checkpoint folder (expected checkpoint-NNNN inside a run folder)")
    pointer = _read_json(path.parent / LATEST) if (path.parent / LATEST).is_file() else {}
    recorded = pointer.get("state_sha256")
    if not isinstance(recorded, str):
        raise CheckpointError(f"{path.parent / LATEST}: no state_sha256 for {path.name} (written before ser_fast "
                              f"checked checkpoints, edited, or missing). {_start_afresh(path)}")
    if file_sha256(path / "state.json") != recorded:
        raise CheckpointError(f"{path / 'state.json'}: its SHA-256 differs from the one {path.parent / LATEST} "
                              f"records; the checkpoint was modified. {_start_afresh(path)}")
    state = _read_json(path / "state.json")
    epoch = state.get("epoch")
    if epoch != int(name[1]) or pointer.get("epoch") != epoch:
        raise CheckpointError(f"{path / 'state.json'}: records epoch {epoch!r}, but the folder is {path.name} and "
                              f"{path.parent / LATEST} says {pointer.get('epoch')!r}. {_start_afresh(path)}")
    checksums = state.get("sha256")
    if not isinstance(checksums, dict):
        raise CheckpointError(f"{path / 'state.json'}: no checksums of its tensor files (written before ser_fast "
                              f"checked checkpoints, or edited). {_start_afresh(path)}")
    tensors = {}
    for name in TENSOR_FILES:
        try:
            tensors[name] = load_safetensors(path / name, checksums.get(name), f"its SHA-256 differs from the one "
                                             f"{path / 'state.json'} records; the file was modified or damaged.", ".")
        except ModelFileError as error:
            raise CheckpointError(f"{error} {_start_afresh(path)}") from None
    try:
        model.load_state_dict(tensors[WEIGHTS_FILE])
        optimizer_state = _join_tensors(state["optimizer"], tensors["state.safetensors"])
        # Optimizer states are keyed by parameter index; JSON made the keys strings.
        optimizer_state["state"] = {int(k): v for k, v in optimizer_state["state"].items()}
        optimizer.load_state_dict(optimizer_state)
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(tensors["state.safetensors"]["rng.torch"])
    except (RuntimeError, ValueError, KeyError, TypeError, AttributeError) as error:
        reason = " ".join(str(error).split())
        raise CheckpointError(f"{path}: does not fit this run's model and optimizer ({reason}). "
                              f"{_start_afresh(path)}") from None
    return state


def resume_checkpoint(run_dir: Path, config: dict, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                      scheduler: Any, writes: bool = True, read_settings: Any = None) -> dict | None:
    """Restore the run's latest checkpoint (see :func:`load_checkpoint`) and return its JSON state; None when the run
    has none yet. The run must have been started with ``config`` (the settings as a dict), and ``metrics.jsonl`` is cut
    back to the checkpoint's epoch: a kill between the metrics line and the checkpoint would otherwise leave that
    epoch's line twice. Under torchrun every process reads the checkpoint; only the main one (``writes``) trims.
    ``read_settings`` (a config class' ``from_dict``) reads both dicts before they are compared, so that settings saved
    before a field existed compare as what they meant."""
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        # A run that never wrote a checkpoint: the usual fresh start (a broken one raised above).
        logger.debug("nothing to resume in %s (no %s); starting afresh", run_dir, LATEST)
        return None
    saved = load_checkpoint(checkpoint, model=model, optimizer=optimizer, scheduler=scheduler)
    read = read_settings or (lambda settings: settings)
    if read(saved["config"]) != read(json.loads(json.dumps(config))):
        raise ValueError(f"{run_dir} was started with other settings; resume it with the same ones")
    if writes:
        _trim_metrics(Path(run_dir) / METRICS, saved["epoch"])
    logger.info("resuming %s after epoch %d", run_dir, saved["epoch"])
    return saved


def _trim_metrics(path: Path, epoch: int) -> None:
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = []
    for line in lines:
        try:
            record_epoch = json.loads(line).get("epoch")
        except (json.JSONDecodeError, AttributeError):
            continue  # a line cut short by the kill
        if isinstance(record_epoch, int) and record_epoch <= epoch:
            kept.append(line if line.endswith("\n") else line + "\n")
    if kept != lines:
        logger.warning("%s: kept the lines of epochs 1-%d (the checkpoint's); dropped %d written after it", path,
                       epoch, len(lines) - len(kept))
        atomic_write_text(path, "".join(kept))


def _read_json(path: Path) -> dict:
    afresh = _start_afresh(path if path.name == LATEST else path.parent)
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise CheckpointError(f"{path}: not readable JSON ({type(error).__name__}: {error}). {afresh}") from None
    if not isinstance(values, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got a {type(values).__name__}. {afresh}")
    return values


def _start_afresh(path: Path) -> str:
    if path.name == LATEST:
        return f"Remove {path} to train the run afresh."
    return f"Remove {path} and {path.parent / LATEST} to train the run afresh."
