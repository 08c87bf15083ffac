"""silero-vad's network in PyTorch: each frame's speech probability equals silero's own sequence ONNX model (the peer,
run by onnxruntime) on speech, noise and lengths that are not a whole number of frames; a graph of another shape is
refused by name, and the VAD then falls back to silero's own model."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from corpus_fixtures import speech_with_gaps
from helpers import assert_close

from ser_fast.inference import segments
from ser_fast.inference.vad_network import SileroNetwork, UnknownSileroGraph, read_weights, sequence_model_path

pytest.importorskip("silero_vad")
pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

# silero's own ONNX model and ours differ in summation order (and an FFT for its DFT matmul): measured 4e-6.
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def silero_sequence():
    from silero_vad import load_silero_vad

    return load_silero_vad(sequence=True)


@pytest.fixture(scope="module")
def network():
    return SileroNetwork.from_wheel()


@pytest.fixture(scope="module")
def recording():
    wave, _ = speech_with_gaps(0)
    return wave + np.random.default_rng(1).normal(0, 0.003, wave.size).astype(np.float32)


@pytest.mark.parametrize("samples", [1, 511, 512, 513, 48_017, None],
                         ids=["one-sample", "frame-minus-1", "one-frame", "frame-plus-1", "3s-odd", "whole"])
def test_probabilities_equal_silero_s_own(network, silero_sequence, recording, samples):
    wave = recording[:samples]
    expected = silero_sequence.audio_forward(wave)
    actual = network.frame_probabilities(wave)
    assert actual.dtype == np.float32 and actual.shape == expected.shape == (-(-wave.size // 512),)
    assert_close(actual, expected, atol=TOLERANCE)


def test_blocks_of_the_encoder_do_not_change_the_result(network, silero_sequence, recording, monkeypatch):
    import ser_fast.inference.vad_network as vad_network

    monkeypatch.setattr(vad_network, "FRAMES_PER_BATCH", 37)
    assert_close(network.frame_probabilities(recording), silero_sequence.audio_forward(recording), atol=TOLERANCE)


def test_an_empty_recording_has_no_frames(network):
    assert network.frame_probabilities(np.zeros(0, np.float32)).shape == (0,)


def test_speech_gets_high_probabilities_and_silence_low(network):
    wave, truth = speech_with_gaps(2)
    probabilities = network.frame_probabilities(wave)
    start, end = truth[0]
    inside = probabilities[int(start * 16000 / 512) + 3:int(end * 16000 / 512) - 3]
    assert np.median(inside) > 0.8
    assert probabilities[:int(0.5 * 16000 / 512)].max() < 0.1


def _reshaped_copy(tmp_path, name: str, shape: tuple[int, ...]):
    model = onnx.load(str(sequence_model_path()))
    for item in model.graph.initializer:
        if item.name == name:
            item.CopyFrom(onnx.numpy_helper.from_array(np.zeros(shape, np.float32), name))
    path = tmp_path / "other.onnx"
    onnx.save(model, str(path))
    return path


def test_another_network_is_refused_naming_the_weight(tmp_path):
    path = _reshaped_copy(tmp_path, "encoder.0.weight", (64, 129, 3))
    with pytest.raises(UnknownSileroGraph, match=r"encoder\.0\.weight \(64, 129, 3\) \(expected \(128, 129, 3\)\)"):
        read_weights(path)


@pytest.fixture
def fresh_vad():
    """The VAD loaded afresh by the test (under its patches), and again by whatever runs after it."""
    segments.silero_vad.cache_clear()
    yield
    segments.silero_vad.cache_clear()


def assert_falls_back(caplog, silero_sequence, message: str, seed: int) -> None:
    """Loading the VAD logs ``message`` and gives silero's own probabilities."""
    with caplog.at_level(logging.WARNING, logger="ser_fast.inference.segments"):
        probabilities, _ = segments.silero_vad()
    assert message in caplog.text
    wave, _ = speech_with_gaps(seed)
    assert_close(probabilities(wave), silero_sequence.audio_forward(wave), atol=0.0)


def test_a_port_that_disagrees_on_the_probe_is_not_used(monkeypatch, caplog, silero_sequence, fresh_vad):
    def off_by_a_little(self, wave):
        return silero_sequence.audio_forward(wave) + 0.01

    monkeypatch.setattr(segments.SileroNetwork, "frame_probabilities", off_by_a_little)
    assert_falls_back(caplog, silero_sequence, "differ from silero's own by 0.01 on a probe", seed=0)


def test_a_two_dimensional_wave_is_refused(network):
    with pytest.raises(ValueError, match=r"mono \[samples\]"):
        network.frame_probabilities(np.zeros((2, 512), np.float32))


def test_the_vad_falls_back_to_silero_s_own_model(tmp_path, monkeypatch, caplog, silero_sequence, fresh_vad):
    path = _reshaped_copy(tmp_path, "encoder.0.weight", (64, 129, 3))
    monkeypatch.setattr(segments.SileroNetwork, "from_wheel", classmethod(lambda cls: cls(read_weights(path))))
    assert_falls_back(caplog, silero_sequence, "silero-vad's own ONNX model", seed=1)
