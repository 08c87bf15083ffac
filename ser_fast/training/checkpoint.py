"""Checkpoints that survive a kill: weights and optimizer tensors in safetensors, everything else in
JSON, written to a fresh folder that is renamed into place, then ``latest.json`` (replaced
atomically) points at it. Nothing is ever unpickled."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

LATEST = "latest.json"


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def atomic_save_safetensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
    os.replace(tmp, path)


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


def _int_keys(state: dict) -> dict:
    """Optimizer states are keyed by parameter index; JSON made the keys strings."""
    return {int(k): v for k, v in state.items()}


def save_checkpoint(run_dir: Path, epoch: int, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, config: dict, trainer_state: dict) -> Path:
    """Write epoch ``epoch``'s checkpoint and point ``latest.json`` at it; older ones are removed."""
    run_dir = Path(run_dir)
    final = run_dir / f"checkpoint-{epoch:04d}"
    tmp = run_dir / f".checkpoint-{epoch:04d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
    tensors: dict[str, torch.Tensor] = {"rng.torch": torch.get_rng_state()}
    optimizer_tree = _split_tensors(optimizer.state_dict(), "optimizer.", tensors)
    save_file(tensors, str(tmp / "state.safetensors"))
    state = {"epoch": epoch, "config": config, "optimizer": optimizer_tree,
             "scheduler": None if scheduler is None else scheduler.state_dict(), "trainer": trainer_state}
    (tmp / "state.json").write_text(json.dumps(state, indent=1))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    previous = latest_checkpoint(run_dir)
    atomic_write_text(run_dir / LATEST, json.dumps({"checkpoint": final.name, "epoch": epoch}))
    if previous is not None and previous != final:
        shutil.rmtree(previous, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    pointer = Path(run_dir) / LATEST
    if not pointer.is_file():
        return None
    path = Path(run_dir) / json.loads(pointer.read_text())["checkpoint"]
    return path if path.is_dir() else None


def load_checkpoint(path: Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any) -> dict:
    """Restore model, optimizer, scheduler (None: the run has none) and torch's RNG; return the
    JSON state (epoch, trainer)."""
    path = Path(path)
    state = json.loads((path / "state.json").read_text())
    tensors = load_file(str(path / "state.safetensors"))
    model.load_state_dict(load_file(str(path / "model.safetensors")))
    optimizer_state = _join_tensors(state["optimizer"], tensors)
    optimizer_state["state"] = _int_keys(optimizer_state["state"])
    optimizer.load_state_dict(optimizer_state)
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(tensors["rng.torch"])
    return state
