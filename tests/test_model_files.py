"""Saved model files: what the writer puts in config.json, and every way a model folder can be wrong,
each refused with a ModelFileError that names the file, by every loader (the fold loader, the MERIT
loader, the recognizer), without ever unpickling anything."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from ser_fast.inference.recognizer import EmotionRecognizer
from ser_fast.models import Baseline
from ser_fast.models.merit import MeritConfig
from ser_fast.models.merit.model import build_merit
from ser_fast.runs.config import MeritTrainConfig, TrainConfig
from ser_fast.runs.model_files import (
    FORMAT_VERSION,
    ModelFileError,
    file_sha256,
    read_model_files,
    write_model_files,
)
from ser_fast.runs.saved import load_model, save_model

CLASSES = ("neutral", "happy", "sad", "angry")
SMALL_MERIT = {"expert_hidden": 32, "expert_dim": 24, "ser_hidden": 16, "se_hidden": 16}


class CreatesMarker:
    """Unpickling this creates ``path``: the code a malicious model file would run."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


@pytest.fixture(scope="module")
def saved_baseline(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("saved") / "baseline"
    save_model(folder, Baseline(len(CLASSES)).eval(), TrainConfig(model="baseline", max_frames=32), CLASSES)
    return folder


@pytest.fixture
def model_dir(saved_baseline, tmp_path) -> Path:
    """A fresh copy of the saved Baseline for a test to break."""
    return Path(shutil.copytree(saved_baseline, tmp_path / "model"))


def edit_config(folder: Path, change) -> None:
    values = json.loads((folder / "config.json").read_text())
    change(values)
    (folder / "config.json").write_text(json.dumps(values))


def flip_byte(folder: Path) -> None:
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[-3] ^= 0x10  # inside the last tensor: the header still parses, only the checksum can tell
    (folder / "model.safetensors").write_bytes(bytes(data))


def truncate(folder: Path) -> None:
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])


def legacy_torch_save(obj, handle) -> None:
    torch.save(obj, handle, _use_new_zipfile_serialization=False)


def weights_as(folder: Path, writer) -> None:
    with open(folder / "model.safetensors", "wb") as handle:
        writer(handle)


def rewrite_weights(folder: Path, change) -> None:
    """Change the tensors and record the new file's checksum: a well-formed file with bad values."""
    tensors = load_file(str(folder / "model.safetensors"))
    change(tensors)
    save_file(tensors, str(folder / "model.safetensors"))
    edit_config(folder, lambda v: v.update(weights_sha256=file_sha256(folder / "model.safetensors")))


def poison(tensors: dict) -> None:
    name = next(n for n, t in tensors.items() if t.is_floating_point() and t.numel() > 1)
    tensors[name][0] = float("nan")


def as_int8(tensors: dict) -> None:
    name = next(n for n, t in tensors.items() if t.is_floating_point())
    tensors[name] = tensors[name].to(torch.int8)


def nested(depth: int) -> str:
    return '{"format_version": 1, "model": "baseline", "deep": ' + "[" * depth + "]" * depth + "}"


def huge_header(folder: Path) -> None:
    header = b'{"__metadata__": {"pad": "' + b" " * (50 * 2**20) + b'"}}'
    (folder / "model.safetensors").write_bytes(len(header).to_bytes(8, "little") + header)


def baseline_state() -> dict:
    return dict(Baseline(len(CLASSES)).state_dict())


BREAKAGES = [
    pytest.param(lambda d: (d / "config.json").unlink(), "config.json", r"not found", id="config-missing"),
    pytest.param(lambda d: (d / "model.safetensors").unlink(), "model.safetensors", r"not found", id="weights-missing"),
    pytest.param(lambda d: (d / "config.json").write_bytes(b"\x00\xffnot json{"), "config.json", r"not valid JSON",
                 id="config-garbage"),
    pytest.param(lambda d: (d / "config.json").write_text("[1, 2, 3]"), "config.json", r"expected a JSON object",
                 id="config-not-an-object"),
    pytest.param(lambda d: edit_config(d, lambda v: v.pop("classes")), "config.json", r"missing \['classes'\]",
                 id="config-missing-key"),
    pytest.param(lambda d: edit_config(d, lambda v: v.pop("format_version")), "config.json", r"no format_version",
                 id="format-version-missing"),
    pytest.param(lambda d: edit_config(d, lambda v: v.update(format_version=999)), "config.json",
                 r"format_version 999 is newer .* upgrade ser_fast", id="format-version-999"),
    pytest.param(lambda d: edit_config(d, lambda v: v.update(model="resnet")), "config.json", r"'resnet' is not one of",
                 id="unknown-kind"),
    pytest.param(lambda d: weights_as(d, lambda f: pickle.dump(baseline_state(), f)), "model.safetensors",
                 r"pickle.*never unpickles", id="weights-pickle"),
    pytest.param(lambda d: weights_as(d, lambda f: torch.save(baseline_state(), f)), "model.safetensors",
                 r"torch.save.*never unpickles", id="weights-torch-save"),
    pytest.param(lambda d: weights_as(d, lambda f: legacy_torch_save(baseline_state(), f)), "model.safetensors",
                 r"pickle.*never unpickles", id="weights-torch-save-legacy"),
    pytest.param(lambda d: (d / "model.safetensors").write_bytes(b"garbage" * 10), "model.safetensors",
                 r"not a safetensors file", id="weights-garbage"),
    pytest.param(truncate, "model.safetensors", r"truncated", id="weights-truncated"),
    pytest.param(flip_byte, "model.safetensors", r"SHA-256 differs", id="weights-tampered"),
    pytest.param(lambda d: edit_config(d, lambda v: v.update(classes=["a", "b", "c", "d", "e", "f"])),
                 "model.safetensors", r"do not fit the baseline model.*size mismatch", id="wrong-shapes"),
    pytest.param(lambda d: edit_config(d, lambda v: (v.update(model="dsnet"), v["settings"].update(model="dsnet"))),
                 "model.safetensors", r"do not fit the dsnet model.*Missing key", id="wrong-model-kind"),
    pytest.param(lambda d: edit_config(d, lambda v: v["settings"].update(max_frames=-3)), "config.json",
                 r"settings are not valid.*max_frames", id="bad-settings"),
    pytest.param(lambda d: rewrite_weights(d, poison), "model.safetensors", r"NaN or infinite.*diverged",
                 id="weights-nan"),
    pytest.param(lambda d: rewrite_weights(d, as_int8), "model.safetensors", r"wrong dtype.*torch.int8",
                 id="weights-int8"),
    pytest.param(lambda d: edit_config(d, lambda v: v.update(classes=["a", "a", "b", "c"])), "config.json",
                 r"distinct, non-empty names", id="duplicate-classes"),
    pytest.param(lambda d: edit_config(d, lambda v: v.update(classes=["a", "", "b", "c"])), "config.json",
                 r"distinct, non-empty names", id="empty-class-name"),
    pytest.param(lambda d: (d / "config.json").write_text(nested(100_000)), "config.json", r"nested too deeply",
                 id="config-deeply-nested"),
    pytest.param(lambda d: edit_config(d, lambda v: v["settings"].update(max_frames=10**12)), "config.json",
                 r"settings are not valid.*max_frames must be at most 60000", id="max-frames-10^12"),
    pytest.param(huge_header, "model.safetensors", r"header declares \d+ bytes, over the 8388608",
                 id="weights-50MB-header"),
]


@pytest.mark.parametrize("break_folder, file, pattern", BREAKAGES)
def test_a_broken_model_folder_is_refused_with_a_message_naming_the_file(model_dir, break_folder, file, pattern):
    break_folder(model_dir)
    with pytest.raises(ModelFileError, match=pattern) as error:
        EmotionRecognizer.from_pretrained(model_dir)
    assert str(model_dir / file) in str(error.value)
    if (model_dir / "config.json").is_file() and (model_dir / "model.safetensors").is_file():
        with pytest.raises(ModelFileError, match=pattern):
            load_model(model_dir)


@pytest.mark.parametrize("writer", [
    pytest.param(pickle.dump, id="pickle"),
    pytest.param(torch.save, id="torch-save"),
])
def test_loading_a_malicious_pickle_never_runs_its_code(model_dir, tmp_path, writer):
    payload_proof = tmp_path / "unpickled.marker"
    pickle.loads(pickle.dumps(CreatesMarker(payload_proof)))
    assert payload_proof.exists(), "the payload must run when unpickled, or this test proves nothing"
    marker = tmp_path / "attack.marker"
    weights_as(model_dir, lambda f: writer(CreatesMarker(marker), f))
    for load in (EmotionRecognizer.from_pretrained, load_model, read_model_files):
        with pytest.raises(ModelFileError, match="never unpickles"):
            load(model_dir)
    assert not marker.exists()


def test_the_merit_loader_refuses_a_pickle_too(tmp_path):
    torch.manual_seed(0)
    config = MeritTrainConfig(network=MeritConfig(**SMALL_MERIT))
    model = build_merit(MeritConfig.from_dict({**config.network.to_dict(), "num_classes": len(CLASSES)}))
    save_model(tmp_path, model, config, CLASSES)
    loaded, loaded_config, classes = load_model(tmp_path)
    assert loaded_config == config and classes == CLASSES
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    marker = tmp_path / "attack.marker"
    weights_as(tmp_path, lambda f: torch.save(CreatesMarker(marker), f))
    with pytest.raises(ModelFileError, match=rf"{tmp_path / 'model.safetensors'}.*never unpickles"):
        load_model(tmp_path)
    assert not marker.exists()


def test_config_json_holds_the_format_version_kind_classes_settings_and_checksum(saved_baseline):
    values = json.loads((saved_baseline / "config.json").read_text())
    assert values["format_version"] == FORMAT_VERSION == 1
    assert values["model"] == "baseline" and values["classes"] == list(CLASSES)
    assert values["settings"] == TrainConfig(model="baseline", max_frames=32).to_dict()
    assert values["weights_sha256"] == file_sha256(saved_baseline / "model.safetensors")
    saved = read_model_files(saved_baseline)
    assert saved.kind == "baseline" and saved.classes == CLASSES and set(saved.tensors) == set(
        Baseline(4).state_dict())


def test_the_checksum_check_can_be_skipped_for_the_trainers_own_folder(model_dir):
    flip_byte(model_dir)
    with pytest.raises(ModelFileError, match="SHA-256"):
        read_model_files(model_dir)
    assert read_model_files(model_dir, verify_checksum=False).kind == "baseline"


@pytest.mark.parametrize("kwargs, error, pattern", [
    pytest.param({"kind": "resnet"}, ValueError, "kind 'resnet'", id="kind"),
    pytest.param({"classes": ["only"]}, ValueError, "at least two distinct", id="one-class"),
    pytest.param({"classes": ["a", "a"]}, ValueError, "at least two distinct", id="duplicate-classes"),
    pytest.param({"extra": {"weights_sha256": "x"}}, ValueError, "must not redefine", id="extra-clash"),
])
def test_bad_writer_arguments_are_explained(tmp_path, kwargs, error, pattern):
    arguments = {"kind": "baseline", "classes": CLASSES, "settings": {}, **kwargs}
    with pytest.raises(error, match=pattern):
        write_model_files(tmp_path, {"w": torch.zeros(2)}, **arguments)
    assert not (tmp_path / "model.safetensors").exists()


@pytest.mark.parametrize("fold", ["ELSEWHERE", "../outside", "folds/../../outside"], ids=["absolute", "dotdot", "nested"])
def test_a_run_json_fold_outside_the_run_is_refused(saved_baseline, tmp_path, fold):
    outside = Path(shutil.copytree(saved_baseline, tmp_path / "outside"))
    run = tmp_path / "run"
    (run / "folds").mkdir(parents=True)
    name = str(outside) if fold == "ELSEWHERE" else fold
    (run / "run.json").write_text(json.dumps({"folds": [name]}))
    with pytest.raises(ModelFileError, match=r"run.json: fold .* is not a folder name of this run"):
        EmotionRecognizer.from_pretrained(run)
