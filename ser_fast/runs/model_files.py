"""Saved models: one writer and one reader for every ser_fast model (Baseline, DSNet, EDRL-MEA, Sparse MERIT).

A saved model is a folder with two files:

    model.safetensors   the tensors (safetensors: a JSON header and raw bytes, nothing executable)
    config.json         {"format_version": 1, "model": kind, "classes": [...], "settings": {...},
                         "weights_sha256": "<hex>", ...model-specific state such as EDRL-MEA's "alignment"}

The reader never unpickles anything: it checks the weights file's first bytes before parsing it and refuses pickles and
``torch.save`` archives outright, checks the SHA-256 that config.json records, and every problem is a
:class:`ModelFileError` that names the file, says what is wrong and what to do."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ser_fast.runs.atomic import atomic_save_safetensors, atomic_write_text
from ser_fast.runs.registry import kind_names

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
REQUIRED_KEYS = ("format_version", "model", "classes", "settings", "weights_sha256")
NEVER_UNPICKLES = "ser_fast never unpickles model files"
# config.json's key for a model's own JSON state (EDRL-MEA's MB-PLS alignment), beside its tensors.
MODEL_STATE_KEY = "alignment"

_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default (zip) format
_PICKLE_PROTO = 0x80  # pickle protocol 2+ (also torch.save's legacy format) starts with PROTO <version>
# The largest safetensors JSON header read. ser_fast's own are a few KB (Sparse MERIT's about 100 KB);
# safetensors' own bound (100 MB) let a crafted header cost 21 s and 1.5 GB before it was refused.
HEADER_LIMIT = 8 * 2**20


class ModelFileError(ValueError):
    """A saved model folder that cannot be loaded; the message names the file, what is wrong and what to do."""


@dataclass(frozen=True)
class SavedModel:
    """What :func:`read_model_files` read: the model's kind, class names, settings (the training config's fields), the
    whole config.json (``values``, model-specific state included) and the tensors."""

    folder: Path
    kind: str
    classes: tuple[str, ...]
    settings: dict[str, Any]
    values: dict[str, Any]
    tensors: dict[str, torch.Tensor]

    @property
    def weights_path(self) -> Path:
        return self.folder / WEIGHTS_FILE

    @property
    def config_path(self) -> Path:
        return self.folder / CONFIG_FILE


def write_model_files(folder: str | os.PathLike, tensors: Mapping[str, torch.Tensor], *, kind: str,
                      classes: Sequence[str], settings: Mapping[str, Any],
                      extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``folder/model.safetensors`` then ``folder/config.json`` (each atomically, via a renamed temporary file)
    and return the folder. ``extra``: model-specific JSON state for config.json's top level (EDRL-MEA's alignment)."""
    if kind not in kind_names():
        raise ValueError(f"kind {kind!r}: expected one of {kind_names()}")
    classes = [str(c) for c in classes]
    problem = classes_problem(classes, settings)
    if problem:
        raise ValueError(problem)
    if not isinstance(tensors, Mapping) or not all(isinstance(t, torch.Tensor) for t in tensors.values()):
        raise TypeError("tensors must be a mapping of names to torch.Tensor")
    extra = dict(extra or {})
    clashes = sorted(set(extra) & set(REQUIRED_KEYS))
    if clashes:
        raise ValueError(f"extra must not redefine config.json's own keys {clashes}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_save_safetensors(folder / WEIGHTS_FILE, dict(tensors))
    values = {"format_version": FORMAT_VERSION, "model": kind, "classes": classes, "settings": dict(settings),
              **extra, "weights_sha256": file_sha256(folder / WEIGHTS_FILE)}
    atomic_write_text(folder / CONFIG_FILE, json.dumps(values, indent=1))
    return folder


def classes_problem(classes: object, settings: Mapping[str, Any]) -> str | None:
    """What is wrong with a model's class list, or None: at least two distinct, non-empty names, and none for a
    model whose settings' ``target`` is "dimensional" (it predicts arousal, valence and dominance only)."""
    if settings.get("target") == "dimensional":
        if classes != []:
            return f"classes must be [] for a dimensional model (no classifier), got {classes!r}"
        return None
    if (not isinstance(classes, list) or len(classes) < 2 or not all(isinstance(c, str) and c.strip() for c in classes)
            or len(set(classes)) != len(classes)):
        return f"classes must be a list of at least two distinct, non-empty names, got {classes!r}"
    return None


def read_model_files(folder: str | os.PathLike, *, verify_checksum: bool = True) -> SavedModel:
    """Read and check a saved model folder; raises :class:`ModelFileError` for anything wrong. ``verify_checksum=False``
    skips the SHA-256 comparison only (the trainer re-reading its own folder after a kill between its two writes)."""
    if not isinstance(folder, (str, os.PathLike)):
        raise TypeError(f"folder must be a path (str or os.PathLike), got {type(folder).__name__}")
    folder = Path(folder)
    values = _read_config(folder / CONFIG_FILE)
    modified = (f"its SHA-256 differs from the one {folder / CONFIG_FILE} records: the weights were modified or "
                "replaced after saving (or only one of the two files was copied). Restore both files from the same "
                "save, or retrain.")
    tensors = load_safetensors(folder / WEIGHTS_FILE, values["weights_sha256"], modified if verify_checksum else None,
                               "; it is truncated or corrupted. Restore it from the same save as config.json, or "
                               "retrain.")
    return SavedModel(folder, values["model"], tuple(values["classes"]), dict(values["settings"]), values, tensors)


def write_config_state(folder: str | os.PathLike, key: str, value: Any) -> Path:
    """Add or replace one model-specific JSON entry of a saved folder's config.json (e.g. the calibration fitted after
    the weights were saved), atomically; the weights and their checksum are untouched. Returns config.json's path."""
    if key in REQUIRED_KEYS:
        raise ValueError(f"{key!r} is one of config.json's own keys {list(REQUIRED_KEYS)}")
    path = Path(folder) / CONFIG_FILE
    values = _read_config(path)
    values[key] = value
    atomic_write_text(path, json.dumps(values, indent=1))
    return path


def load_safetensors(path: Path, sha256: object, modified: str | None, unreadable: str) -> dict[str, torch.Tensor]:
    """The tensors of ``path``, checked first (:func:`check_safetensors_file`); a :class:`ModelFileError`
    ``"{path}: {modified}"`` when its SHA-256 is not ``sha256`` (``modified=None``: not compared), and
    ``"{path}: not a readable safetensors file ({error}){unreadable}"`` when safetensors cannot parse it."""
    check_safetensors_file(path)
    if modified is not None and file_sha256(path) != sha256:
        raise ModelFileError(f"{path}: {modified}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise ModelFileError(f"{path}: not a readable safetensors file ({error}){unreadable}") from None


def load_weights(model: torch.nn.Module, saved: SavedModel) -> None:
    """Load ``saved``'s tensors into ``model``, with its own JSON state (``MODEL_STATE_KEY``) when the model has
    ``load_saved(tensors, state)`` (EDRL-MEA's MB-PLS); tensors that do not fit it are a :class:`ModelFileError`."""
    _check_tensor_values(model, saved)
    try:
        if hasattr(model, "load_saved"):
            model.load_saved(saved.tensors, saved.values.get(MODEL_STATE_KEY))
        else:
            model.load_state_dict(saved.tensors)
    except (RuntimeError, ValueError, KeyError, TypeError) as error:
        # load_state_dict lists every bad key on its own line; one line reads better in a log.
        reason = " ".join(str(error).split())
        raise ModelFileError(
            f"{saved.weights_path}: its tensors do not fit the {saved.kind} model that {saved.config_path} "
            f"describes ({reason}). The two files come from different models: restore both from the same "
            "save.") from None


def _check_tensor_values(model: torch.nn.Module, saved: SavedModel) -> None:
    """Every tensor in the model's own dtype (load_state_dict would cast int8 or bool weights silently) and every
    floating-point tensor finite (a diverged model labels everything with NaN)."""
    expected = model.state_dict()
    wrong = [f"{name} is {tensor.dtype}, the model's is {expected[name].dtype}"
             for name, tensor in saved.tensors.items() if name in expected and tensor.dtype != expected[name].dtype]
    if wrong:
        raise ModelFileError(f"{saved.weights_path}: {len(wrong)} tensors have the wrong dtype "
                             f"({'; '.join(wrong[:3])}{'; ...' if len(wrong) > 3 else ''}); the file was edited or "
                             "written by another program. Restore it from the same save as config.json, or retrain.")
    broken = [name for name, tensor in saved.tensors.items()
              if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]
    if broken:
        raise ModelFileError(f"{saved.weights_path}: {len(broken)} tensors hold NaN or infinite values "
                             f"({', '.join(broken[:3])}{', ...' if len(broken) > 3 else ''}): the model diverged in "
                             "training. Retrain it (a lower learning rate, usually).")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ModelFileError(f"{path}: not found. A saved ser_fast model folder holds {CONFIG_FILE} and "
                             f"{WEIGHTS_FILE}; point at a trained fold, a run folder or a folder written by save().")
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise ModelFileError(f"{path}: nested too deeply to be a ser_fast config; the file is corrupted or crafted. "
                             "Restore it from the same save as the weights, or retrain.") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFileError(f"{path}: not valid JSON ({error}); the file is corrupted. Restore it from the same "
                             "save as the weights, or retrain.") from None
    if not isinstance(values, dict):
        raise ModelFileError(f"{path}: expected a JSON object, got a {type(values).__name__}; restore the file or "
                             "retrain.")
    if "format_version" not in values:
        raise ModelFileError(f"{path}: no format_version: written before ser_fast versioned its model files, or not "
                             "by ser_fast. Retrain the model (or save it again with this version).")
    version = values["format_version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ModelFileError(f"{path}: format_version must be a positive integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise ModelFileError(f"{path}: format_version {version} is newer than this ser_fast reads (up to "
                             f"{FORMAT_VERSION}); upgrade ser_fast to load it.")
    missing = [key for key in REQUIRED_KEYS if key not in values]
    if missing:
        raise ModelFileError(f"{path}: missing {missing}; expected the keys {list(REQUIRED_KEYS)}. Restore the file "
                             "or retrain.")
    problems = []
    if values["model"] not in kind_names():
        problems.append(f"model {values['model']!r} is not one of {kind_names()}")
    if not isinstance(values["settings"], dict):
        problems.append(f"settings must be an object, got {type(values['settings']).__name__}")
    else:
        problem = classes_problem(values["classes"], values["settings"])
        if problem:
            problems.append(problem)
    checksum = values["weights_sha256"]
    if not isinstance(checksum, str) or len(checksum) != 64:
        problems.append(f"weights_sha256 must be 64 hex digits, got {checksum!r}")
    if problems:
        raise ModelFileError(f"{path}: {'; '.join(problems)}. Restore the file or retrain.")
    return values


def check_safetensors_file(path: Path) -> None:
    """Classify a weights file by its first bytes, before any parser sees it: a safetensors file starts with the
    little-endian length N of its JSON header, then ``{``; its data ends exactly at the last tensor's end offset."""
    if not path.is_file():
        raise ModelFileError(f"{path}: not found; the folder holds {CONFIG_FILE} but no weights. Restore "
                             f"{WEIGHTS_FILE} from the same save, or retrain.")
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(9)
        header_size = struct.unpack("<Q", head[:8])[0] if len(head) == 9 else 0
        looks_like_safetensors = head[8:9] == b"{" and 2 <= header_size <= HEADER_LIMIT
        header = handle.read(header_size - 1) if looks_like_safetensors else b""
    if head.startswith(_ZIP_MAGIC):
        raise ModelFileError(f"{path}: a zip archive, which is what torch.save writes, not a safetensors file. "
                             f"{NEVER_UNPICKLES}: save the model with ser_fast (safetensors + config.json).")
    if not looks_like_safetensors and head[:1] == bytes([_PICKLE_PROTO]) and len(head) > 1 and 2 <= head[1] <= 5:
        raise ModelFileError(f"{path}: a Python pickle (as torch.save's legacy format writes), not a safetensors "
                             f"file. {NEVER_UNPICKLES}: save the model with ser_fast (safetensors + config.json).")
    if head[8:9] == b"{" and header_size > HEADER_LIMIT:
        raise ModelFileError(f"{path}: its safetensors header declares {header_size} bytes, over the {HEADER_LIMIT} "
                             "that ser_fast reads (its own models' headers are a few KB); the file is corrupted or "
                             "crafted. Restore it from the same save as config.json, or retrain.")
    if not looks_like_safetensors:
        raise ModelFileError(f"{path}: not a safetensors file ({size} bytes that do not start with a safetensors "
                             f"header; {NEVER_UNPICKLES}). It is corrupted or truncated: restore it from the same "
                             "save as config.json, or retrain.")
    data_end = _data_end(b"{" + header) if len(header) == header_size - 1 else None
    if data_end is None or 8 + header_size + data_end != size:
        raise ModelFileError(f"{path}: truncated or corrupted ({size} bytes; its safetensors header "
                             f"{'cannot be read' if data_end is None else f'says {8 + header_size + data_end}'}). "
                             "Restore it from the same save as config.json, or retrain.")


def _data_end(header: bytes) -> int | None:
    """The end offset of the last tensor's bytes that a safetensors JSON header declares (None if unreadable)."""
    try:
        entries = json.loads(header.decode("utf-8"))
        return max((int(entry["data_offsets"][1]) for name, entry in entries.items() if name != "__metadata__"),
                   default=0)
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError, KeyError, IndexError, TypeError, ValueError):
        return None
