"""Sparse MERIT's SE head: the STFT round trip, the mask estimator's shapes, padding and gradients,
``enhance`` with an identity mask, the L1 loss on a hand case, and the input checks."""

from __future__ import annotations

import pytest
import torch
from helpers import assert_close, speech_like

from ser_fast.models.merit.se_head import SEHead, Spectrogram, enhance, se_loss, stft_lengths

FEATURE_DIM = 24


def small_head(seed: int = 0) -> SEHead:
    torch.manual_seed(seed)
    return SEHead(FEATURE_DIM, hidden=16).eval()


def waves(lengths: list[int], dtype=torch.float32) -> torch.Tensor:
    """Speech-like signals in [-1, 1] scale, zero-padded to ``[B, max(lengths)]``."""
    out = torch.zeros(len(lengths), max(lengths), dtype=dtype)
    for b, n in enumerate(lengths):
        out[b, :n] = torch.from_numpy(speech_like(n, 16000, seed=b, scale=0.3)).to(dtype)
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("num_samples", [201, 1601, 7919, 16000], ids=lambda n: f"n{n}")
def test_istft_of_the_unmodified_stft_reconstructs_the_input(num_samples, dtype):
    spectrogram = Spectrogram()
    wave = waves([num_samples], dtype)
    spec = spectrogram(wave)
    assert spec.shape == (1, 201, spectrogram.frames(num_samples))
    back = spectrogram.inverse(spec.abs(), spec, num_samples)
    assert back.dtype == dtype
    assert_close(back, wave, atol=1e-5 if dtype == torch.float32 else 1e-12, msg="iSTFT(STFT(x))")


@pytest.mark.parametrize("num_samples", [1601, 7919, 16000], ids=lambda n: f"n{n}")
def test_a_mask_of_ones_through_enhance_gives_the_input_back(num_samples):
    spectrogram = Spectrogram()
    wave = waves([num_samples, num_samples - 7])
    ones = torch.ones(2, 201, spectrogram.frames(num_samples))
    assert_close(enhance(wave, ones, spectrogram), wave, atol=1e-4, msg="enhance with mask 1")


def test_a_mask_of_zeros_through_enhance_gives_silence():
    # The mask scales the log1p magnitude: 0 there is a zero magnitude, whatever the phase.
    spectrogram = Spectrogram()
    wave = waves([4000, 3999])
    silence = enhance(wave, torch.zeros(2, 201, spectrogram.frames(4000)), spectrogram)
    assert_close(silence, torch.zeros_like(wave), atol=0.0, msg="enhance with mask 0")


@pytest.mark.parametrize(("ssl_frames", "stft_frames"), [(1, 1), (1, 2), (4, 11), (32, 63), (76, 151)],
                         ids=lambda v: str(v))
def test_mask_shape_and_range(ssl_frames, stft_frames):
    head = small_head()
    g = torch.Generator().manual_seed(ssl_frames)
    mask = head(torch.randn(3, ssl_frames, FEATURE_DIM, generator=g), torch.rand(3, 201, stft_frames, generator=g) * 5)
    assert mask.shape == (3, 201, stft_frames)
    assert bool(((mask > 0) & (mask < 1)).all())


def test_upsampling_repeats_each_ssl_frame_and_pads_with_zeros():
    head = small_head()
    features = torch.arange(1.0, 4.0).view(1, 3, 1).expand(1, 3, FEATURE_DIM)
    padded = head._to_stft_frames(features, 8)
    trimmed = head._to_stft_frames(features, 5)
    assert padded[0, :, 0].tolist() == [1, 1, 2, 2, 3, 3, 0, 0]
    assert trimmed[0, :, 0].tolist() == [1, 1, 2, 2, 3]


def test_trailing_padding_does_not_change_the_valid_frames():
    head = small_head()
    g = torch.Generator().manual_seed(1)
    lengths = [(63, 30), (151, 75), (9, 4)]  # (STFT frames, SSL frames) per item
    items = [(torch.randn(1, s, FEATURE_DIM, generator=g), torch.rand(1, 201, t, generator=g)) for t, s in lengths]
    alone = [head(features, log_mag) for features, log_mag in items]
    # Expert features are zero on padding frames (as ExpertPool returns them); the spectrogram's
    # padding holds large values, so any leak into the valid frames would show.
    features = torch.zeros(3, 76, FEATURE_DIM)
    log_mag = torch.full((3, 201, 151), 50.0)
    for b, (f, m) in enumerate(items):
        features[b, : f.shape[1]], log_mag[b, :, : m.shape[2]] = f[0], m[0]
    frame_lengths = torch.tensor([t for t, _ in lengths])
    batched = head(features, log_mag, frame_lengths)
    for b, (t, _) in enumerate(lengths):
        assert_close(batched[b, :, :t], alone[b][0], atol=1e-6, msg=f"item {b}, valid frames")
        assert bool((batched[b, :, t:] == 0).all()), f"item {b}: mask on padding frames must be 0"


def test_gradients_reach_every_parameter():
    head = small_head().train()
    spectrogram = Spectrogram()
    noisy, clean = waves([4000, 2500]), waves([4000, 2500]) * 0.5
    frames = stft_lengths(torch.tensor([4000, 2500]))
    noisy_log_mag = spectrogram.log1p_magnitude(spectrogram(noisy))
    features = torch.randn(2, 12, FEATURE_DIM, generator=torch.Generator().manual_seed(2))
    mask = head(features, noisy_log_mag, frames)
    padding = torch.arange(noisy_log_mag.shape[-1]) >= frames.unsqueeze(1)
    loss = se_loss(mask * noisy_log_mag, spectrogram.log1p_magnitude(spectrogram(clean)), padding)
    loss.backward()
    for name, parameter in head.named_parameters():
        assert parameter.grad is not None and bool(parameter.grad.abs().sum() > 0), name


def test_se_loss_hand_case():
    enhanced = torch.tensor([[[1.0, 2.0, 3.0], [0.0, 0.5, 9.0]]])  # [B=1, F=2, T=3]
    clean = torch.tensor([[[1.5, 2.0, 0.0], [1.0, 0.0, 0.0]]])
    # Valid frames 0 and 1: |errors| 0.5, 0, 1, 0.5 over 4 bins; frame 2 is padding.
    padding = torch.tensor([[False, False, True]])
    assert_close(se_loss(enhanced, clean, padding), torch.tensor(0.5), atol=1e-7, msg="masked L1")
    assert_close(se_loss(enhanced, clean), torch.tensor((0.5 + 0 + 3 + 1 + 0.5 + 9) / 6), atol=1e-6, msg="plain L1")


@pytest.mark.parametrize("num_samples", [1, 159, 160, 7919, 16000], ids=lambda n: f"n{n}")
def test_stft_lengths_counts_the_frames_of_the_stft(num_samples):
    spectrogram = Spectrogram()
    assert stft_lengths(torch.tensor([num_samples])).tolist() == [spectrogram.frames(num_samples)]
    if num_samples > 200:
        assert spectrogram(waves([num_samples])).shape[-1] == spectrogram.frames(num_samples)


HEAD = SEHead(FEATURE_DIM, hidden=8)
FEATURES, LOG_MAG = torch.zeros(2, 5, FEATURE_DIM), torch.zeros(2, 201, 11)


@pytest.mark.parametrize(("call", "error", "match"), [
    pytest.param(lambda: HEAD(torch.zeros(2, 5, 7), LOG_MAG), ValueError, "D=24", id="feature-dim"),
    pytest.param(lambda: HEAD(FEATURES, torch.zeros(2, 200, 11)), ValueError, "F=201", id="n-freq"),
    pytest.param(lambda: HEAD(FEATURES[:1], LOG_MAG), ValueError, "B=2", id="batch"),
    pytest.param(lambda: HEAD(FEATURES, LOG_MAG.long()), TypeError, "floating-point", id="int-log-mag"),
    pytest.param(lambda: HEAD(torch.zeros(2, 15, FEATURE_DIM), LOG_MAG), ValueError, "SSL frame rate",
                 id="frame-rate"),
    pytest.param(lambda: HEAD(FEATURES, LOG_MAG, torch.tensor([11, 12])), ValueError, "1..11", id="length-over"),
    pytest.param(lambda: HEAD(FEATURES, LOG_MAG, torch.tensor([11.0, 3.0])), TypeError, "int64", id="float-lengths"),
    pytest.param(lambda: Spectrogram()(torch.zeros(1, 200)), ValueError, "more than 200", id="short-wave"),
    pytest.param(lambda: Spectrogram()(torch.zeros(200)), ValueError, r"\[B, S\]", id="1-d-wave"),
    pytest.param(lambda: Spectrogram().inverse(LOG_MAG, LOG_MAG, 1600), TypeError, "complex", id="real-phase"),
    pytest.param(lambda: enhance(torch.zeros(2, 1600), LOG_MAG[:, :, :3], Spectrogram()), ValueError, "noisy STFT",
                 id="mask-shape"),
    pytest.param(lambda: se_loss(LOG_MAG, LOG_MAG, torch.ones(2, 11, dtype=torch.bool)), ValueError, "padding",
                 id="all-padding"),
    pytest.param(lambda: se_loss(LOG_MAG, LOG_MAG, torch.zeros(2, 11)), TypeError, "bool", id="float-frame-mask"),
    pytest.param(lambda: stft_lengths(torch.tensor([0, 5])), ValueError, "positive", id="zero-samples"),
    pytest.param(lambda: SEHead(0), ValueError, "feature_dim", id="feature-dim-0"),
])
def test_bad_inputs_are_refused_with_a_clear_message(call, error, match):
    with pytest.raises(error, match=match):
        call()
