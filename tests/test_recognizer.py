"""EmotionRecognizer end to end, on tiny trained runs of every model kind (Baseline, DSNet, EDRL-MEA,
Sparse MERIT; trained once per module): every input kind and sample rate, every bad input, bad
arguments, the fast graph against the plain model and against the evaluation path, bucketed
batches against one at a time, long-audio timelines, embeddings, and the model folders it loads."""

from __future__ import annotations

import dataclasses
import json
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
from corpus_fixtures import write_odd_wav
from helpers import assert_close

from ser_fast.data.features import extract_features
from ser_fast.data.loaders import load_corpus
from ser_fast.data.protocols import loso_folds
from ser_fast.data.synthetic import synthesize_corpus
from ser_fast.evaluation.evaluate import predict_rows
from ser_fast.inference.recognizer import EmotionRecognizer, Prediction, decode_audio
from ser_fast.models.merit import MeritConfig
from ser_fast.runs.config import MeritTrainConfig, TrainConfig
from ser_fast.runs.model_files import ModelFileError
from ser_fast.runs.saved import load_model
from ser_fast.training.merit_task import train_merit_fold
from ser_fast.training.run import train_run

pytestmark = pytest.mark.usefixtures("one_thread", "quiet_hf_mask_warning")

CNN_KINDS = ("baseline", "dsnet", "edrl-mea")
KINDS = (*CNN_KINDS, "merit")
SETTINGS = {"baseline": {}, "dsnet": {}, "edrl-mea": {"n_components": 4}}
SMALL_MERIT = {"expert_hidden": 32, "expert_dim": 24, "ser_hidden": 16, "se_hidden": 16}
# Folding BatchNorm into the convs reorders float32 arithmetic: probabilities of the fast graph and
# the plain model differ by about 1e-7; 1e-5 leaves a wide margin. The same bound covers a padded
# batch against one utterance at a time (the encoder masks padding exactly, up to rounding).
PROBABILITY_ATOL = 1e-5
WHOLE = 10.0  # seconds: a window longer than any synthetic utterance, so each is one window, whole


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("recognizer")


@pytest.fixture(scope="module")
def corpus(workspace):
    return load_corpus("iemocap", synthesize_corpus(workspace / "corpus", speakers=4, per_class=2, seed=3))


@pytest.fixture(scope="module")
def table(corpus):
    return extract_features(corpus.utterances, corpus.classes)


@pytest.fixture(scope="module")
def runs(workspace, corpus, table) -> dict[str, Path]:
    for kind in CNN_KINDS:
        config = TrainConfig(model=kind, epochs=1, max_frames=32, precision="fp32", **SETTINGS[kind])
        train_run(corpus, workspace / kind, config, folds=[0, 1] if kind == "baseline" else [0], table=table)
    # A MERIT fold on a few utterances: its SSL model makes each one cost far more than the CNNs'.
    merit = MeritTrainConfig(network=MeritConfig(**SMALL_MERIT), epochs=1, batch_size=4, accumulate=1,
                             max_seconds=0.8, seed=2)
    fold = loso_folds(corpus)[0]
    train_merit_fold(fold.train[:8], fold.validation[:2], corpus.classes, merit, workspace / "merit")
    return {kind: workspace / kind for kind in KINDS}


@pytest.fixture(scope="module")
def recognizers(runs) -> dict[str, EmotionRecognizer]:
    """fp32 explicitly: on a CPU with AMX, "auto" would pick bf16 and the exact comparisons below
    would compare bf16 with fp32."""
    return {kind: EmotionRecognizer.from_pretrained(runs[kind], precision="fp32") for kind in KINDS}


@pytest.fixture(scope="module")
def paths(corpus) -> list[Path]:
    return [u.path for u in corpus.utterances]


@pytest.fixture(scope="module")
def clip(workspace, paths) -> tuple[Path, np.ndarray]:
    """0.7 s of a synthetic utterance as a 16-bit wav, and its samples as soundfile reads them."""
    path = workspace / "clip.wav"
    sf.write(str(path), read_mono(paths[5])[4000:15200], 16000, subtype="PCM_16")
    return path, read_mono(path)


def probabilities(predictions: list[Prediction], classes) -> np.ndarray:
    return np.array([[p.probabilities[c] for c in classes] for p in predictions])


def same_predictions(actual: list[Prediction], expected: list[Prediction], classes, msg: str,
                     atol: float = PROBABILITY_ATOL) -> None:
    assert [p.error for p in actual] == [p.error for p in expected], msg
    assert [p.label for p in actual] == [p.label for p in expected], msg
    kept = [i for i, p in enumerate(expected) if p.error is None]
    assert_close(probabilities([actual[i] for i in kept], classes),
                 probabilities([expected[i] for i in kept], classes), atol=atol, msg=msg)


def read_mono(path: Path) -> np.ndarray:
    return sf.read(str(path), dtype="float32")[0]


INPUT_KINDS = {
    "str": lambda path, wave: str(path),
    "Path": lambda path, wave: path,
    "numpy-float32": lambda path, wave: wave,
    "numpy-float64": lambda path, wave: wave.astype(np.float64),
    "numpy-int16": lambda path, wave: sf.read(str(path), dtype="int16")[0],
    "numpy-samples-x-2": lambda path, wave: np.stack([wave, wave], axis=1),
    "numpy-2-x-samples": lambda path, wave: np.stack([wave, wave]),
    "torch-1d": lambda path, wave: torch.from_numpy(wave),
    "torch-3-x-samples": lambda path, wave: torch.from_numpy(np.stack([wave, wave, wave])),
}


@pytest.mark.parametrize("kind", list(INPUT_KINDS))
def test_every_input_kind_gives_the_files_prediction(recognizers, clip, kind):
    recognizer = recognizers["baseline"]
    path, wave = clip
    expected = recognizer.predict(str(path), window_s=WHOLE)[0]
    item = INPUT_KINDS[kind](path, wave)
    (actual,) = recognizer.predict(item, sample_rate=16000, window_s=WHOLE)
    assert actual.error is None and actual.label == expected.label
    assert actual.duration_s == pytest.approx(expected.duration_s)
    same_predictions([actual], [expected], recognizer.classes, msg=kind, atol=1e-6)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_any_sample_rate_is_resampled_to_16_khz(recognizers, clip, tmp_path, rate):
    recognizer = recognizers["dsnet"]
    original = clip[1]
    at_rate = soxr.resample(original, 16000, rate, quality="HQ").astype(np.float32)
    (actual,) = recognizer.predict(at_rate, sample_rate=rate, window_s=WHOLE)
    back_at_16k = soxr.resample(at_rate, rate, 16000, quality="HQ").astype(np.float32)
    (expected,) = recognizer.predict(back_at_16k, sample_rate=16000, window_s=WHOLE)
    same_predictions([actual], [expected], recognizer.classes, msg=f"{rate} Hz array", atol=1e-6)
    assert actual.duration_s == pytest.approx(len(at_rate) / rate)
    sf.write(str(tmp_path / "x.wav"), at_rate, rate, subtype="FLOAT")
    (from_file,) = recognizer.predict(tmp_path / "x.wav", window_s=WHOLE)
    same_predictions([from_file], [expected], recognizer.classes, msg=f"{rate} Hz file", atol=1e-6)


def test_a_mixed_list_keeps_its_order_and_names_arrays_by_their_place_among_arrays(recognizers, paths):
    recognizer = recognizers["baseline"]
    inputs = [str(paths[0]), read_mono(paths[1]), paths[2], torch.from_numpy(read_mono(paths[3]))]
    predictions = recognizer.predict(inputs, sample_rate=16000, window_s=WHOLE)
    assert [p.source for p in predictions] == [str(paths[0]), "<array 0>", str(paths[2]), "<array 1>"]
    one_by_one = [recognizer.predict(x, sample_rate=16000, window_s=WHOLE)[0] for x in inputs]
    same_predictions(predictions, one_by_one, recognizer.classes, msg="mixed list")


def _garbage(path: Path) -> Path:
    path.write_bytes(np.random.default_rng(0).bytes(3000))
    return path


def _wav(path: Path, samples: np.ndarray, subtype: str = "PCM_16") -> Path:
    sf.write(str(path), samples, 16000, subtype=subtype)
    return path


def _with_nan(n: int) -> np.ndarray:
    wave = 0.1 * np.random.default_rng(1).standard_normal(n).astype(np.float32)
    wave[n // 2] = np.nan
    return wave


BAD_INPUTS = {
    "nonexistent": (lambda d: d / "missing.wav", "no such audio file"),
    "garbage-bytes": (lambda d: _garbage(d / "garbage.wav"), "not a readable audio file"),
    "truncated-header": (lambda d: write_odd_wav(d / "truncated.wav", "truncated"), "not a readable audio file"),
    "zero-byte-file": (lambda d: write_odd_wav(d / "empty.wav", "empty"), "not a readable audio file"),
    "zero-frames": (lambda d: _wav(d / "zero.wav", np.zeros(0)), "holds no audio samples"),
    "silent-file": (lambda d: _wav(d / "silent.wav", np.zeros(16000)), r"silent \(all samples are zero"),
    "too-short-file": (lambda d: _wav(d / "short.wav", 0.1 * np.ones(300)), r"too short \(300 samples"),
    "nan-file": (lambda d: _wav(d / "nan.wav", _with_nan(8000), "FLOAT"), "NaN or infinite"),
    "empty-array": (lambda d: np.zeros(0, np.float32), r"empty \(no samples\)"),
    "empty-stereo-array": (lambda d: np.zeros((0, 2), np.float32), r"empty \(no samples\)"),
    "silent-array": (lambda d: np.zeros(16000, np.float32), "silent"),
    "quiet-array": (lambda d: np.full(16000, 1e-5, np.float32), r"silent \(peak -100.0 dBFS"),
    "too-short-array": (lambda d: 0.1 * np.ones(399, np.float32), r"too short \(399 samples"),
    "nan-array": (lambda d: _with_nan(8000), "NaN or infinite"),
    "inf-tensor": (lambda d: torch.full((8000,), float("inf")), "NaN or infinite"),
}


@pytest.fixture(scope="module")
def good_predictions(recognizers, clip) -> dict[str, list[Prediction]]:
    good = [str(clip[0]), clip[1][:9000]]
    return {kind: recognizer.predict(good, sample_rate=16000) for kind, recognizer in recognizers.items()}


@pytest.mark.parametrize("kind", ["baseline", "merit"])  # the CNN path and the waveform path
@pytest.mark.parametrize("bad", list(BAD_INPUTS))
def test_a_bad_input_gets_an_error_and_the_others_go_on(recognizers, clip, good_predictions, tmp_path, kind, bad):
    recognizer = recognizers[kind]
    make, pattern = BAD_INPUTS[bad]
    predictions = recognizer.predict([str(clip[0]), make(tmp_path), clip[1][:9000]], sample_rate=16000)
    assert len(predictions) == 3
    failed = predictions[1]
    assert failed.error is not None and failed.label is None and failed.probabilities == {}
    assert re.search(pattern, failed.error), failed.error
    assert failed.source in failed.error
    same_predictions([predictions[0], predictions[2]], good_predictions[kind], recognizer.classes,
                     msg=f"good inputs beside {bad}")


@pytest.mark.parametrize("call, error, pattern", [
    pytest.param(lambda r, p: r.predict(p, batch_size=0), ValueError, "batch_size must be a positive int",
                 id="batch-size-0"),
    pytest.param(lambda r, p: r.predict(p, batch_size=2.5), ValueError, "batch_size", id="batch-size-float"),
    pytest.param(lambda r, p: r.predict(p, window_s=0), ValueError, "window_s must be a positive", id="window-0"),
    pytest.param(lambda r, p: r.predict(p, window_s=float("nan")), ValueError, "window_s", id="window-nan"),
    pytest.param(lambda r, p: r.predict(p, window_s=0.01), ValueError, "at least 0.025 s", id="window-too-short"),
    pytest.param(lambda r, p: r.predict(p, hop_s=-1), ValueError, "hop_s must be a positive", id="hop-negative"),
    pytest.param(lambda r, p: r.predict(p, window_s=1, hop_s=2), ValueError, "must not exceed window_s",
                 id="hop-over-window"),
    pytest.param(lambda r, p: r.predict(42), TypeError, "inputs must be a path", id="inputs-int"),
    pytest.param(lambda r, p: r.predict({"a": p}), TypeError, "inputs must be a path", id="inputs-dict"),
    pytest.param(lambda r, p: r.predict([p, 3.5]), TypeError, r"inputs\[1\] is a float", id="item-float"),
    pytest.param(lambda r, p: r.predict([p, np.zeros(800)]), ValueError, "sample_rate is required",
                 id="array-without-rate"),
    pytest.param(lambda r, p: r.predict(np.zeros(800), sample_rate=0), ValueError, "sample_rate must be a positive",
                 id="rate-0"),
    pytest.param(lambda r, p: r.predict(np.zeros((2, 3, 800)), sample_rate=16000), ValueError, r"shape \(2, 3, 800\)",
                 id="array-3d"),
    pytest.param(lambda r, p: r.predict(np.zeros((100, 800)), sample_rate=16000), ValueError,
                 "neither dimension is a channel count", id="array-no-channel-axis"),
    pytest.param(lambda r, p: r.predict(np.zeros(800, np.complex64), sample_rate=16000), TypeError, "dtype complex64",
                 id="array-complex"),
    pytest.param(lambda r, p: r.predict(torch.zeros(800, dtype=torch.bool), sample_rate=16000), TypeError,
                 "dtype torch.bool", id="tensor-bool"),
    pytest.param(lambda r, p: r.predict_waveforms([np.zeros(800)], ["a", "b"]), ValueError, "list of 1 names",
                 id="waveforms-sources"),
    pytest.param(lambda r, p: r.predict_waveforms([np.zeros((2, 800))], ["a"]), TypeError,
                 r"waveforms\[0\] must be a 1-D float array", id="waveforms-2d"),
])
def test_bad_arguments_raise_with_a_clear_message(recognizers, paths, call, error, pattern):
    with pytest.raises(error, match=pattern):
        call(recognizers["baseline"], str(paths[0]))


@pytest.mark.parametrize("kind", CNN_KINDS)
def test_fast_mode_equals_plain_mode(runs, recognizers, paths, kind):
    """Windows of the default 32 frames and of 0.2 s (20 frames), both within the max_frames the
    plain model is fed (longer windows it cuts to max_frames, as evaluation does)."""
    plain = EmotionRecognizer.from_pretrained(runs[kind], mode="plain")
    fast = recognizers[kind]
    for window_s in (None, 0.2):
        expected = plain.predict(paths[:4], batch_size=7, window_s=window_s)
        actual = fast.predict(paths[:4], batch_size=7, window_s=window_s)
        same_predictions(actual, expected, fast.classes, msg=f"{kind} fast vs plain, window {window_s}")
        for a, e in zip(actual, expected):
            assert [w.label for w in a.timeline] == [w.label for w in e.timeline]


@pytest.mark.parametrize("kind", CNN_KINDS)
def test_predictions_equal_the_evaluation_path(runs, recognizers, paths, table, kind):
    """The evaluation path (training's features, the model as loaded, evaluate.predict_rows) with
    max_frames long enough to hold every utterance whole, against predict with one window each."""
    fold_dir = next((runs[kind] / "folds").iterdir())
    model, config, classes = load_model(fold_dir)
    long_enough = dataclasses.replace(config, max_frames=max(f.shape[1] for f in table.features))
    chosen = paths[::4]
    rows = [[u.path for u in table.utterances].index(p) for p in chosen]
    expected_labels = predict_rows(model, table, rows, long_enough)
    x, frames = table.batch(rows, long_enough.max_frames)
    with torch.no_grad():
        expected = torch.softmax(model(x, frames), dim=1).numpy()
    predictions = EmotionRecognizer.from_pretrained(fold_dir, precision="fp32").predict(chosen, window_s=WHOLE)
    assert [p.label for p in predictions] == [classes[i] for i in expected_labels]
    assert_close(probabilities(predictions, classes), expected, atol=PROBABILITY_ATOL, msg=f"{kind} vs evaluation")


@pytest.mark.parametrize("kind", KINDS)
def test_bucketed_batches_equal_one_input_at_a_time(recognizers, paths, kind):
    recognizer = recognizers[kind]
    inputs = [*paths[:9], 0.1 * np.sin(np.arange(700, dtype=np.float32))]  # lengths 700 samples .. 3 s
    batched = recognizer.predict(inputs, sample_rate=16000, batch_size=4, window_s=WHOLE, return_embedding=True)
    alone = recognizer.predict(inputs, sample_rate=16000, batch_size=1, window_s=WHOLE, return_embedding=True)
    same_predictions(batched, alone, recognizer.classes, msg=f"{kind} batch 4 vs 1")
    assert_close(np.stack([p.embedding for p in batched]), np.stack([p.embedding for p in alone]),
                 atol=PROBABILITY_ATOL, rtol=1e-5, msg=f"{kind} embeddings batch 4 vs 1")


@pytest.fixture(scope="module")
def long_audio(paths) -> np.ndarray:
    return np.concatenate([read_mono(p) for p in paths[:3]])


@pytest.mark.parametrize("window_s, hop_s", [(None, None), (1.0, 0.5), (0.77, 0.31), (1.0, 1.0)],
                         ids=["default", "1s-hop0.5", "0.77s-hop0.31", "1s-no-overlap"])
def test_long_audio_gets_a_timeline_and_the_mean_of_its_windows(recognizers, long_audio, window_s, hop_s):
    recognizer = recognizers["baseline"]
    (prediction,) = recognizer.predict(long_audio, sample_rate=16000, window_s=window_s, hop_s=hop_s,
                                       return_embedding=True)
    window = round((window_s or recognizer.default_window_s) * 16000)
    hop = round((hop_s or (window_s or recognizer.default_window_s) / 2) * 16000)
    starts = [*range(0, len(long_audio) - window, hop), len(long_audio) - window]
    timeline = prediction.timeline
    assert [round(w.start_s * 16000) for w in timeline] == starts
    assert all(round((w.end_s - w.start_s) * 16000) == window for w in timeline)
    assert timeline[0].start_s == 0 and timeline[-1].end_s == pytest.approx(len(long_audio) / 16000)
    assert prediction.duration_s == pytest.approx(len(long_audio) / 16000)
    windows = probabilities(timeline, recognizer.classes)
    assert_close(probabilities([prediction], recognizer.classes)[0], windows.mean(0), atol=1e-6, msg="aggregate")
    assert prediction.label == recognizer.classes[int(windows.mean(0).argmax())]
    checked = [0, len(starts) // 2, len(starts) - 1]
    alone = recognizer.predict([long_audio[starts[k]:starts[k] + window] for k in checked], sample_rate=16000,
                               window_s=window_s, hop_s=hop_s, return_embedding=True)
    assert all(not p.timeline for p in alone)
    assert_close(probabilities(alone, recognizer.classes), windows[checked], atol=PROBABILITY_ATOL,
                 msg="each window as its own input")
    assert [timeline[k].label for k in checked] == [p.label for p in alone]
    row = prediction.as_row()
    assert row["windows"] == len(starts) and len(row["timeline"]) == len(starts)
    json.dumps(row)


def test_audio_no_longer_than_one_window_is_one_window_whole(recognizers, paths):
    recognizer = recognizers["baseline"]
    wave = read_mono(paths[0])
    (exact,) = recognizer.predict(wave, sample_rate=16000, window_s=len(wave) / 16000)
    (longer,) = recognizer.predict(wave, sample_rate=16000, window_s=WHOLE)
    assert exact.timeline == () and longer.timeline == () and exact.as_row()["windows"] == 0
    same_predictions([exact], [longer], recognizer.classes, msg="one window", atol=0.0)


@pytest.mark.parametrize("kind, size", [("baseline", 256), ("dsnet", 256), ("edrl-mea", 4), ("merit", 48)])
def test_embeddings_have_the_models_utterance_vector_shape(recognizers, paths, kind, size):
    recognizer = recognizers[kind]
    predictions = recognizer.predict(paths[:3], return_embedding=True)
    assert all(p.embedding.shape == (size,) and p.embedding.dtype == np.float32 for p in predictions)
    assert all(p.embedding is None for p in recognizer.predict(paths[:3]))
    assert len(predictions[0].as_row()["embedding"]) == size


def test_edrl_mea_embeddings_are_its_aligned_super_scores(runs, paths, table):
    model, _, _ = load_model(next((runs["edrl-mea"] / "folds").iterdir()))
    rows = [[u.path for u in table.utterances].index(p) for p in paths[:4]]
    x, frames = table.batch(rows, max(f.shape[1] for f in table.features))
    with torch.no_grad():
        expected = model.aligned_embedding(x, frames)
    predictions = EmotionRecognizer.from_pretrained(runs["edrl-mea"], precision="fp32").predict(
        paths[:4], window_s=WHOLE, return_embedding=True)
    assert_close(np.stack([p.embedding for p in predictions]), expected, atol=1e-4, rtol=1e-4, msg="super scores")


@pytest.mark.parametrize("kind", KINDS)
def test_save_and_from_pretrained_round_trip(runs, recognizers, paths, tmp_path, kind):
    recognizer = recognizers[kind]
    folder = recognizer.save(tmp_path / "saved")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    reloaded = EmotionRecognizer.from_pretrained(folder, precision="fp32")
    assert reloaded.classes == recognizer.classes and reloaded.kind == kind
    expected = recognizer.predict(paths[:4], return_embedding=True)
    actual = reloaded.predict(paths[:4], return_embedding=True)
    same_predictions(actual, expected, recognizer.classes, msg=f"{kind} saved", atol=0.0)
    from_fold = EmotionRecognizer.from_pretrained(recognizer.folder, precision="fp32").predict(paths[:4])
    same_predictions(from_fold, expected, recognizer.classes, msg=f"{kind} fold dir", atol=0.0)


def test_a_run_folder_picks_the_named_fold_or_the_best_validated_one(runs, tmp_path):
    run = Path(shutil.copytree(runs["baseline"], tmp_path / "run"))
    names = json.loads((run / "run.json").read_text())["folds"]
    assert len(names) == 2
    for name in names:
        assert EmotionRecognizer.from_pretrained(run, fold=name).folder == run / "folds" / name
    for best in names:
        for name in names:
            uar = 0.9 if name == best else 0.1
            (run / "folds" / name / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "val_uar": uar}) + "\n")
        assert EmotionRecognizer.from_pretrained(run).folder == run / "folds" / best


@pytest.mark.parametrize("where, arguments, error, pattern", [
    pytest.param("nothing", {}, ModelFileError, "no such folder", id="missing"),
    pytest.param("empty", {}, ModelFileError, "neither a saved model", id="not-a-model"),
    pytest.param("run", {"fold": "nope"}, ModelFileError, "no trained fold 'nope'", id="unknown-fold"),
    pytest.param("fold", {"fold": "x"}, ValueError, "one model's folder", id="fold-of-a-fold"),
    pytest.param("run", {"precision": "fp8"}, ValueError, "precision 'fp8'", id="precision"),
    pytest.param("run", {"mode": "eager"}, ValueError, "mode 'eager'", id="mode"),
    pytest.param("merit", {"compile": True}, ValueError, "Sparse MERIT runs eager", id="merit-compile"),
])
def test_bad_model_folders_and_options_are_explained(runs, tmp_path, where, arguments, error, pattern):
    (tmp_path / "empty").mkdir()
    path = {"nothing": tmp_path / "nothing", "empty": tmp_path / "empty", "run": runs["baseline"],
            "fold": next((runs["baseline"] / "folds").iterdir()), "merit": runs["merit"]}[where]
    with pytest.raises(error, match=pattern) as raised:
        EmotionRecognizer.from_pretrained(path, **arguments)
    if error is ModelFileError:
        assert str(path) in str(raised.value)


def test_merit_classifies_waveforms_in_windows_of_its_training_length(recognizers, paths):
    recognizer = recognizers["merit"]
    assert recognizer.default_window_s == pytest.approx(0.8)
    predictions = recognizer.predict(paths[:3])
    assert all(p.label in recognizer.classes and len(p.timeline) > 1 for p in predictions)
    assert all(sum(p.probabilities.values()) == pytest.approx(1, abs=1e-5) for p in predictions)


def test_rows_are_json_and_carry_every_field(recognizers, paths):
    recognizer = recognizers["dsnet"]
    good, bad = recognizer.predict([paths[0], np.zeros(10)], sample_rate=16000, progress=True)
    row = json.loads(json.dumps(good.as_row()))
    assert row["source"] == str(paths[0]) and row["label"] == good.label and row["error"] is None
    assert {f"prob_{c}" for c in recognizer.classes} <= set(row) and row["windows"] == len(good.timeline)
    bad_row = json.loads(json.dumps(bad.as_row()))
    assert bad_row["label"] is None and "too short" in bad_row["error"] and bad_row["timeline"] == []


def test_decode_is_a_picklable_function_of_the_path(tmp_path, paths):
    assert pickle.loads(pickle.dumps(EmotionRecognizer.decode)) is decode_audio
    stereo = np.stack([read_mono(paths[0])] * 2, axis=1)
    sf.write(str(tmp_path / "stereo48k.wav"), soxr.resample(stereo, 16000, 48000), 48000, subtype="FLOAT")
    wave, duration, warning = decode_audio(tmp_path / "stereo48k.wav")
    assert wave.ndim == 1 and wave.dtype == np.float32 and duration == pytest.approx(len(stereo) / 16000, abs=1e-3)
    assert warning is None
