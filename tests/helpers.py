"""The suite's one comparison helper and the signals and peers that tests share."""

from __future__ import annotations

import numpy as np
import torch


def assert_close(actual, expected, *, atol: float, rtol: float = 0.0, baseline=None, msg: str = "") -> None:
    """Elementwise |actual - expected| <= atol + rtol * |expected|, with the worst element reported.

    With ``baseline`` (what PyTorch itself computes at the low precision under test), the bound is
    the one kernels are held to: |actual - expected| <= 2 * |baseline - expected| + atol.
    """
    a = _as_double(actual)
    e = _as_double(expected)
    assert a.shape == e.shape, f"{msg}: shape {tuple(a.shape)} != expected {tuple(e.shape)}"
    if a.numel() == 0:
        return
    bound = atol + rtol * e.abs()
    if baseline is not None:
        b = _as_double(baseline)
        assert b.shape == e.shape, f"{msg}: baseline shape {tuple(b.shape)} != expected {tuple(e.shape)}"
        bound = bound + 2 * (b - e).abs()
    excess = (a - e).abs() - bound
    worst = int(excess.argmax())
    if float(excess.flatten()[worst]) > 0 or bool(torch.isnan(a).any() != torch.isnan(e).any()):
        index = np.unravel_index(worst, tuple(a.shape))
        raise AssertionError(
            f"{msg}: max |diff| {float((a - e).abs().max()):.3g} exceeds atol={atol} rtol={rtol}; worst at "
            f"{tuple(int(i) for i in index)}: {float(a.flatten()[worst])!r} vs {float(e.flatten()[worst])!r}"
        )


def _as_double(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x.detach()).double().cpu()


def speech_like(num_samples: int, sample_rate: float, seed: int, scale: float = 3000.0) -> np.ndarray:
    """A voiced-speech-like test signal: a harmonic series on a wandering F0, amplitude bursts and a
    noise floor 40 dB down, in int16 range (float32). Wide dynamic range, like real audio."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / sample_rate
    f0 = 120.0 + 40.0 * np.sin(2 * np.pi * 1.3 * t + rng.uniform(0, 6))
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12) if k * 160 < sample_rate / 2)
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t) ** 2
    noise = 0.01 * rng.standard_normal(num_samples)
    return (scale * (envelope * voiced + noise)).astype(np.float32)


def write_container(path, wave: np.ndarray, sample_rate: int, container: str, codec: str, *,
                    codec_rate: int | None = None):
    """``wave`` (float [samples] or [samples, channels] in [-1, 1]) encoded with PyAV, as phones and browsers write it:
    ``container`` an ffmpeg muxer ("ipod" for m4a, "mp4", "webm", "mp3", "adts"), ``codec`` its encoder, at
    ``codec_rate`` (the encoder's rate; Opus runs at 48 kHz) or ``sample_rate``."""
    import av

    wave = np.asarray(wave, dtype=np.float32)
    planes = wave[None] if wave.ndim == 1 else np.ascontiguousarray(wave.T)
    layout = "mono" if planes.shape[0] == 1 else "stereo"
    with av.open(str(path), "w", format=container) as output:
        stream = output.add_stream(codec, rate=codec_rate or sample_rate, layout=layout)
        frame = av.AudioFrame.from_ndarray(planes, format="fltp", layout=layout)
        frame.sample_rate = sample_rate
        rate = codec_rate or sample_rate
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout=layout, rate=rate,
                                      frame_size=stream.codec_context.frame_size or None)
        for converted in [*resampler.resample(frame), *resampler.resample(None), None]:
            if converted is not None:
                converted.pts = None  # the encoder numbers the samples itself, monotonic across the resampler's flush
            for packet in stream.encode(converted):
                output.mux(packet)
    return path


class Killed(Exception):
    """What :func:`kill_after` raises: a training run stopped as a kill would stop it."""


def kill_after(epoch: int):
    """An ``on_epoch_end`` callback that stops training once ``epoch``'s checkpoint is on disk (raises Killed)."""
    def on_epoch_end(record: dict) -> None:
        if record["epoch"] == epoch:
            raise Killed

    return on_epoch_end
