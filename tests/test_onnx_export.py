"""ONNX export: onnxruntime (CPUExecutionProvider) on the exported file gives the PyTorch eval model's
probabilities on padded batches of any B and T; the masking by lengths is in the graph; the file
carries its class names and settings; runs and folds export through the API and the CLI; bad
arguments are explained. Each model is exported once per module (an export takes a few seconds)."""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from helpers import assert_close

from ser_fast.cli import main
from ser_fast.data.loaders import load_corpus
from ser_fast.data.synthetic import synthesize_corpus
from ser_fast.inference.onnx_export import (
    ProbabilityGraph,
    _fold_dir,
    export_onnx,
    export_run,
    read_metadata,
)
from ser_fast.models.dsnet import Baseline, DSNet
from ser_fast.models.edrl_mea.model import EDRLMEA
from ser_fast.runs.calibration import Calibration, write_calibration
from ser_fast.runs.config import TrainConfig
from ser_fast.runs.saved import load_model
from ser_fast.training.run import train_run

# Float32 throughout; folded BatchNorm and onnxruntime's own conv/matmul kernels round differently
# from eager PyTorch (measured: at most 1.4e-7 on these models). 1e-4 leaves room for
# other CPUs' kernels while padded frames leaking into the encoder move an utterance's
# probabilities by 1e-3 or more (checked in test_masking_by_lengths_is_in_the_graph).
PROBABILITY_ATOL = 1e-4
CLASSES = ("neutral", "happy", "sad", "angry")
BATCHES = (1, 3, 7)
FRAMES = (16, 63, 151)
PADDING_SCALE = 1e3  # what fills the frames past each length: garbage that must not matter


@dataclass
class Exported:
    model: torch.nn.Module
    path: Path
    session: ort.InferenceSession

    def run(self, x: torch.Tensor, lengths: torch.Tensor) -> np.ndarray:
        return self.session.run(None, {"features": x.numpy(), "lengths": lengths.numpy()})[0]


def open_session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # the machine is shared
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def with_random_batch_norms(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Non-trivial running statistics and affine parameters, so folding them has something to fold."""
    g = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            n = module.num_features
            module.running_mean.copy_(0.5 * torch.randn(n, generator=g))
            module.running_var.copy_(0.5 + 1.5 * torch.rand(n, generator=g))
            module.weight.data.copy_(0.5 + torch.rand(n, generator=g))
            module.bias.data.copy_(0.2 * torch.randn(n, generator=g))
    return model.eval()


def padded_batch(batch: int, frames: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Features ``[batch, 3, frames, 80]`` and lengths with some items shorter than ``frames`` (a lone
    item is padded too); frames past each length hold large noise."""
    g = torch.Generator().manual_seed(seed)
    if batch == 1:
        lengths = torch.tensor([frames - frames // 3])
    else:
        lengths = torch.randint(1, frames + 1, (batch,), generator=g)
        lengths[0], lengths[-1] = frames, 1
    x = torch.randn(batch, 3, frames, 80, generator=g)
    padding = (torch.arange(frames)[None, :] >= lengths[:, None])[:, None, :, None].expand_as(x)
    x[padding] = PADDING_SCALE * torch.randn(int(padding.sum()), generator=g)
    return x, lengths


def probabilities(model: torch.nn.Module, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.softmax(model(x, lengths), dim=1)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    torch.set_num_threads(1)  # module-scoped: set up before the per-test fixtures
    return tmp_path_factory.mktemp("onnx")


@pytest.fixture(scope="module")
def edrl_run(workspace) -> Path:
    """A tiny aligned EDRL-MEA run, two folds × one epoch."""
    corpus = load_corpus("iemocap", synthesize_corpus(workspace / "corpus", speakers=4, per_class=2, seed=1))
    config = TrainConfig(model="edrl-mea", epochs=1, batch_size=8, max_frames=32, precision="fp32", n_components=4)
    train_run(corpus, workspace / "run", config, folds=[0, 1])
    return workspace / "run"


def fold_dirs(run_dir: Path) -> list[Path]:
    return [run_dir / "folds" / name for name in json.loads((run_dir / "run.json").read_text())["folds"]]


@pytest.fixture(scope="module")
def baseline_export(workspace) -> Exported:
    torch.manual_seed(0)
    model = with_random_batch_norms(Baseline(len(CLASSES)), seed=1)
    path = export_onnx(model, workspace / "baseline.onnx", classes=CLASSES, inputs="features")
    return Exported(model, path, open_session(path))


@pytest.fixture(scope="module")
def dsnet_export(workspace) -> Exported:
    torch.manual_seed(2)
    model = with_random_batch_norms(DSNet(len(CLASSES)), seed=3)
    path = export_onnx(model, workspace / "dsnet.onnx", classes=CLASSES, inputs="features")
    return Exported(model, path, open_session(path))


@pytest.fixture(scope="module")
def edrl_mea_export(workspace, edrl_run) -> Exported:
    """Exported by export_run from a fold's folder."""
    fold_dir = fold_dirs(edrl_run)[0]
    model, _, _ = load_model(fold_dir)
    assert model.is_aligned and model.mbpls is not None
    path = export_run(fold_dir, workspace / "edrl-mea.onnx", inputs="features")
    return Exported(model, path, open_session(path))


EXPORTS = {"baseline": "baseline_export", "dsnet": "dsnet_export", "edrl-mea": "edrl_mea_export"}


@pytest.mark.parametrize("frames", FRAMES, ids=[f"T{t}" for t in FRAMES])
@pytest.mark.parametrize("batch", BATCHES, ids=[f"B{b}" for b in BATCHES])
@pytest.mark.parametrize("name", list(EXPORTS))
def test_onnxruntime_matches_pytorch(name, batch, frames, request):
    exported = request.getfixturevalue(EXPORTS[name])
    x, lengths = padded_batch(batch, frames, seed=batch * 1000 + frames)
    expected = probabilities(exported.model, x, lengths)
    got = exported.run(x, lengths)
    assert got.shape == (batch, len(CLASSES)) and got.dtype == np.float32
    assert_close(got, expected, atol=PROBABILITY_ATOL, msg=f"{name} B={batch} T={frames} lengths={lengths.tolist()}")
    assert np.array_equal(got.argmax(axis=1), expected.argmax(dim=1).numpy())
    assert_close(got.sum(axis=1), np.ones(batch), atol=1e-5, msg="probabilities sum to 1")


def test_masking_by_lengths_is_in_the_graph(baseline_export):
    """A padded utterance gets what it gets alone, whatever its padding holds; and that padding
    would change the result if the graph did not mask it."""
    lengths = torch.tensor([151, 16, 63, 100, 17])
    x, _ = padded_batch(5, 151, seed=7)
    padding = (torch.arange(151)[None, :] >= lengths[:, None])[:, None, :, None].expand_as(x)
    x[padding] = PADDING_SCALE * torch.randn(int(padding.sum()), generator=torch.Generator().manual_seed(8))
    padded = baseline_export.run(x, lengths)
    alone = np.concatenate([baseline_export.run(x[i:i + 1, :, :n].contiguous(), lengths[i:i + 1])
                            for i, n in enumerate(lengths.tolist())])
    assert_close(padded, alone, atol=PROBABILITY_ATOL, msg="padded vs alone")
    unmasked = baseline_export.run(x, torch.full((5,), 151))
    assert np.abs(unmasked[1:] - padded[1:]).max(axis=1).min() > 10 * PROBABILITY_ATOL


def test_the_graph_has_dynamic_batch_and_frames_and_the_documented_names(baseline_export):
    inputs = {i.name: (i.shape, i.type) for i in baseline_export.session.get_inputs()}
    (output,) = baseline_export.session.get_outputs()
    assert inputs["features"][1] == "tensor(float)" and inputs["lengths"][1] == "tensor(int64)"
    batch, channels, frames, mels = inputs["features"][0]
    assert isinstance(batch, str) and isinstance(frames, str) and (channels, mels) == (3, 80)
    assert inputs["lengths"][0] == [batch]
    assert output.name == "probabilities" and output.shape == [batch, len(CLASSES)]
    operators = {node.op_type for node in onnx.load(str(baseline_export.path)).graph.node}
    assert "Conv" in operators and "BatchNormalization" not in operators  # folded into the convs


def test_a_static_export_fixes_batch_and_frames(baseline_export, tmp_path):
    path = export_onnx(baseline_export.model, tmp_path / "static.onnx", dynamic=False, frames=40, opset=18,
                       inputs="features")
    session = open_session(path)
    assert session.get_inputs()[0].shape == [1, 3, 40, 80] and session.get_outputs()[0].shape == [1, len(CLASSES)]
    assert onnx.load(str(path)).opset_import[0].version == 18
    x, lengths = padded_batch(1, 40, seed=13)
    got = session.run(None, {"features": x.numpy(), "lengths": lengths.numpy()})[0]
    assert_close(got, probabilities(baseline_export.model, x, lengths), atol=PROBABILITY_ATOL, msg="static")


def test_export_run_metadata_holds_the_classes_settings_and_features(edrl_mea_export, edrl_run):
    metadata = read_metadata(edrl_mea_export.path)
    _, config, classes = load_model(fold_dirs(edrl_run)[0])
    assert metadata["classes"] == list(classes) and metadata["model"] == "edrl-mea"
    assert metadata["settings"] == config.to_dict() and metadata["num_classes"] == len(classes)
    assert metadata["features"]["max_frames"] == config.max_frames == 32
    assert metadata["features"]["min_frames"] == 16 and metadata["features"]["fbank"]["num_mel_bins"] == 80
    # onnxruntime users read the same, without the onnx package.
    custom = edrl_mea_export.session.get_modelmeta().custom_metadata_map
    assert json.loads(custom["ser_fast.classes"]) == list(classes)


def test_the_exported_probabilities_are_calibrated_as_predict_calibrates_them(edrl_run, tmp_path):
    fold = tmp_path / "fold"  # a copy: the run is shared by this module's tests
    shutil.copytree(fold_dirs(edrl_run)[0], fold)
    write_calibration(fold, Calibration(2.5, True, 40))
    out = export_run(fold, tmp_path / "calibrated.onnx", inputs="features")
    assert read_metadata(out)["temperature"] == 2.5
    model, _, _ = load_model(fold)
    x, lengths = padded_batch(3, 40, seed=5)
    got = open_session(out).run(None, {"features": x.numpy(), "lengths": lengths.numpy()})[0]
    plain = probabilities(model, x, lengths).double()
    expected = torch.softmax(torch.log(plain) / 2.5, dim=1)
    assert_close(got, expected, atol=PROBABILITY_ATOL, msg="softmax(logits / T)")


def test_export_onnx_records_the_classes_given(baseline_export):
    metadata = read_metadata(baseline_export.path)
    assert metadata["classes"] == list(CLASSES) and metadata["model"] == "baseline" and "settings" not in metadata


def test_cli_exports_a_run_folder_fold_that_onnxruntime_runs(edrl_run, workspace, capsys):
    second = fold_dirs(edrl_run)[1]
    out = workspace / "cli" / "model.onnx"
    assert main(["export", "--run", str(edrl_run), "--out", str(out), "--fold", second.name, "--input",
                 "features"]) == 0
    assert str(out) in capsys.readouterr().out
    model, _, classes = load_model(second)
    x, lengths = padded_batch(3, 63, seed=11)
    got = open_session(out).run(None, {"features": x.numpy(), "lengths": lengths.numpy()})[0]
    assert_close(got, probabilities(model, x, lengths), atol=PROBABILITY_ATOL, msg="CLI export")
    assert read_metadata(out)["classes"] == list(classes)


@pytest.mark.parametrize("scores, best", [((0.25, 0.5), 1), ((0.5, 0.25), 0)], ids=["second", "first"])
def test_a_run_folder_defaults_to_the_fold_best_on_validation(edrl_run, tmp_path, scores, best):
    """EDRL-MEA's folds are ranked by their aligned model's validation UAR (alignment.json)."""
    run = shutil.copytree(edrl_run, tmp_path / "run")
    folds = fold_dirs(run)
    for fold_dir, uar in zip(folds, scores):
        alignment = json.loads((fold_dir / "alignment.json").read_text())
        (fold_dir / "alignment.json").write_text(json.dumps({**alignment, "aligned_val_uar": uar}))
    assert _fold_dir(run, None) == folds[best]
    assert _fold_dir(run, folds[1 - best].name) == folds[1 - best]
    assert _fold_dir(folds[0], None) == folds[0]


@pytest.mark.parametrize("variant", ["full", "edrl", "mea", "not-aligned"])
def test_the_exported_computation_equals_every_edrl_mea_variant(variant):
    """ProbabilityGraph is what is exported: BatchNorm folded, masking always on, the MB-PLS
    projection written out. Every variant's readout path, checked in eager PyTorch."""
    torch.manual_seed(4)
    model = EDRLMEA(len(CLASSES), variant="full" if variant == "not-aligned" else variant, n_components=4)
    x, lengths = padded_batch(24, 40, seed=5)
    lengths = lengths.clamp(min=16)
    if variant != "not-aligned":
        model.fit_alignment([(x, torch.arange(24) % len(CLASSES), lengths)])
    model = with_random_batch_norms(model, seed=6)
    x, lengths = padded_batch(7, 63, seed=8)
    with torch.no_grad():
        got = ProbabilityGraph(model).eval()(x, lengths)
    assert_close(got, probabilities(model, x, lengths), atol=PROBABILITY_ATOL, msg=variant)


def test_missing_onnx_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"ser_fast\[export\]"):
        export_onnx(Baseline(len(CLASSES)).eval(), tmp_path / "m.onnx")


@pytest.mark.parametrize("call, error, match", [
    pytest.param(lambda p: export_onnx(torch.nn.Linear(2, 2), p / "m.onnx"), TypeError,
                 "Baseline, DSNet, EDRLMEA or a Sparse MERIT", id="not-a-ser-model"),
    pytest.param(lambda p: export_onnx(Baseline(4).eval(), p / "m.onnx", task="se"), ValueError,
                 "'se' for Sparse MERIT only", id="cnn-se-task"),
    pytest.param(lambda p: export_onnx(Baseline(4).eval(), p / "m.onnx", task="asr"), ValueError, "task must be",
                 id="unknown-task"),
    pytest.param(lambda p: export_onnx(Baseline(4).eval(), p / "m.onnx", inputs="spectrogram"), ValueError,
                 "inputs must be", id="unknown-inputs"),
    pytest.param(lambda p: export_onnx(Baseline(4).eval(), 42), TypeError, "str or os.PathLike", id="path-type"),
    pytest.param(lambda p: export_onnx(Baseline(4).eval(), p / "m.txt"), ValueError, r"\.onnx file", id="suffix"),
    pytest.param(lambda p: export_onnx(Baseline(4).eval(), (p / "d.onnx").mkdir() or p / "d.onnx"), ValueError,
                 "is a folder", id="path-is-folder"),
    pytest.param(lambda p: export_onnx(Baseline(4).eval(), p / "m.onnx", classes=["a", "b"]), ValueError,
                 "has 4 outputs", id="class-count"),
    pytest.param(lambda p: export_onnx(Baseline(4).eval(), p / "m.onnx", classes="abcd"), TypeError,
                 "sequence of class names", id="classes-str"),
    pytest.param(lambda p: export_onnx(Baseline(4).eval(), p / "m.onnx", opset=17), ValueError, r"opset must be in 18",
                 id="opset-low"),
    pytest.param(lambda p: export_onnx(Baseline(4).eval(), p / "m.onnx", opset="18"), TypeError, "opset must be an int",
                 id="opset-str"),
    pytest.param(lambda p: export_onnx(Baseline(4).eval(), p / "m.onnx", frames=15), ValueError, "frames must be",
                 id="frames"),
    pytest.param(lambda p: export_onnx(Baseline(4).eval(), p / "m.onnx", dynamic=1), TypeError, "dynamic must be",
                 id="dynamic"),
    pytest.param(lambda p: export_run(p / "nowhere", p / "m.onnx"), ValueError, "nowhere", id="no-run"),
    pytest.param(lambda p: export_run(None, p / "m.onnx"), TypeError, "run_dir must be", id="run-dir-type"),
])
def test_bad_arguments_are_explained(tmp_path, call, error, match):
    with pytest.raises(error, match=match):
        call(tmp_path)


def test_an_unknown_fold_is_explained(edrl_run, tmp_path):
    with pytest.raises(ValueError, match=r"'nope'.* trained folds"):
        export_run(edrl_run, tmp_path / "m.onnx", fold="nope")
    with pytest.raises(ValueError, match="'other'"):
        export_run(fold_dirs(edrl_run)[0], tmp_path / "m.onnx", fold="other")
    with pytest.raises(TypeError, match="fold must be"):
        export_run(edrl_run, tmp_path / "m.onnx", fold=0)
