"""The synthetic corpus: determinism, the layouts as the loaders read them, audio properties per
recording condition, emotions that differ in the intended directions measured from the audio, speed,
and input checks."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import pytest
import soundfile as sf
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import find_peaks

from ser_fast.data import SAMPLE_RATE, load_audio
from ser_fast.data.loaders import load_corpus
from ser_fast.data.synthetic import CONDITIONS, EMOTIONS, synthesize_corpus

EXPECTED_RATES = {"studio": 16000, "telephone": 8000, "far-field": 44100, "room": 44100}
FRAME = 400  # 25 ms at 16 kHz
HOP = 160  # 10 ms


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """Small corpora, one per condition (same seed: the same utterances through each channel)."""
    return {c: synthesize_corpus(tmp_path_factory.mktemp(c), speakers=2, per_class=2, condition=c, seed=3)
            for c in CONDITIONS}


@pytest.fixture(scope="module")
def emotional_corpus(tmp_path_factory):
    """Enough utterances per speaker and class for class averages to show the intended directions."""
    root = synthesize_corpus(tmp_path_factory.mktemp("emotions"), speakers=4, per_class=4, seed=11)
    return load_corpus("iemocap", root)


def wav_files(root):
    return sorted(p.relative_to(root) for p in root.rglob("*.wav"))


def frame_energy_db(x: np.ndarray, low_hz: float = 0.0, high_hz: float = SAMPLE_RATE / 2) -> np.ndarray:
    """Energy of 25 ms frames every 10 ms within [low_hz, high_hz), in dB."""
    frames = sliding_window_view(x, FRAME)[::HOP] * np.hanning(FRAME)
    power = np.abs(np.fft.rfft(frames, 512)) ** 2
    freqs = np.fft.rfftfreq(512, 1.0 / SAMPLE_RATE)
    return 10.0 * np.log10(power[:, (freqs >= low_hz) & (freqs < high_hz)].sum(1) + 1e-12)


def f0_semitones(x: np.ndarray) -> np.ndarray:
    """F0 of the clearly voiced 40 ms frames (autocorrelation peak in 60-500 Hz), semitones re 100 Hz."""
    frames = sliding_window_view(x, 640)[::HOP]
    frames = (frames - frames.mean(1, keepdims=True)) * np.hanning(640)
    autocorrelation = np.fft.irfft(np.abs(np.fft.rfft(frames, 2048)) ** 2)[:, :SAMPLE_RATE // 55]
    low, high = SAMPLE_RATE // 500, SAMPLE_RATE // 60
    lag = low + autocorrelation[:, low:high].argmax(1)
    periodicity = autocorrelation[np.arange(len(lag)), lag] / np.maximum(autocorrelation[:, 0], 1e-12)
    energy = 10.0 * np.log10(np.mean(frames**2, 1) + 1e-12)
    voiced = (periodicity > 0.5) & (energy > energy.max() - 30.0)
    return 12.0 * np.log2(SAMPLE_RATE / lag[voiced] / 100.0)


def acoustic_measures(x: np.ndarray) -> dict[str, float]:
    f0 = f0_semitones(x)
    vowel_band = frame_energy_db(x, 300.0, 2000.0)
    # Syllable nuclei are peaks of the vowel-band energy; consonants and pauses are the dips between.
    nuclei, _ = find_peaks(np.convolve(vowel_band, np.ones(3) / 3, mode="same"), prominence=6.0, distance=6)
    return {
        "f0": float(np.median(f0)),
        "f0_range": float(np.percentile(f0, 90) - np.percentile(f0, 10)),
        "level": float(np.percentile(frame_energy_db(x), 95)),
        "rate": nuclei.size / (x.size / SAMPLE_RATE),
    }


@pytest.fixture(scope="module")
def emotion_means(emotional_corpus):
    """Per measure and emotion: the mean over speakers of (class mean - speaker mean)."""
    measured = [(u.speaker, u.label, acoustic_measures(load_audio(u.path))) for u in emotional_corpus]
    means = {}
    for key in ("f0", "f0_range", "level", "rate"):
        relative = []
        for speaker in emotional_corpus.speakers:
            own = [(label, m[key]) for s, label, m in measured if s == speaker]
            speaker_mean = np.mean([v for _, v in own])
            relative.append({e: np.mean([v for label, v in own if label == e]) - speaker_mean for e in EMOTIONS})
        means[key] = {e: float(np.mean([r[e] for r in relative])) for e in EMOTIONS}
    return means


def test_same_seed_gives_byte_identical_files(tmp_path):
    first = synthesize_corpus(tmp_path / "a", speakers=2, per_class=1, seed=5)
    second = synthesize_corpus(tmp_path / "b", speakers=2, per_class=1, seed=5)
    other_seed = synthesize_corpus(tmp_path / "c", speakers=2, per_class=1, seed=6)
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert len(wav_files(first)) == 8 and files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for name in files:
        assert (first / name).read_bytes() == (second / name).read_bytes(), f"{name} differs between two runs"
    assert wav_files(other_seed) == wav_files(first)
    # Turn order is shuffled per seed, so compare the sets of audio, not file by file.
    assert not ({(first / n).read_bytes() for n in wav_files(first)}
                & {(other_seed / n).read_bytes() for n in wav_files(other_seed)}), "another seed repeated a file"


def test_iemocap_layout_loads_with_labels_speakers_sessions(tmp_path):
    root = synthesize_corpus(tmp_path / "corpus", speakers=4, per_class=2, seed=1)
    corpus = load_corpus("iemocap", root)
    assert not corpus.skipped
    summary = corpus.summary()
    assert dict(summary.per_class) == {e: 4 * 2 for e in EMOTIONS}
    assert dict(summary.per_speaker) == {s: 4 * 2 for s in ("Ses01F", "Ses01M", "Ses02F", "Ses02M")}
    assert dict(summary.per_session) == {"Session1": 16, "Session2": 16}
    for u in corpus:
        assert u.gender == u.speaker[-1] == u.path.stem.rsplit("_", 1)[1][0]
        assert u.path.parent.name == f"Ses{u.speaker[3:5]}F_impro01"
        assert u.extra["end"] > u.extra["start"]
    annotation = (root / "Session1" / "dialog" / "EmoEvaluation" / "Ses01F_impro01.txt").read_text()
    assert annotation.startswith("% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]")
    assert "README.txt" in {p.name for p in root.iterdir()}


def test_annotated_valence_and_arousal_follow_the_emotions(emotional_corpus):
    def mean(label, key):
        return np.mean([u.extra[key] for u in emotional_corpus if u.label == label])

    assert mean("happy", "valence") > mean("neutral", "valence") > mean("sad", "valence")
    assert mean("angry", "arousal") > mean("neutral", "arousal") > mean("sad", "arousal")
    assert all(1.0 <= u.extra[k] <= 5.0 for u in emotional_corpus for k in ("valence", "arousal", "dominance"))


def test_manifest_layout_loads_with_an_odd_number_of_speakers(tmp_path):
    root = synthesize_corpus(tmp_path / "corpus", speakers=3, per_class=1, layout="manifest", seed=2)
    corpus = load_corpus("manifest", root)
    assert not corpus.skipped
    assert Counter(u.label for u in corpus) == {e: 3 for e in EMOTIONS}
    assert {(u.speaker, u.session, u.gender) for u in corpus} == {
        ("Ses01F", "Session1", "F"), ("Ses01M", "Session1", "M"), ("Ses02F", "Session2", "F")}
    assert all(u.path.is_file() and u.path.is_relative_to(root) for u in corpus)


@pytest.mark.parametrize("condition", [pytest.param(c, id=c) for c in CONDITIONS])
def test_audio_is_16_bit_wav_at_the_condition_rate_unclipped_and_audible(corpora, condition):
    root = corpora[condition]
    files = [root / name for name in wav_files(root)]
    assert len(files) == 2 * 4 * 2
    for path in files:
        info = sf.info(str(path))
        assert (info.samplerate, info.channels, info.subtype, info.format) == (
            EXPECTED_RATES[condition], 1, "PCM_16", "WAV"), path.name
        assert 1.5 <= info.duration <= 3.5, f"{path.name}: {info.duration:.2f} s"
        samples, _ = sf.read(str(path), dtype="int16")
        assert np.abs(samples.astype(np.int32)).max() < 32767, f"{path.name} clips"
        rms_dbfs = 10.0 * np.log10(np.mean((samples / 32768.0) ** 2))
        assert -50.0 < rms_dbfs < -10.0, f"{path.name}: RMS {rms_dbfs:.1f} dBFS"


def band_share(paths, low_hz: float, high_hz: float) -> float:
    """Share of the total energy of these files (read at 16 kHz) that lies in [low_hz, high_hz)."""
    band = total = 0.0
    for path in paths:
        x = load_audio(path).astype(np.float64)
        band += np.sum(10.0 ** (frame_energy_db(x, low_hz, high_hz) / 10.0))
        total += np.sum(10.0 ** (frame_energy_db(x) / 10.0))
    return band / total


def pause_to_speech_db(paths) -> float:
    """How loud the quietest frames are against the loudest (reverberation and noise fill pauses)."""
    gaps = []
    for path in paths:
        energy = frame_energy_db(load_audio(path).astype(np.float64))
        gaps.append(np.percentile(energy, 10) - np.percentile(energy, 95))
    return float(np.mean(gaps))


def test_conditions_differ_as_their_channels_do(corpora):
    paths = {c: [root / name for name in wav_files(root)] for c, root in corpora.items()}
    above_4k = {c: band_share(p, 3700.0, 8000.0) for c, p in paths.items()}
    below_250 = {c: band_share(p, 0.0, 250.0) for c, p in paths.items()}
    pauses = {c: pause_to_speech_db(p) for c, p in paths.items()}
    assert above_4k["telephone"] < 1e-3 < above_4k["studio"], above_4k
    assert below_250["telephone"] < 0.5 * below_250["studio"], below_250
    assert below_250["far-field"] > 1.5 * below_250["studio"], below_250
    assert pauses["far-field"] > pauses["studio"] + 15.0, pauses
    # room: the far-field room recorded closer (less reverberant tail in the pauses) over the studio's noise floor
    assert pauses["studio"] < pauses["room"] < pauses["far-field"] - 10.0, pauses
    assert below_250["room"] > 1.5 * below_250["studio"], below_250


@pytest.mark.parametrize("measure, higher, lower", [
    pytest.param("f0", ("angry", "happy"), ("neutral",), id="f0-angry-happy-above-neutral"),
    pytest.param("f0", ("neutral",), ("sad",), id="f0-neutral-above-sad"),
    pytest.param("f0_range", ("happy", "angry"), ("neutral", "sad"), id="f0-range-happy-angry-wider"),
    pytest.param("level", ("angry", "happy"), ("sad",), id="level-angry-happy-above-sad"),
    pytest.param("rate", ("angry", "happy", "neutral"), ("sad",), id="rate-sad-slowest"),
])
def test_emotions_differ_in_the_intended_directions(emotion_means, measure, higher, lower):
    means = emotion_means[measure]
    assert min(means[e] for e in higher) > max(means[e] for e in lower), f"{measure}: {means}"


def test_progress_bar_is_shown_when_asked(tmp_path, capsys):
    synthesize_corpus(tmp_path / "quiet", speakers=2, per_class=1)
    assert "synthesizing" not in capsys.readouterr().err
    synthesize_corpus(tmp_path / "shown", speakers=2, per_class=1, progress=True)
    assert "synthesizing" in capsys.readouterr().err


def test_default_corpus_is_written_within_30_seconds(tmp_path):
    start = time.perf_counter()
    root = synthesize_corpus(tmp_path / "default")
    seconds = time.perf_counter() - start
    assert seconds <= 30.0, f"the default corpus took {seconds:.1f} s"
    summary = load_corpus("iemocap", root).summary()
    assert summary.total == 10 * 4 * 24 and len(summary.per_speaker) == 10 and len(summary.per_session) == 5


@pytest.mark.parametrize("kwargs, error, words", [
    pytest.param(dict(speakers=1), ValueError, "speakers=1", id="one-speaker"),
    pytest.param(dict(speakers=3), ValueError, "even", id="odd-speakers-iemocap"),
    pytest.param(dict(speakers=2.0), TypeError, "speakers", id="float-speakers"),
    pytest.param(dict(per_class=0), ValueError, "per_class=0", id="no-utterances"),
    pytest.param(dict(per_class=True), TypeError, "per_class", id="bool-per-class"),
    pytest.param(dict(condition="radio"), ValueError, "condition='radio'", id="unknown-condition"),
    pytest.param(dict(layout="msp-improv"), ValueError, "layout='msp-improv'", id="unknown-layout"),
    pytest.param(dict(seed=-1), ValueError, "seed=-1", id="negative-seed"),
    pytest.param(dict(progress="yes"), TypeError, "progress", id="progress-not-bool"),
])
def test_bad_arguments_are_rejected_naming_them(tmp_path, kwargs, error, words):
    with pytest.raises(error, match=words.replace("(", r"\(")):
        synthesize_corpus(tmp_path / "corpus", **kwargs)
    assert not (tmp_path / "corpus").exists(), "nothing is written for rejected arguments"


@pytest.mark.parametrize("make_out_dir, error, words", [
    pytest.param(lambda p: p / "file.txt", ValueError, "is a file", id="a-file"),
    pytest.param(lambda p: p, ValueError, "not empty", id="not-empty"),
    pytest.param(lambda p: 123, TypeError, "out_dir", id="not-a-path"),
])
def test_bad_out_dir_is_rejected_naming_it(tmp_path, make_out_dir, error, words):
    (tmp_path / "file.txt").write_text("something else")
    with pytest.raises(error, match=words):
        synthesize_corpus(make_out_dir(tmp_path), speakers=2, per_class=1)
