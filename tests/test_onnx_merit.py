"""Sparse MERIT's ONNX graphs: the SER graph's probabilities equal the recognizer's, the SE graph's samples equal
``enhance``'s, in onnxruntime, on padded batches of odd lengths, for the sparse design and the SE pre-processing
cascade, and from the CLI."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import onnxruntime as ort
import pytest
import soundfile as sf
import torch
from helpers import assert_close, speech_like

from ser_fast.cli import main
from ser_fast.inference.onnx_export import export_run, read_metadata
from ser_fast.inference.onnx_quantize import quantize_waveform_model
from ser_fast.inference.recognizer import EmotionRecognizer
from ser_fast.models.merit.model import MeritConfig
from ser_fast.models.merit.se_head import Spectrogram
from ser_fast.ops.export import onnx_program
from ser_fast.runs.calibration import Calibration, write_calibration
from ser_fast.runs.config import MeritTrainConfig
from ser_fast.runs.registry import model_kind
from ser_fast.runs.saved import save_model

CLASSES = ("angry", "happy", "neutral", "sad")
TEMPERATURE = 1.6
# Odd lengths, the shortest the SSL model's receptive field (400 samples), padded to the longest.
LENGTHS = (27001, 401, 12345)
# The cascade classifies its own enhanced samples, whose float32 DFT rounding its second SSL model carries on (3.7e-5
# measured; the sparse design is within 2e-7).
PROBABILITY_ATOL = 1e-4
# Enhanced samples are in [-1, 1]; float32 DFTs of 400 points differ at this level.
SAMPLE_ATOL = 5e-5
SMALL = {"expert_hidden": 64, "expert_dim": 32, "ser_hidden": 32, "se_hidden": 32}


def saved_merit(folder, design: str, seed: int, backbone: str = "default"):
    """A Sparse MERIT model folder (untrained weights, seeded) with a fitted temperature."""
    config = MeritTrainConfig(network=MeritConfig(design=design, backbone=backbone, **SMALL), max_seconds=1.5)
    torch.manual_seed(seed)
    model = model_kind("merit").build(config, len(CLASSES)).eval()
    save_model(folder, model, config, CLASSES)
    write_calibration(folder, Calibration(TEMPERATURE, True, 40))
    return folder, model


def padded_batch() -> tuple[np.ndarray, np.ndarray]:
    batch = np.zeros((len(LENGTHS), max(LENGTHS)), np.float32)
    for i, n in enumerate(LENGTHS):
        batch[i, :n] = speech_like(n, 16000, i).astype(np.float32) / 32768
    return batch, np.array(LENGTHS, np.int64)


def session(path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """``{design: (folder, model)}``, saved once per module: the sparse design on the built-in log-Mel backbone, the
    cascade on a tiny Hugging Face WavLM folder (its waveform CNN: the pretrained backbones' front-end)."""
    root = tmp_path_factory.mktemp("merit")
    return {"sparse": saved_merit(root / "sparse", "sparse", seed=3),
            "se-preprocess": saved_merit(root / "se-preprocess", "se-preprocess", seed=3,
                                         backbone=str(tiny_wavlm(root / "wavlm")))}


def tiny_wavlm(folder):
    """A 2-layer WavLM (hidden 32) with a 4-layer CNN of total stride 320 (20 ms frames), saved as a local folder."""
    transformers = pytest.importorskip("transformers")
    config = transformers.WavLMConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                      conv_dim=(16, 16, 16, 16), conv_kernel=(10, 4, 4, 4), conv_stride=(5, 4, 4, 4),
                                      num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                                      feat_extract_norm="layer", do_stable_layer_norm=True)
    torch.manual_seed(5)
    transformers.WavLMModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def exported(models, tmp_path_factory):
    """``exported(design, task)``: the ONNX file of that graph, exported once per module (20-40 s each); the SE graph
    through the CLI, whose printed line is kept in ``exported.printed``."""
    root, paths = tmp_path_factory.mktemp("merit-onnx"), {}

    def get(design: str, task: str):
        if (design, task) not in paths:
            path = root / f"{design}-{task}.onnx"
            if task == "se":
                output = io.StringIO()
                with contextlib.redirect_stdout(output):
                    assert main(["export", "--run", str(models[design][0]), "--out", str(path), "--task", "se"]) == 0
                get.printed = output.getvalue()
            else:
                export_run(models[design][0], path, task=task)
            paths[design, task] = path
        return paths[design, task]

    return get


# The cascade's SE graph is the sparse design's SE path with another SSL model: its SER graph covers the cascade.
@pytest.mark.parametrize("design, task", [("sparse", "ser"), ("sparse", "se"), ("se-preprocess", "ser")],
                         ids=["sparse-ser", "sparse-se", "se-preprocess-ser"])
def test_onnxruntime_matches_the_model_on_a_padded_batch(models, exported, design, task):
    model = models[design][1]
    path = exported(design, task)
    waves, lengths = padded_batch()
    got = session(path).run(None, {"waveform": waves, "lengths": lengths})[0]
    x, n = torch.from_numpy(waves), torch.from_numpy(lengths)
    with torch.no_grad():
        if task == "ser":
            logits, _ = model.head(model.encode(x, n))
            expected = torch.softmax(logits / TEMPERATURE, dim=1).numpy()
        else:
            expected = (model.enhance(x, n) * (torch.arange(x.shape[1])[None, :] < n[:, None])).numpy()
    assert got.shape == expected.shape == ((len(LENGTHS), len(CLASSES)) if task == "ser" else waves.shape)
    assert_close(got, expected, atol=PROBABILITY_ATOL if task == "ser" else SAMPLE_ATOL, msg=f"{design} {task}")
    if task == "se":
        assert all(not got[i, n:].any() for i, n in enumerate(LENGTHS)), "samples past an item's length are zero"
        assert np.abs(got).max() > 1e-3
    metadata = read_metadata(path)
    assert metadata["model"] == "merit" and metadata["task"] == task and metadata["classes"] == list(CLASSES)
    assert metadata["temperature"] == pytest.approx(TEMPERATURE) and metadata["input"] == "waveform"
    assert [o.name for o in session(path).get_outputs()] == [list(metadata["outputs"])[0]]


def test_the_ser_graph_gives_the_recognizers_probabilities(models, exported, tmp_path):
    folder = models["sparse"][0]
    wave = speech_like(19999, 16000, 7).astype(np.float32) / 32768
    sf.write(tmp_path / "a.wav", wave, 16000, subtype="FLOAT")
    recognizer = EmotionRecognizer.from_pretrained(folder, precision="fp32")
    expected = recognizer.predict([tmp_path / "a.wav"])[0].probabilities
    feeds = {"waveform": wave[None], "lengths": np.array([wave.size], np.int64)}
    got = session(exported("sparse", "ser")).run(None, feeds)[0][0]
    assert_close(got, np.array([expected[c] for c in CLASSES]), atol=PROBABILITY_ATOL)


def test_cli_writes_the_enhancement_graph_and_refuses_int8_for_it(models, exported, tmp_path, capsys):
    folder, model = models["sparse"]
    path = exported("sparse", "se")
    assert "enhancement graph" in exported.printed
    wave = speech_like(8001, 16000, 2).astype(np.float32)[None] / 32768
    got = session(path).run(None, {"waveform": wave, "lengths": np.array([8001])})[0]
    assert_close(got, model.enhance(torch.from_numpy(wave)).numpy(), atol=SAMPLE_ATOL, msg="one unpadded item")
    assert main(["export", "--run", str(folder), "--out", str(tmp_path / "q.onnx"), "--int8", "--calibration",
                 str(tmp_path), "--task", "se"]) != 0
    assert "--task se" in capsys.readouterr().err
    assert main(["export", "--run", str(folder), "--out", str(tmp_path / "q.onnx"), "--int8", "--calibration",
                 str(tmp_path / "nowhere")]) != 0
    assert "stays float32" in capsys.readouterr().err, "refused by kind, before the calibration audio is read"
    with pytest.raises(ValueError, match="stays float32"):
        quantize_waveform_model(path, tmp_path / "q.onnx", [wave[0]])


def test_an_item_shorter_than_the_receptive_field_is_enhanced_within_its_length(exported):
    """The network sees 400 samples (zeros past the item), the output is zero past the item's 250."""
    waves, _ = padded_batch()
    got = session(exported("sparse", "se")).run(None, {"waveform": waves[:2], "lengths": np.array([27001, 250])})[0]
    assert not got[1, 250:].any() and np.abs(got[1, :250]).max() > 0


class _RoundTrip(torch.nn.Module):
    """The spectrogram of a wave, then its inverse from the magnitude and phase: what the SE graph's end runs."""

    def __init__(self, spectrogram) -> None:
        super().__init__()
        self.spectrogram = spectrogram

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        spec = self.spectrogram(wave)
        return self.spectrogram.inverse(0.5 * spec.abs(), spec, wave.shape[1])


@pytest.mark.parametrize("n_fft, win_length, hop", [(400, 400, 160), (512, 401, 128)],
                         ids=["merit-stft", "odd-shorter-window"])
def test_the_exported_inverse_stft_equals_torch_istft(n_fft, win_length, hop):
    module = _RoundTrip(Spectrogram(n_fft, win_length, hop)).eval()
    samples = torch.export.Dim("samples", min=n_fft)
    program = onnx_program(module, (torch.randn(2, 4000),), dynamic_shapes={"wave": {0: torch.export.Dim("batch"),
                           1: samples}}, input_names=["wave"], output_names=["out"], external_data=False,
                           verbose=False)
    wave = torch.randn(3, 5001)
    got = ort.InferenceSession(program.model_proto.SerializeToString()).run(None, {"wave": wave.numpy()})[0]
    with torch.no_grad():
        # Unit-variance noise; onnxruntime's STFT and the graph's float32 DFTs round otherwise than torch's FFT.
        assert_close(got, module(wave).numpy(), atol=1e-4)


@pytest.mark.parametrize("inputs", ["features"], ids=["features-in"])
def test_merit_exports_from_samples_only(tmp_path, inputs):
    folder, _ = saved_merit(tmp_path / "fold", "sparse", seed=5)
    with pytest.raises(ValueError, match="samples only"):
        export_run(folder, tmp_path / "m.onnx", inputs=inputs)
