"""Long files read window by window (``ser_fast.inference.streaming``): the same windows as decoding
the file whole, for any length and rate; the recognizer and the batch job give the same rows either
way and never decode a long file whole; bad samples and silence are still errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
from corpus_fixtures import train_tiny_baseline
from helpers import assert_close, speech_like

import ser_fast.inference.streaming as streaming
from ser_fast.data.audio import AudioError
from ser_fast.inference.predict_job import run_predict
from ser_fast.inference.recognizer import EmotionRecognizer, window_ranges
from ser_fast.inference.streaming import WindowStream
from ser_fast.inference.writers import read_rows

pytestmark = pytest.mark.usefixtures("one_thread")


def write(path: Path, seconds: float, rate: int, channels: int = 1, seed: int = 0) -> Path:
    mono = speech_like(round(seconds * rate), rate, seed) / 32768.0
    sf.write(str(path), np.stack([mono * (1 - 0.3 * c) for c in range(channels)], axis=1), rate, subtype="FLOAT")
    return path


def whole(path: Path) -> np.ndarray:
    samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    mono = samples.mean(axis=1, dtype=np.float32)
    return mono if rate == 16000 else soxr.resample(mono, rate, 16000, quality="HQ").astype(np.float32)


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 0.37 s, so that a few seconds of audio cross many block boundaries."""
    monkeypatch.setattr(streaming, "BLOCK_SECONDS", 0.37)


@pytest.mark.parametrize("seconds", [0.2, 1.0, 2.0, 3.3717], ids=lambda s: f"{s}s")
@pytest.mark.parametrize("window, hop", [(8000, 4000), (8000, 8000), (4001, 1733), (16000, 1)],
                         ids=["half-hop", "no-overlap", "odd", "hop-1"])
def test_16khz_windows_are_the_whole_files_windows(tmp_path, small_blocks, seconds, window, hop):
    path = write(tmp_path / "a.wav", seconds, 16000)
    reference = whole(path)
    stream = WindowStream(path, window, hop, 16000)
    got = list(stream)
    assert [(s, s + len(w)) for s, w in got] == window_ranges(len(reference), window, hop)
    for start, samples in got:
        assert np.array_equal(samples, reference[start:start + len(samples)])
    assert stream.num_samples == len(reference)


@pytest.mark.parametrize("rate, channels", [(44100, 2), (8000, 1), (22050, 3)], ids=["44k-stereo", "8k", "22k-3ch"])
def test_resampled_windows_match_the_whole_file_to_resampler_precision(tmp_path, small_blocks, rate, channels):
    path = write(tmp_path / "b.wav", 3.1, rate, channels)
    reference = whole(path)
    got = list(WindowStream(path, 8000, 4000, 16000))
    assert abs(WindowStream(path, 8000, 4000, 16000).info.frames * 16000 / rate - len(reference)) <= 1
    assert [(s, s + len(w)) for s, w in got] == window_ranges(len(reference), 8000, 4000)
    for start, samples in got:
        assert_close(samples, reference[start:start + len(samples)], atol=2e-5, msg=f"window at {start}")


def test_non_finite_samples_are_an_error_naming_the_file(tmp_path):
    path = tmp_path / "nan.wav"
    sf.write(str(path), np.r_[np.zeros(100000, np.float32), np.nan, np.zeros(10, np.float32)], 16000,
             subtype="FLOAT")
    with pytest.raises(AudioError, match=r"nan.wav: the audio holds NaN"):
        list(WindowStream(path, 8000, 4000, 16000))


@pytest.fixture(scope="module")
def recognizer(tmp_path_factory) -> EmotionRecognizer:
    run = train_tiny_baseline(tmp_path_factory.mktemp("streaming"), seed=8)
    return EmotionRecognizer.from_pretrained(run, precision="fp32")


@pytest.fixture
def long_files(tmp_path) -> list[Path]:
    return [write(tmp_path / "long16k.wav", 4.3, 16000, seed=1), write(tmp_path / "long44k.wav", 3.9, 44100, 2, 2),
            write(tmp_path / "short.wav", 0.3, 16000, seed=3)]


def stream_everything_over(monkeypatch, seconds: float) -> None:
    monkeypatch.setattr(streaming, "MAX_DECODE_SECONDS", seconds)
    monkeypatch.setattr(streaming, "BLOCK_SECONDS", 0.41)


def test_the_recognizer_streams_long_files_to_the_same_predictions(recognizer, long_files, monkeypatch):
    expected = recognizer.predict([str(p) for p in long_files], batch_size=3)
    stream_everything_over(monkeypatch, 1.0)
    import ser_fast.inference.decoding as module

    decoded_whole = []
    real = module.read_audio
    monkeypatch.setattr(module, "read_audio", lambda path, rate: decoded_whole.append(path) or real(path, rate))
    got = recognizer.predict([str(p) for p in long_files], batch_size=3, return_embedding=True)
    assert decoded_whole == [str(long_files[2])], "only the short file may be decoded whole"
    for g, e in zip(got, expected):
        assert (g.label, g.error, g.warning) == (e.label, e.error, e.warning)
        windows = [[(w.start_s, w.end_s, w.label) for w in p.timeline] for p in (g, e)]
        assert windows[0] == windows[1], g.source
        assert g.duration_s == pytest.approx(e.duration_s, abs=1 / 16000)
        atol = 1e-5 if "44k" not in g.source else 1e-3  # streamed resampling differs in the last bits
        assert_close(np.array(list(g.probabilities.values())), np.array(list(e.probabilities.values())), atol=atol,
                     msg=g.source)
        assert g.embedding is not None


def test_silence_streamed_is_an_error(recognizer, tmp_path, monkeypatch):
    stream_everything_over(monkeypatch, 1.0)
    path = tmp_path / "silence.wav"
    sf.write(str(path), np.zeros(48000), 16000, subtype="PCM_16")
    (prediction,) = recognizer.predict([str(path)])
    assert prediction.label is None and "silent" in prediction.error


@pytest.mark.parametrize("workers", [0, 1], ids=lambda w: f"workers{w}")
def test_the_batch_job_streams_long_files_to_the_same_rows(recognizer, long_files, tmp_path, monkeypatch, workers):
    run_predict(recognizer, [str(p) for p in long_files], tmp_path / "whole.jsonl", batch_size=3, progress=False)
    stream_everything_over(monkeypatch, 1.0)
    run_predict(recognizer, [str(p) for p in long_files], tmp_path / "streamed.jsonl", batch_size=3, progress=False,
                workers=workers)
    got, want = read_rows(tmp_path / "streamed.jsonl"), read_rows(tmp_path / "whole.jsonl")
    assert [(r["source"], r["label"], r["windows"]) for r in got] == [
        (r["source"], r["label"], r["windows"]) for r in want]
