"""Training-time augmentation: the config rejects values outside their ranges when built; each augmentation does what
it says (the SNR, gain, speed, band and room it drew, measured on the output); draws are seeded per epoch, utterance
and augmentation, so a resumed epoch sees the same audio and one augmentation's switch moves no other's draws."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from helpers import assert_close
from scipy.signal import welch

from ser_fast.data.augmentation import AUGMENTATIONS, AugmentConfig, Augmenter, RoomPool
from ser_fast.data.augmentation.augmenter import ORDER
from ser_fast.data.noise import NoiseBank, measured_snr_db

RATE = 16000


def noise_like(samples: int, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(samples)).astype(np.float32)


def only(kind: str, **settings) -> AugmentConfig:
    return AugmentConfig(kinds=(kind,), **{f"{kind}_p": 1.0}, **settings)


def test_the_order_names_every_augmentation_once():
    assert sorted(ORDER) == sorted(AUGMENTATIONS)


def test_configs_parse_and_round_trip():
    config = AugmentConfig.parse("noise, reverb", snr_db=(5, 15))
    assert config.kinds == ("noise", "reverb") and config.snr_db == (5.0, 15.0) and config
    assert not AugmentConfig.parse("none") and not AugmentConfig.parse("")
    assert AugmentConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("settings,message", [
    ({"kinds": ("noise", "echo")}, r"unknown kinds \['echo'\]"),
    ({"kinds": ("gain", "gain")}, "twice"),
    ({"kinds": "noise"}, "sequence of names"),
    ({"noise_p": 1.5}, r"noise_p must be a probability in \[0, 1\]"),
    ({"gain_p": True}, "gain_p must be a probability"),
    ({"snr_db": (20, 5)}, r"snr_db must satisfy -10 <= low <= high <= 60, got \(20, 5\)"),
    ({"snr_db": (-30, 5)}, "snr_db must satisfy"),
    ({"speed": (0.9, 2.0)}, r"speed must satisfy 0.7 <= low <= high <= 1.3"),
    ({"rt60_s": (0.2, float("nan"))}, "rt60_s must satisfy"),
    ({"codec_cutoff_hz": (3000, 9000)}, "codec_cutoff_hz must satisfy"),
    ({"gain_db": 6}, r"gain_db must be a \(low, high\) pair"),
    ({"bands": ()}, "at least one"),
    ({"bands": ("radio",)}, r"unknown bands \['radio'\]"),
], ids=["unknown-kind", "duplicate", "string", "probability", "bool-probability", "reversed-snr", "snr-limit",
        "speed-limit", "nan", "cutoff-nyquist", "scalar-range", "no-band", "unknown-band"])
def test_a_setting_outside_its_range_is_rejected_when_built(settings, message):
    with pytest.raises(ValueError, match=message):
        AugmentConfig(**settings)


def test_unknown_saved_settings_are_named():
    with pytest.raises(ValueError, match=r"unknown augmentation settings \['snr'\]"):
        AugmentConfig.from_dict({"kinds": ["noise"], "snr": [0, 5]})


@pytest.mark.parametrize("samples", [401, 16001, 48000], ids=["short", "one-second-odd", "three-seconds"])
def test_noise_is_mixed_at_the_drawn_snr(samples):
    augmenter = Augmenter(only("noise", snr_db=(7.5, 7.5)), seed=0)
    wave = noise_like(samples)
    mixed = augmenter(wave, epoch=0, item=3)
    assert mixed.dtype == np.float32 and mixed.shape == wave.shape
    assert measured_snr_db(wave, mixed) == pytest.approx(7.5, abs=0.01)


def test_noise_leaves_digital_silence_alone():
    silence = np.zeros(800, np.float32)
    assert_close(Augmenter(only("noise"), seed=0)(silence, 0, 0), silence, atol=0)


def test_gain_scales_by_the_drawn_decibels():
    wave = noise_like(1000)
    assert_close(Augmenter(only("gain", gain_db=(6, 6)), seed=0)(wave, 0, 0), wave * 10 ** (6 / 20), atol=1e-7)


@pytest.mark.parametrize("factor", [0.9, 1.1, 1.25], ids=["slower", "faster", "much-faster"])
def test_speed_changes_the_duration_by_the_drawn_factor(factor):
    wave = noise_like(32000)
    out = Augmenter(only("speed", speed=(factor, factor)), seed=0)(wave, 0, 0)
    assert abs(out.size - wave.size / factor) <= 2


def _band_energy_db(wave: np.ndarray, low_hz: float) -> float:
    frequencies, power = welch(wave, fs=RATE, nperseg=512)
    return 10 * np.log10(power[frequencies >= low_hz].sum() / power.sum())


def test_telephone_band_removes_what_a_phone_line_cannot_carry():
    wave = noise_like(16001)
    out = Augmenter(only("band", bands=("telephone",)), seed=0)(wave, 0, 0)
    assert out.shape == wave.shape
    assert _band_energy_db(out, 4200) < -40 and _band_energy_db(wave, 4200) > -4  # white: -3.2 dB


def test_codec_band_low_passes_at_the_drawn_cutoff():
    wave = noise_like(16000)
    out = Augmenter(only("band", bands=("codec",), codec_cutoff_hz=(4000, 4000)), seed=0)(wave, 0, 0)
    assert _band_energy_db(out, 5000) < -40 and _band_energy_db(out, 2000) > -6


def test_reverb_convolves_with_a_response_of_the_pool_from_its_direct_path():
    decay = np.exp(-np.arange(1600) / 200.0) * np.random.default_rng(1).standard_normal(1600)
    response = np.concatenate([np.zeros(37), [2.0], 0.3 * decay])  # a propagation delay before the direct path
    rooms = RoomPool([response], "test")
    wave = noise_like(8000)
    out = Augmenter(only("reverb"), seed=0, rooms=rooms)(wave, 0, 0)
    aligned = response[37:] / np.sqrt(np.sum(response[37:] ** 2))
    assert_close(out, np.convolve(wave, aligned)[:wave.size].astype(np.float32), atol=1e-6)


def test_simulated_rooms_have_the_drawn_reverberation_time():
    pyroomacoustics = pytest.importorskip("pyroomacoustics")
    rooms = RoomPool.simulated((0.25, 0.3), seed=0, count=3)
    assert len(rooms) == 3 and "3 simulated rooms" in rooms.source
    for response in rooms.responses:
        assert np.argmax(np.abs(response)) == 0 and np.sum(response ** 2) == pytest.approx(1.0)
        # Sabine's formula is approximate for the image-source method: measured 0.2-0.4 s here.
        assert 0.15 < pyroomacoustics.experimental.measure_rt60(response, fs=RATE, decay_db=30) < 0.5
    again = RoomPool.simulated((0.25, 0.3), seed=0, count=3)
    assert all(np.array_equal(a, b) for a, b in zip(rooms.responses, again.responses))


def test_a_room_too_large_for_a_short_reverberation_shrinks_to_fit():
    pytest.importorskip("pyroomacoustics")
    rooms = RoomPool.simulated((0.1, 0.1), seed=0, count=4)  # 10 x 8 x 4 m cannot be that dry
    assert len(rooms) == 4


def test_recorded_responses_are_read_from_a_folder(tmp_path):
    sf.write(tmp_path / "hall.wav", np.r_[np.zeros(5), 1.0, 0.5 * np.ones(100)], RATE)
    (tmp_path / "sub").mkdir()
    sf.write(tmp_path / "sub" / "office.flac", np.r_[1.0, 0.2 * np.ones(50)], RATE)
    (tmp_path / "broken.wav").write_bytes(b"RIFF not really")
    rooms = RoomPool.from_dir(tmp_path)
    assert len(rooms) == 2 and all(np.argmax(np.abs(r)) == 0 for r in rooms.responses)


@pytest.mark.parametrize("make,error,message", [
    (lambda tmp: RoomPool.from_dir(tmp / "missing"), FileNotFoundError, "does not exist"),
    (lambda tmp: RoomPool.from_dir(tmp), ValueError, "no room impulse responses"),
    (lambda tmp: RoomPool([np.zeros(10)], "zeros"), ValueError, "not all zero"),
], ids=["missing-folder", "empty-folder", "silent-response"])
def test_bad_room_responses_are_explained(tmp_path, make, error, message):
    with pytest.raises(error, match=message):
        make(tmp_path)


def test_draws_are_seeded_by_epoch_and_utterance():
    config = AugmentConfig(kinds=("noise", "gain", "speed"), noise_p=0.7, gain_p=0.7, speed_p=0.7)
    augmenter = Augmenter(config, seed=4)
    wave = noise_like(4000)
    first = augmenter(wave, epoch=2, item=9)
    assert np.array_equal(first, Augmenter(config, seed=4)(wave, epoch=2, item=9))
    others = [augmenter(wave, epoch=e, item=i) for e, i in ((3, 9), (2, 10))]
    assert all(o.shape != first.shape or not np.array_equal(o, first) for o in others)
    applied = [augmenter.applied(0, i) for i in range(200)]
    for kind in config.kinds:
        assert 0.6 < sum(kind in a for a in applied) / 200 < 0.8


@pytest.mark.parametrize("idle", ["speed", "reverb", "gain"])
def test_switching_one_augmentation_moves_no_other_s_draws(idle):
    # speed and reverb come before noise: with one shared stream their draws would move the noise's.
    wave = noise_like(4000)
    rooms = RoomPool([np.r_[1.0, 0.5, 0.25]], "test")
    noise_alone = Augmenter(only("noise"), seed=1)(wave, 5, 5)
    with_idle = Augmenter(AugmentConfig(kinds=("noise", idle), noise_p=1.0, **{f"{idle}_p": 0.0}), seed=1,
                          rooms=rooms)(wave, 5, 5)
    assert np.array_equal(noise_alone, with_idle)


def test_a_noise_folder_is_used(tmp_path):
    (tmp_path / "hum").mkdir()
    sf.write(tmp_path / "hum" / "a.wav", np.sin(np.arange(16000) * 2 * np.pi * 50 / RATE) * 0.3, RATE)
    augmenter = Augmenter(only("noise", snr_db=(0, 0)), seed=0, noise=NoiseBank.from_dir(tmp_path))
    wave = noise_like(8000)
    residual = augmenter(wave, 0, 0) - wave
    frequencies, power = welch(residual, fs=RATE, nperseg=2048)
    assert frequencies[np.argmax(power)] < 100


@pytest.mark.parametrize("wave,message", [(np.zeros((2, 100)), "mono"), (np.zeros(0), "non-empty")],
                         ids=["stereo", "empty"])
def test_bad_waves_are_explained(wave, message):
    with pytest.raises(ValueError, match=message):
        Augmenter(only("gain"), seed=0)(wave, 0, 0)


def test_the_config_must_be_an_augment_config():
    with pytest.raises(TypeError, match="AugmentConfig"):
        Augmenter({"kinds": ["noise"]}, seed=0)
