"""Speech-enhancement metrics: segmental SNR against hand-computed values and a literal transcription
of the MATLAB reference, PESQ and STOI through their packages, and the input checks."""

from __future__ import annotations

import itertools
import logging
import math
import sys

import numpy as np
import pytest
import torch
from helpers import assert_close, speech_like

from ser_fast.evaluation import enhancement
from ser_fast.evaluation.enhancement import enhancement_scores, pesq_wb, segmental_snr, stoi

SAMPLE_RATE = 16000


def _matlab_snrseg(clean: np.ndarray, processed: np.ndarray, sample_rate: int) -> float:
    """Loizou's ``comp_snr.m`` loop, line by line (1-based indices turned 0-based)."""
    winlength = round(30 * sample_rate / 1000)
    skiprate = math.floor(winlength / 4)
    num_frames = len(clean) / skiprate - winlength / skiprate
    window = 0.5 * (1 - np.cos(2 * np.pi * np.arange(1, winlength + 1) / (winlength + 1)))
    eps = np.finfo(np.float64).eps
    values, start = [], 0
    for _ in range(1, math.floor(num_frames) + 1):  # MATLAB's 1:num_frames stops at floor(num_frames)
        clean_frame = clean[start:start + winlength] * window
        processed_frame = processed[start:start + winlength] * window
        signal_energy = np.sum(clean_frame ** 2)
        noise_energy = np.sum((clean_frame - processed_frame) ** 2)
        snr = 10 * np.log10(signal_energy / (noise_energy + eps) + eps)
        values.append(min(max(snr, -10), 35))
        start += skiprate
    return float(np.mean(values))


def test_ssnr_hand_case_with_a_frame_clipped_at_each_bound():
    # Disjoint 8-sample frames (8 ms at 1 kHz, no overlap); in frame k the error is g_k times the
    # clean frame, so its SNR is -20 log10(g_k) whatever the window: 20 dB, 6.02 dB, 60 dB (clipped
    # to 35) and -20 dB (clipped to -10). The fifth, last whole frame is not counted.
    rng = np.random.default_rng(0)
    clean = rng.uniform(0.5, 1.5, 40) * rng.choice([-1.0, 1.0], 40)
    gains = [0.1, 0.5, 1e-3, 10.0, 1e6]
    enhanced = clean * (1.0 - np.repeat(gains, 8))
    per_frame = [min(max(-20 * math.log10(g), -10.0), 35.0) for g in gains[:4]]
    assert per_frame == pytest.approx([20.0, 6.0206, 35.0, -10.0], abs=1e-4)
    actual = segmental_snr(clean, enhanced, sample_rate=1000, frame_ms=8, overlap=0.0)
    assert_close(actual, sum(per_frame) / 4, atol=1e-9, msg="hand-computed SSNR")


@pytest.mark.parametrize("sample_rate", [16000, 8000], ids=lambda r: f"{r}Hz")
@pytest.mark.parametrize("num_samples", [600, 1601, 7919, 16000], ids=lambda n: f"n{n}")
def test_ssnr_matches_the_matlab_loop(num_samples, sample_rate):
    rng = np.random.default_rng(num_samples)
    clean = speech_like(num_samples, sample_rate, seed=1, scale=1.0).astype(np.float64)
    # Noise that swings over ±40 dB across the signal, so frames hit both clipping bounds.
    level = 10 ** rng.uniform(-2.5, 0.5, num_samples // 100 + 1).repeat(100)[:num_samples]
    processed = clean + level * rng.standard_normal(num_samples)
    expected = _matlab_snrseg(clean, processed, sample_rate)
    assert_close(segmental_snr(clean, processed, sample_rate=sample_rate), expected, atol=1e-9, msg="SSNR vs MATLAB")


def test_ssnr_of_clean_against_itself_is_the_upper_bound():
    clean = speech_like(SAMPLE_RATE, SAMPLE_RATE, seed=2, scale=0.3)
    assert segmental_snr(clean, clean.copy()) == 35.0
    assert segmental_snr(clean, clean, max_db=20.0) == 20.0


def test_ssnr_decreases_as_noise_grows():
    clean = speech_like(SAMPLE_RATE, SAMPLE_RATE, seed=3, scale=0.3)
    noise = np.random.default_rng(3).standard_normal(clean.size)
    scores = [segmental_snr(clean, clean + level * noise) for level in (1e-3, 1e-2, 1e-1, 1.0)]
    assert all(a > b for a, b in itertools.pairwise(scores)), scores
    assert -10.0 <= scores[-1] < scores[0] <= 35.0


@pytest.fixture(scope="module")
def three_seconds():
    """3 s of speech-like signal at 16 kHz (long enough for PESQ's voice activity detection), a
    slightly and a heavily noisy version of it."""
    clean = speech_like(3 * SAMPLE_RATE, SAMPLE_RATE, seed=4, scale=0.3)
    noise = 0.1 * np.random.default_rng(4).standard_normal(clean.size)
    return clean, clean + 0.05 * noise, clean + 1.0 * noise


@pytest.mark.parametrize("metric", [pesq_wb, stoi], ids=["pesq", "stoi"])
def test_perceptual_metrics_prefer_the_less_noisy_version(metric, three_seconds):
    pytest.importorskip({"pesq_wb": "pesq", "stoi": "pystoi"}[metric.__name__])
    clean, slightly_noisy, very_noisy = three_seconds
    better, worse = metric(clean, slightly_noisy), metric(clean, very_noisy)
    assert better > worse + 0.05, (better, worse)


def test_enhancement_scores_of_both_signals_and_the_improvement(three_seconds):
    pytest.importorskip("pesq")
    pytest.importorskip("pystoi")
    clean, enhanced, noisy = three_seconds
    scores = enhancement_scores(torch.from_numpy(clean), noisy, torch.from_numpy(enhanced))
    assert set(scores) == {f"{m}{s}" for m in ("ssnr", "pesq", "stoi") for s in ("", "_noisy", "_improvement")}
    assert scores["ssnr"] == segmental_snr(clean, enhanced)
    assert scores["pesq_noisy"] == pesq_wb(clean, noisy)
    for name in ("ssnr", "pesq", "stoi"):
        assert_close(scores[f"{name}_improvement"], scores[name] - scores[f"{name}_noisy"], atol=1e-12, msg=name)
        assert scores[f"{name}_improvement"] > 0, name


def test_a_missing_package_gives_none_and_one_info_line(monkeypatch, caplog, three_seconds):
    clean, enhanced, noisy = three_seconds
    monkeypatch.setitem(sys.modules, "pesq", None)  # makes `import pesq` raise ImportError
    monkeypatch.setattr(enhancement, "_reported_missing", set())
    with caplog.at_level(logging.INFO, logger=enhancement.__name__):
        assert pesq_wb(clean, enhanced) is None
        scores = enhancement_scores(clean, noisy, enhanced)
    assert scores["pesq"] is None and scores["pesq_noisy"] is None and scores["pesq_improvement"] is None
    assert sum("pesq is not installed" in r.getMessage() for r in caplog.records) == 1


@pytest.fixture(autouse=True)
def fresh_noisy_memo():
    """Each test starts with no remembered noisy scores, so its call counts and missing packages are its own."""
    enhancement.forget_noisy_scores()
    yield
    enhancement.forget_noisy_scores()


def counting_pesq(monkeypatch) -> list[int]:
    """Counts the calls of the pesq package's scorer (the one enhancement_scores reaches through pesq_wb)."""
    pesq_package = pytest.importorskip("pesq")
    calls, original = [], pesq_package.pesq
    monkeypatch.setattr(pesq_package, "pesq", lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs))
    return calls


def test_the_noisy_inputs_scores_are_computed_once_per_mixture(monkeypatch):
    pytest.importorskip("pystoi")
    calls = counting_pesq(monkeypatch)
    clean = speech_like(2 * SAMPLE_RATE, SAMPLE_RATE, seed=31, scale=0.3)
    noisy = clean + 0.05 * np.random.default_rng(32).standard_normal(clean.size)
    first = enhancement_scores(clean, noisy, 0.5 * (clean + noisy))
    assert len(calls) == 2  # the enhanced signal and the noisy input
    second = enhancement_scores(clean, noisy, 0.8 * clean + 0.2 * noisy)
    assert len(calls) == 3  # the new enhanced signal only
    assert {k: v for k, v in second.items() if k.endswith("_noisy")} == \
        {k: v for k, v in first.items() if k.endswith("_noisy")}
    enhancement_scores(clean, noisy + 1e-3, clean)  # another mixture is scored again
    assert len(calls) == 5
    assert second["pesq_noisy"] == pesq_wb(clean, noisy) and second["stoi_noisy"] == stoi(clean, noisy)


def test_the_oldest_mixture_is_forgotten_first(monkeypatch):
    pytest.importorskip("pystoi")
    monkeypatch.setattr(enhancement, "NOISY_MEMO_SIZE", 2)
    calls = counting_pesq(monkeypatch)
    clean = speech_like(SAMPLE_RATE, SAMPLE_RATE, seed=35, scale=0.3)
    first, second, third = (clean + level * np.random.default_rng(36).standard_normal(clean.size)
                            for level in (0.02, 0.05, 0.1))
    for noisy in (first, second, first, third):  # first is used again, so second is the oldest when third comes
        enhancement_scores(clean, noisy, clean)
    assert len(calls) == 2 + 2 + 1 + 2  # first, second: both signals; first again: the enhanced only; third: both
    enhancement_scores(clean, first, clean)
    assert len(calls) == 8  # first is still remembered: the enhanced only
    enhancement_scores(clean, second, clean)
    assert len(calls) == 10  # second was forgotten: both


def test_scores_without_a_package_are_not_remembered(monkeypatch):
    pytest.importorskip("pystoi")
    clean = speech_like(2 * SAMPLE_RATE, SAMPLE_RATE, seed=33, scale=0.3)
    noisy = clean + 0.05 * np.random.default_rng(34).standard_normal(clean.size)
    with monkeypatch.context() as missing:
        missing.setitem(sys.modules, "pesq", None)
        assert enhancement_scores(clean, noisy, clean)["pesq_noisy"] is None
    calls = counting_pesq(monkeypatch)
    assert enhancement_scores(clean, noisy, clean)["pesq_noisy"] == pesq_wb(clean, noisy)
    assert len(calls) == 3  # enhanced and noisy inside, then pesq_wb


def test_pesq_without_an_utterance_is_a_value_error():
    pytest.importorskip("pesq")
    # PESQ scales both signals by their joint peak, so a reference 600 dB below the other signal
    # is silence to its voice activity detector.
    rng = np.random.default_rng(5)
    silent_reference, noise = 1e-30 * rng.standard_normal(3 * SAMPLE_RATE), rng.standard_normal(3 * SAMPLE_RATE)
    with pytest.raises(ValueError, match="NoUtterancesError: No utterances detected"):
        pesq_wb(silent_reference, noise)


def test_stoi_of_too_little_speech_is_a_value_error():
    pytest.importorskip("pystoi")
    clean = speech_like(3000, SAMPLE_RATE, seed=6, scale=0.3)
    with pytest.raises(ValueError, match="too little speech"):
        stoi(clean, clean)


GOOD = np.ones(SAMPLE_RATE)


@pytest.mark.parametrize(("call", "error", "match"), [
    pytest.param(lambda: segmental_snr(GOOD.astype(np.int16), GOOD), TypeError, "floats", id="int-array"),
    pytest.param(lambda: segmental_snr(torch.ones(800, dtype=torch.long), GOOD[:800]), TypeError, "floats",
                 id="int-tensor"),
    pytest.param(lambda: segmental_snr(list(GOOD), GOOD), TypeError, "numpy array or torch tensor", id="list"),
    pytest.param(lambda: segmental_snr(GOOD.reshape(2, -1), GOOD.reshape(2, -1)), ValueError, "1-D", id="2-d"),
    pytest.param(lambda: segmental_snr(GOOD, GOOD[:-1]), ValueError, "same length", id="unequal-lengths"),
    pytest.param(lambda: segmental_snr(GOOD, np.r_[GOOD[:-1], np.nan]), ValueError, "NaN", id="nan"),
    pytest.param(lambda: segmental_snr(GOOD[:599], GOOD[:599]), ValueError, "too few", id="too-short"),
    pytest.param(lambda: segmental_snr(GOOD, GOOD, overlap=1.0), ValueError, "overlap", id="overlap-1"),
    pytest.param(lambda: segmental_snr(GOOD, GOOD, sample_rate=0), ValueError, "sample_rate", id="rate-0"),
    pytest.param(lambda: segmental_snr(GOOD, GOOD, min_db=35, max_db=-10), ValueError, "min_db", id="bounds"),
    pytest.param(lambda: pesq_wb(GOOD, GOOD, sample_rate=8000), ValueError, "16000", id="pesq-8k"),
    pytest.param(lambda: pesq_wb(np.zeros(SAMPLE_RATE), GOOD), ValueError, "all zeros", id="pesq-silent-ref"),
    pytest.param(lambda: pesq_wb(GOOD, np.zeros(SAMPLE_RATE)), ValueError, "all zeros", id="pesq-silent-output"),
    pytest.param(lambda: stoi(GOOD, GOOD, sample_rate=16000.5), ValueError, "sample_rate", id="stoi-float-rate"),
    pytest.param(lambda: enhancement_scores(GOOD, GOOD[:-1], GOOD), ValueError, "noisy", id="scores-noisy-length"),
])
def test_bad_inputs_are_refused_with_a_clear_message(call, error, match):
    with pytest.raises(error, match=match):
        call()
