"""``python -m ser_fast.demo`` (``make demo``): the front-end on a few generated signals.

Until the training pipeline lands, the main job shows what the compiled front-end computes: a tone,
a chirp, white noise and a vowel-like harmonic signal, at 8, 16 and 44.1 kHz, through
``ser_fast.fbank`` and ``LogMelFrontend``, with the agreement against kaldi-native-fbank (when
installed) and the throughput of this machine.
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np
import torch

import ser_fast
from ser_fast._extension import extension

log = logging.getLogger("ser_fast.demo")


def signals(sample_rate: int, seconds: float = 2.0, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f0 = 140.0 + 30.0 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    vowel = sum(np.sin(k * phase) * np.exp(-(((k * 140.0) - 700.0) / 400.0) ** 2) for k in range(1, 25))
    out = {
        "tone 440 Hz": np.sin(2 * np.pi * 440.0 * t),
        "chirp 100 Hz-3 kHz": np.sin(2 * np.pi * (100.0 * t + (2900.0 / (2 * seconds)) * t**2)),
        "white noise": rng.standard_normal(t.size) * 0.3,
        "vowel /a/-like": vowel / np.abs(vowel).max(),
    }
    # A noise floor 60 dB down, as any microphone has: with none, bands where a synthetic signal has
    # no energy sit at float32 rounding noise, where every float32 implementation (Kaldi's too) differs.
    floor = 1e-3 * rng.standard_normal(t.size)
    return {name: (8000.0 * (x + floor)).astype(np.float32) for name, x in out.items()}


def kaldi_agreement(x: np.ndarray, sample_rate: int, bins: int, feats: torch.Tensor) -> float | None:
    try:
        import kaldi_native_fbank as knf
    except ImportError:
        return None
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.frame_opts.samp_freq = sample_rate
    opts.mel_opts.num_bins = bins
    fb = knf.OnlineFbank(opts)
    fb.accept_waveform(sample_rate, x)
    fb.input_finished()
    ref = np.array([fb.get_frame(i) for i in range(fb.num_frames_ready)])
    return float(np.abs(feats.numpy() - ref).max())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ext = extension()
    log.info("ser_fast %s | torch %s | %d threads | kernels: %s", ser_fast.__version__, torch.__version__,
             torch.get_num_threads(), ext.cpu_isa())
    header = f"{'signal':<20} {'rate':>6} {'frames':>6} {'mean log-Mel':>12} {'peak bin':>8} {'max |ours - kaldi|':>19}"
    log.info("\n%s\n%s", header, "-" * len(header))
    for rate in (8000, 16000, 44100):
        bins = 80 if rate > 8000 else 40  # 80 filters need more than a 256-point FFT at 8 kHz
        for name, x in signals(rate, args.seconds).items():
            feats, n = ser_fast.fbank([x], rate, num_mel_bins=bins)
            f = feats[0, : int(n[0])]
            diff = kaldi_agreement(x, rate, bins, f)
            shown = f"{diff:.1e}" if diff is not None else "n/a"
            log.info("%-20s %6d %6d %12.2f %8d %19s", name, rate, int(n[0]), float(f.mean()),
                     int(f.mean(0).argmax()), shown)

    log.info("(Where a difference exceeds 1e-3 it is in bands over 100 dB below the frame's peak, at float32\n"
             " rounding level: kaldi-native-fbank differs from a float64 computation there by as much.)")
    frontend = ser_fast.LogMelFrontend(max_frames=600)
    batch = list(signals(44100, args.seconds).values())
    x = frontend(batch, sample_rate=44100)
    log.info("\nLogMelFrontend: %d waveforms at 44.1 kHz -> resampled to 16 kHz -> %s (static, delta, delta-delta)",
             len(batch), tuple(x.shape))

    rng = np.random.default_rng(1)
    work = [(3000 * rng.standard_normal(5 * 16000)).astype(np.float32) for _ in range(64)]
    ser_fast.fbank(work)
    start = time.perf_counter()
    _, n = ser_fast.fbank(work)
    seconds = time.perf_counter() - start
    frames = int(n.sum())
    log.info("Throughput: 64 x 5 s at 16 kHz = %d frames in %.1f ms: %.2f M frames/s (%.0fx real time)",
             frames, seconds * 1e3, frames / seconds / 1e6, 64 * 5 / seconds)


if __name__ == "__main__":
    main()
