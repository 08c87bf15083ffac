"""The waveform-in ONNX graph: its front-end's log-Mel equals ``ser_fast.fbank`` where a band carries signal, its
probabilities equal the recognizer's on a trained run (odd lengths, a padded batch, calibrated), the CLI writes it by
default, and the README's example runs it in a virtual environment without PyTorch."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import soundfile as sf
import torch
from helpers import assert_close, speech_like

from ser_fast.cli import main
from ser_fast.data.loaders import load_corpus
from ser_fast.data.synthetic import synthesize_corpus
from ser_fast.frontend import fbank
from ser_fast.frontend.constants import INT16_SCALE
from ser_fast.frontend.graph import LogMelGraph
from ser_fast.frontend.options import FbankOptions
from ser_fast.inference.onnx_export import export_run, read_metadata
from ser_fast.inference.recognizer import EmotionRecognizer
from ser_fast.ops.export import onnx_program
from ser_fast.runs.calibration import Calibration, write_calibration
from ser_fast.runs.config import TrainConfig
from ser_fast.training.run import train_run

REPO = Path(__file__).resolve().parents[1]
# Odd lengths: one frame exactly, one sample more, fewer frames than the encoder's 16, a few seconds.
LENGTHS = (400, 401, 2799, 16001, 37123)
BAND_RANGE_DB = 80.0
FEATURE_ATOL = 1e-3
PROBABILITY_ATOL = 2e-5


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _batch(lengths) -> tuple[np.ndarray, np.ndarray]:
    """Speech-like waves of ``lengths`` samples, zero-padded to the longest: ``[B, S]`` and the lengths."""
    waves = [speech_like(n, 16000, seed).astype(np.float32) / 32768 for seed, n in enumerate(lengths)]
    batch = np.zeros((len(waves), max(lengths)), np.float32)
    for i, wave in enumerate(waves):
        batch[i, :len(wave)] = wave
    return batch, np.array(lengths, dtype=np.int64)


class _LogMelOnly(torch.nn.Module):
    def __init__(self, snip_edges: bool) -> None:
        super().__init__()
        self.frontend = LogMelGraph(FbankOptions(snip_edges=snip_edges))

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.frontend.log_mel(waveform, lengths)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    return tmp_path_factory.mktemp("onnx-waveform")


@pytest.fixture(scope="module")
def run_dir(workspace) -> Path:
    corpus = load_corpus("iemocap", synthesize_corpus(workspace / "corpus", speakers=4, per_class=2, seed=5))
    config = TrainConfig(model="dsnet", epochs=1, batch_size=8, max_frames=48, precision="fp32")
    train_run(corpus, workspace / "run", config, folds=[0])
    fold = workspace / "run" / "folds" / json.loads((workspace / "run" / "run.json").read_text())["folds"][0]
    write_calibration(fold, Calibration(1.7, True, 40))  # a temperature the graph must apply
    return workspace / "run"


@pytest.fixture(scope="module")
def exported(run_dir, workspace) -> Path:
    return export_run(run_dir, workspace / "dsnet.onnx", inputs="waveform")


@pytest.mark.parametrize("snip_edges", [True, False], ids=["snip-edges", "centred-frames"])
@pytest.mark.parametrize("length", LENGTHS, ids=lambda n: f"{n}-samples")
def test_the_graphs_log_mel_equals_fbank_on_bands_with_signal(workspace, length, snip_edges):
    """A padded batch of two: each item's frames (reflected at its own ends without snip_edges) equal fbank's."""
    path = workspace / f"log_mel_{snip_edges}.onnx"
    if not path.exists():
        example = (torch.zeros(2, 16000), torch.tensor([16000, 9000]))
        batch_dim, samples = torch.export.Dim("batch", min=1), torch.export.Dim("samples", min=400)
        program = onnx_program(_LogMelOnly(snip_edges).eval(), example, dynamic_shapes={
            "waveform": {0: batch_dim, 1: samples}, "lengths": {0: batch_dim}}, input_names=["waveform", "lengths"],
            output_names=["log_mel"], external_data=False, verbose=False)
        program.save(str(path))
    lengths = [length, max(400, length * 2 // 3 + 1)]
    batch, lens = _batch(lengths)
    got = _session(path).run(None, {"waveform": batch, "lengths": lens})[0]
    expected, frames = fbank(torch.from_numpy(batch) * INT16_SCALE, lengths=torch.from_numpy(lens), num_mel_bins=80,
                             snip_edges=snip_edges)
    expected_frames = [(n - 400) // 160 + 1 if snip_edges else (n + 80) // 160 for n in lengths]
    assert frames.tolist() == expected_frames and got.shape[1] == expected_frames[0]
    for item, count in enumerate(expected_frames):
        want, have = expected.numpy()[item, :count], got[item, :count]
        # log-Mel in nats: a band 80 dB below its frame's loudest lies ln(1e8) = 18.4 below it.
        near = want >= want.max(axis=1, keepdims=True) - BAND_RANGE_DB * np.log(10) / 10
        assert near.mean() > 0.9
        assert_close(have[near], want[near], atol=FEATURE_ATOL, msg=f"item {item}: log-Mel on bands within 80 dB")


@pytest.mark.parametrize("lengths", [LENGTHS, (16001,), (401, 401)], ids=["odd-padded-batch", "one", "two-short"])
def test_the_waveform_graph_gives_the_recognizers_calibrated_probabilities(run_dir, exported, lengths):
    recognizer = EmotionRecognizer.from_pretrained(run_dir, precision="fp32")
    assert recognizer.calibration.temperature == 1.7
    batch, lens = _batch(lengths)
    got = _session(exported).run(None, {"waveform": batch, "lengths": lens})[0]
    waves = [batch[i, :n] for i, n in enumerate(lens)]
    expected = [recognizer.predict(wave, sample_rate=16000, window_s=10.0)[0] for wave in waves]
    for row, prediction in zip(got, expected):
        assert_close(row, np.array([prediction.probabilities[c] for c in recognizer.classes]),
                     atol=PROBABILITY_ATOL, msg=f"{len(waves)} waves")
    assert read_metadata(exported)["input"] == "waveform" and read_metadata(exported)["temperature"] == 1.7


def test_the_cli_writes_the_waveform_graph_by_default(run_dir, workspace, capsys):
    out = workspace / "cli.onnx"
    assert main(["export", "--run", str(run_dir), "--out", str(out)]) == 0
    assert "(waveform in; out: neutral, happy, sad, angry: calibrated probabilities, temperature 1.7)" in \
        capsys.readouterr().out
    names = [i.name for i in _session(out).get_inputs()]
    assert names == ["waveform", "lengths"]


def _torch_free_python(folder: Path) -> Path:
    """A virtual environment holding only onnxruntime, numpy and soundfile (and what they import), linked from this
    one's site-packages: no network, and no torch."""
    venv.EnvBuilder(with_pip=False).create(folder)
    site = next(folder.glob("lib/python3*/site-packages"))
    here = Path(np.__file__).parents[1]
    wanted = ("onnxruntime", "numpy", "numpy.libs", "soundfile.py", "_soundfile.py", "_soundfile_data", "cffi",
              "_cffi_backend*", "pycparser", "flatbuffers", "google", "packaging", "typing_extensions.py",
              "sympy", "mpmath", "coloredlogs", "humanfriendly")
    for pattern in wanted:
        for entry in here.glob(pattern):
            (site / entry.name).symlink_to(entry)
    return next(p for p in (folder / "bin" / "python", folder / "Scripts" / "python.exe") if p.exists())


def test_the_readme_example_runs_without_torch(run_dir, exported, workspace):
    readme = (REPO / "README.md").read_text()
    code = re.search(r"<!-- onnx-example -->\n```python\n(.*?)```", readme, re.S).group(1)
    folder = workspace / "example"
    folder.mkdir()
    shutil.copy(exported, folder / "model.onnx")
    (folder / "example.py").write_text(code)
    wave = speech_like(24000, 16000, 9).astype(np.float32) / 32768
    sf.write(folder / "speech.wav", wave, 16000, subtype="FLOAT")
    python = _torch_free_python(workspace / "venv")
    no_torch = subprocess.run([str(python), "-c", "import torch"], capture_output=True, text=True)
    assert no_torch.returncode != 0 and "No module named 'torch'" in no_torch.stderr
    result = subprocess.run([str(python), "example.py", "speech.wav"], cwd=folder, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    label = EmotionRecognizer.from_pretrained(run_dir, precision="fp32").predict(wave, sample_rate=16000,
                                                                                 window_s=10.0)[0].label
    assert result.stdout.split()[0] == label
    rate = subprocess.run([str(python), "example.py", str(REPO / "tests" / "missing.wav")], cwd=folder,
                          capture_output=True, text=True, timeout=120)
    assert rate.returncode != 0
    if sys.platform.startswith("linux"):
        assert "Error" in rate.stderr or "No such file" in rate.stderr
