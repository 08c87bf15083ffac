"""Noise: the SNR of mix_at_snr is exact; built-in types are reproducible and have their spectra;
folders of recordings with a seen/unseen split; the evaluation grid."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from ser_fast.data.noise import BUILTIN_TYPES, NoiseBank, NoiseCondition, measured_snr_db, mix_at_snr, noise_grid


def test_snr_is_exact_over_many_random_cases():
    rng = np.random.default_rng(0)
    worst = 0.0
    for _ in range(300):
        speech = (rng.standard_normal(int(rng.integers(100, 20000))) * rng.uniform(1e-3, 0.5)).astype(np.float32)
        noise = (rng.standard_normal(int(rng.integers(50, 30000))) * rng.uniform(1e-3, 2.0)).astype(np.float32)
        snr = float(rng.uniform(-10, 40))
        mixture = mix_at_snr(speech, noise, snr, rng)
        assert mixture.shape == speech.shape and mixture.dtype == np.float32
        worst = max(worst, abs(measured_snr_db(speech, mixture) - snr))
    assert worst < 0.01


def test_noise_is_shifted_and_tiled_not_rescaled_speech():
    speech = np.sin(np.arange(1000) / 7.0).astype(np.float32)
    noise = np.r_[np.ones(10), -np.ones(10)].astype(np.float32)
    mixture = mix_at_snr(speech, noise, 0.0, np.random.default_rng(1))
    residual = mixture - speech
    assert np.allclose(residual[:980], residual[20:], atol=1e-6)  # tiled: period 20
    first = mix_at_snr(speech, noise, 0.0, np.random.default_rng(1))
    assert np.array_equal(first, mixture)


def test_clipping_protection_keeps_the_snr():
    speech = np.full(500, 0.9, dtype=np.float32) * np.sign(np.sin(np.arange(500)))
    noise = np.random.default_rng(0).standard_normal(700).astype(np.float32)
    loud = mix_at_snr(speech, noise, 0.0, 3)
    assert np.abs(loud).max() > 1.0
    safe = mix_at_snr(speech, noise, 0.0, 3, protect_clipping=True)
    assert np.abs(safe).max() <= 1.0
    scale = safe[0] / loud[0]
    assert np.allclose(safe, loud * scale, atol=1e-6)


@pytest.mark.parametrize("kwargs, error, pattern", [
    pytest.param({"speech": np.zeros(10, np.float32)}, ValueError, "speech is silent", id="silent-speech"),
    pytest.param({"noise": np.zeros(10, np.float32)}, ValueError, "noise is silent", id="silent-noise"),
    pytest.param({"speech": np.ones((2, 5), np.float32)}, ValueError, "speech must be a non-empty 1-D", id="2d"),
    pytest.param({"speech": np.ones(5, np.int16)}, TypeError, "floating-point", id="int-speech"),
    pytest.param({"noise": np.array([np.nan, 1.0])}, ValueError, "NaN or infinite", id="nan-noise"),
    pytest.param({"snr_db": float("inf")}, ValueError, "finite number of dB", id="inf-snr"),
    pytest.param({"rng": "seed"}, TypeError, "numpy Generator", id="bad-rng"),
])
def test_mix_bad_input(kwargs, error, pattern):
    args = {"speech": np.ones(10, np.float32), "noise": np.ones(7, np.float32), "snr_db": 5.0, "rng": 0, **kwargs}
    with pytest.raises(error, match=pattern):
        mix_at_snr(args["speech"], args["noise"], args["snr_db"], args["rng"])


def _band_power_slope(x: np.ndarray, sample_rate: int = 16000) -> float:
    """Slope of log power against log frequency between 100 Hz and 4 kHz."""
    freqs = np.fft.rfftfreq(len(x), 1 / sample_rate)
    power = np.abs(np.fft.rfft(x)) ** 2
    band = (freqs > 100) & (freqs < 4000)
    return float(np.polyfit(np.log(freqs[band]), np.log(power[band] + 1e-20), 1)[0])


@pytest.mark.parametrize("kind, slope", [pytest.param("white", 0.0, id="white"), pytest.param("pink", -1.0, id="pink"),
                                         pytest.param("brown", -2.0, id="brown")])
def test_coloured_noise_has_its_spectral_slope(kind, slope):
    x = NoiseBank().sample(kind, 64000, np.random.default_rng(0))
    assert abs(_band_power_slope(x) - slope) < 0.15


@pytest.mark.parametrize("kind", BUILTIN_TYPES)
def test_builtin_types_are_reproducible_float32(kind):
    bank = NoiseBank()
    a = bank.sample(kind, 16000, np.random.default_rng(5))
    b = bank.sample(kind, 16000, np.random.default_rng(5))
    c = bank.sample(kind, 16000, np.random.default_rng(6))
    assert a.dtype == np.float32 and a.shape == (16000,)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.isfinite(a).all() and abs(np.sqrt(np.mean(a.astype(np.float64) ** 2)) - 0.1) < 1e-3


def test_engine_noise_is_tonal_and_low():
    x = NoiseBank().sample("engine", 32000, np.random.default_rng(0))
    power = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / 16000)
    assert power[freqs < 1000].sum() > 0.9 * power.sum()
    assert power.max() > 50 * np.median(power[freqs < 1000])


def test_noise_folder_types_split_and_bad_files(tmp_path):
    rng = np.random.default_rng(0)
    for kind in ("kitchen", "street"):
        (tmp_path / kind).mkdir()
        for i in range(4):
            sf.write(tmp_path / kind / f"{i}.wav", rng.standard_normal(8000).astype(np.float32) * 0.1, 16000)
    sf.write(tmp_path / "loose.flac", rng.standard_normal(4410).astype(np.float32) * 0.1, 44100)
    (tmp_path / "street" / "broken.wav").write_bytes(b"RIFF1234WAVE")
    bank = NoiseBank.from_dir(tmp_path)
    assert bank.types == ["kitchen", "noise", "street"]
    assert len(bank.files["street"]) == 4
    seen, unseen = bank.split(unseen_fraction=0.25, seed=1)
    for kind in ("kitchen", "street"):
        assert len(unseen.files[kind]) == 1 and len(seen.files[kind]) == 3
        assert not set(seen.files[kind]) & set(unseen.files[kind])
    assert "noise" not in unseen.types
    x = bank.sample("noise", 20000, rng)
    assert x.dtype == np.float32 and x.shape == (20000,)
    with pytest.raises(ValueError, match="unknown noise type 'white'"):
        bank.sample("white", 10, rng)


def test_noise_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        NoiseBank.from_dir(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no readable audio files"):
        NoiseBank.from_dir(tmp_path)
    with pytest.raises(ValueError, match="needs recordings"):
        NoiseBank().split()


def test_grid_is_clean_then_type_by_snr():
    grid = list(noise_grid(["white", "babble"]))
    assert grid[0] == NoiseCondition(None, None) and grid[0].name == "clean"
    assert [c.name for c in grid[1:4]] == ["white@-5dB", "white@0dB", "white@5dB"]
    assert len(grid) == 1 + 2 * 5
    assert len(list(noise_grid(["pink"], [0.0], include_clean=False))) == 1
    with pytest.raises(ValueError, match="non-empty sequence of noise types"):
        list(noise_grid("white"))
