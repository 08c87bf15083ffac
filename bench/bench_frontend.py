"""Log-Mel front-end throughput: ser_fast.fbank against its peers, on the same audio, in one run.

Workloads: 64 utterances of 5 s at 16 kHz (a batch, as in training), and one 10-minute recording.
Every method computes 80 log-Mel bins with 25 ms / 10 ms frames. Reported: frames per second
(each method's own frame count over its best wall time of --repeats runs) and ratios to
kaldi-native-fbank and to the fastest peer. Peers:

- kaldi-native-fbank: OnlineFbank, accept_waveform + get_frame loop, as its users write it.
- librosa: melspectrogram (n_fft 512, win 400, hop 160, center False) + log, the batch stacked.
- torch.stft log-Mel: batched torch.stft + a Mel matrix matmul + log, as a PyTorch user writes it.
- python_speech_features: logfbank, one utterance at a time.
- ser_fast torch backend: our torch-ops path (torch.fft.rfft), batched: our own reference.

Usage: python bench/bench_frontend.py [--repeats 5] [--markdown BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from _report import machine, replace_section

import ser_fast

SR = 16000


def make_workloads(seed: int = 0) -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(seed)

    def audio(n: int) -> np.ndarray:  # pink-ish noise bursts in int16 range
        x = np.cumsum(rng.standard_normal(n)) * 0.02 + rng.standard_normal(n)
        return (3000.0 * x / np.abs(x).max()).astype(np.float32)

    return {"64 x 5 s": [audio(5 * SR) for _ in range(64)], "1 x 10 min": [audio(600 * SR)]}


def run_knf(batch: list[np.ndarray]) -> int:
    import kaldi_native_fbank as knf

    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.mel_opts.num_bins = 80
    frames = 0
    for x in batch:
        fb = knf.OnlineFbank(opts)
        fb.accept_waveform(SR, x)
        fb.input_finished()
        feats = np.array([fb.get_frame(i) for i in range(fb.num_frames_ready)])
        frames += feats.shape[0]
    return frames


def run_librosa(batch: list[np.ndarray]) -> int:
    import librosa

    frames = 0
    for group in _same_length_groups(batch):
        mel = librosa.feature.melspectrogram(y=np.stack(group), sr=SR, n_fft=512, win_length=400, hop_length=160,
                                             center=False, n_mels=80, power=2.0)
        feats = np.log(np.maximum(mel, 1e-10))
        frames += feats.shape[0] * feats.shape[-1]
    return frames


_STFT_MEL: dict[str, torch.Tensor] = {}


def run_torch_stft(batch: list[np.ndarray]) -> int:
    import librosa

    if "mel" not in _STFT_MEL:
        _STFT_MEL["mel"] = torch.from_numpy(librosa.filters.mel(sr=SR, n_fft=512, n_mels=80)).T.contiguous()
        _STFT_MEL["window"] = torch.hann_window(400)
    frames = 0
    for group in _same_length_groups(batch):
        x = torch.from_numpy(np.stack(group))
        spec = torch.stft(x, n_fft=512, hop_length=160, win_length=400, window=_STFT_MEL["window"],
                          center=False, return_complex=True)
        feats = (spec.abs().square().transpose(1, 2) @ _STFT_MEL["mel"]).clamp(min=1e-10).log()
        frames += feats.shape[0] * feats.shape[1]
    return frames


def run_psf(batch: list[np.ndarray]) -> int:
    from python_speech_features import logfbank

    return sum(logfbank(x, samplerate=SR, nfilt=80, nfft=512).shape[0] for x in batch)


def run_ours(backend: str) -> Callable[[list[np.ndarray]], int]:
    def run(batch: list[np.ndarray]) -> int:
        _, num_frames = ser_fast.fbank(batch, backend=backend)
        return int(num_frames.sum())

    return run


def _same_length_groups(batch: list[np.ndarray]) -> list[list[np.ndarray]]:
    groups: dict[int, list[np.ndarray]] = {}
    for x in batch:
        groups.setdefault(len(x), []).append(x)
    return list(groups.values())


def best_time(fn: Callable[[list[np.ndarray]], int], batch: list[np.ndarray], repeats: int) -> tuple[float, int]:
    frames = fn(batch)  # warm-up: caches, lazy imports, thread pools
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(batch)
        times.append(time.perf_counter() - start)
    return min(times), frames


PEERS = {
    "kaldi-native-fbank (OnlineFbank loop)": run_knf,
    "librosa (melspectrogram + log)": run_librosa,
    "torch.stft log-Mel (batched)": run_torch_stft,
    "python_speech_features (logfbank)": run_psf,
    "ser_fast backend=torch (torch.fft, batched)": run_ours("torch"),
}
OURS = "ser_fast.fbank (C++)"


def measure(repeats: int, threads: int, workloads: dict[str, list[np.ndarray]]) -> dict[str, dict[str, float]]:
    """Frames/s of every method on every workload. The methods take turns, so that a change in
    machine speed during the run (shared hosts, turbo) reaches all of them alike instead of
    favouring whichever ran at the fast moment. In its turn a method runs once untimed, so that its
    thread pool is awake, then once timed; each keeps its best round."""
    torch.set_num_threads(threads)
    methods = {**PEERS, OURS: run_ours("cpp")}
    results: dict[str, dict[str, float]] = {}
    for name, batch in workloads.items():
        frames = {method: fn(batch) for method, fn in methods.items()}  # warm-up: caches, lazy imports, pools
        best = dict.fromkeys(methods, float("inf"))
        for _ in range(repeats):
            for method, fn in methods.items():
                fn(batch)
                start = time.perf_counter()
                fn(batch)
                best[method] = min(best[method], time.perf_counter() - start)
        results[name] = {method: frames[method] / best[method] for method in methods}
    return results


def measure_isas(repeats: int, batch: list[np.ndarray]) -> dict[str, float]:
    """ser_fast.fbank with each kernel copy this CPU can run (what users of older CPUs get)."""
    rates = {}
    for isa in ("baseline", "avx2", "avx512"):
        try:
            ser_fast.set_cpu_isa(isa)
        except ValueError:
            continue
        seconds, frames = best_time(run_ours("cpp"), batch, repeats)
        rates[isa] = frames / seconds
    ser_fast.set_cpu_isa(None)
    return rates


def to_markdown(all_results: dict[int, dict[str, dict[str, float]]]) -> str:
    lines = []
    for threads, results in all_results.items():
        for workload, row in results.items():
            knf = row[list(PEERS)[0]]
            fastest_peer = max(v for k, v in row.items() if k != OURS)
            lines.append(f"\n**{workload}, {threads} thread{'s' if threads > 1 else ''}** "
                         f"(torch.set_num_threads({threads}))\n")
            lines.append("| method | frames/s | × kaldi-native-fbank | × fastest peer |")
            lines.append("|---|---:|---:|---:|")
            for name, fps in sorted(row.items(), key=lambda kv: kv[1]):
                label = f"**{name}**" if name == OURS else name
                lines.append(f"| {label} | {fps:,.0f} | {fps / knf:.1f} | {fps / fastest_peer:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--markdown", type=Path, help="replace the front-end section of this file")
    args = parser.parse_args()
    default_threads = torch.get_num_threads()
    host = machine(f"ser_fast kernels: {ser_fast.cpu_isa()}")
    workloads = make_workloads()
    all_results = {default_threads: measure(args.repeats, default_threads, workloads)}
    if default_threads != 1:
        all_results[1] = measure(args.repeats, 1, workloads)
    torch.set_num_threads(default_threads)
    isas = measure_isas(args.repeats, workloads["64 x 5 s"])
    table = to_markdown(all_results)
    table += (f"\n\n**ser_fast.fbank per kernel copy** (64 x 5 s, {default_threads} threads; pinned with "
              "`ser_fast.set_cpu_isa`)\n\n| kernels | frames/s |\n|---|---:|\n")
    table += "\n".join(f"| {isa} | {fps:,.0f} |" for isa, fps in isas.items())
    body = (f"Machine: {host}. Command: `make bench` (`python bench/bench_frontend.py`), "
            f"{time.strftime('%Y-%m-%d')}. Best of {args.repeats} rounds in which the methods take turns (each warm).\n{table}\n")
    print(body)
    if args.markdown:
        replace_section(args.markdown, "frontend", body)


if __name__ == "__main__":
    main()
