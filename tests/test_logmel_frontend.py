"""LogMelFrontend: DSNet's [B, 3, max_frames, 80] input from waveforms of any rate and length."""

import numpy as np
import pytest
import soxr
import torch
from helpers import assert_close, speech_like

import ser_fast


def test_shape_channels_and_cyclic_padding():
    short = speech_like(16000, 16000, seed=1)  # 98 frames
    long = speech_like(16000 * 7, 16000, seed=2)  # 698 frames
    frontend = ser_fast.LogMelFrontend(max_frames=600)
    out = frontend([short, long])
    assert out.shape == (2, 3, 600, 80)
    feats, n = ser_fast.fbank([short, long])
    full = ser_fast.deltas(feats, lengths=n)
    assert_close(out[0, 0, :98], feats[0, :98], atol=0, msg="static channel")
    assert_close(out[0, 1, :98], full[0, :98, 80:160], atol=0, msg="delta channel")
    assert_close(out[0, 2, :98], full[0, :98, 160:], atol=0, msg="delta-delta channel")
    assert torch.equal(out[0, :, 98:196], out[0, :, :98]), "short items repeat cyclically"
    assert torch.equal(out[1, 0], feats[1, :600]), "long items are cut to their first max_frames"


def test_other_sample_rates_are_resampled_with_soxr():
    x48 = speech_like(48000 * 2, 48000, seed=3)
    frontend = ser_fast.LogMelFrontend(max_frames=150)
    expected = frontend([soxr.resample(x48, 48000, 16000, quality="HQ").astype(np.float32)])
    assert_close(frontend([x48], sample_rate=48000), expected, atol=1e-5, msg="48 kHz input")


def test_normalization_gives_zero_mean_unit_variance_per_utterance():
    frontend = ser_fast.LogMelFrontend(max_frames=300, normalize=True)
    out = frontend([speech_like(16000 * 3, 16000, seed=4)])  # 298 frames, cut to 300 cyclically
    valid = out[0, :, :298]
    assert_close(valid.mean(dim=1), torch.zeros(3, 80), atol=1e-4, msg="mean")
    assert_close(valid.std(dim=1, unbiased=False), torch.ones(3, 80), atol=1e-2, msg="std")


def test_padded_tensor_with_lengths():
    items = [speech_like(n, 16000, seed=n) for n in (8000, 12001)]
    padded = torch.zeros(2, 12001)
    padded[0, :8000] = torch.from_numpy(items[0])
    padded[1] = torch.from_numpy(items[1])
    frontend = ser_fast.LogMelFrontend(max_frames=64)
    assert torch.equal(frontend(padded, lengths=[8000, 12001]), frontend(items))


@pytest.mark.parametrize("call, pattern", [
    pytest.param(lambda f: f([np.ones(100, np.float32)]), r"waveforms\[0\] are shorter than one", id="too-short"),
    pytest.param(lambda f: f([np.ones(8000, np.float32)], sample_rate=0), "sample_rate", id="zero-rate"),
    pytest.param(lambda f: ser_fast.LogMelFrontend(max_frames=0), "max_frames", id="max-frames"),
    pytest.param(lambda f: ser_fast.LogMelFrontend(sample_rate=8000), "16 kHz", id="fixed-rate"),
    pytest.param(lambda f: ser_fast.LogMelFrontend(backend="gpu"), "backend", id="backend"),
])
def test_bad_input(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call(ser_fast.LogMelFrontend())
